"""A held-out routing evaluation set, written apart from the classifier and the main set.

``load_holdout()`` reads ``holdout/*.yaml`` (the same schema as ``cases/*.yaml``) and expands
every case with the builder in ``tests/routing_eval/build.py``. Workspaces are shared between
the files of this directory only, so the held-out set needs nothing from ``cases/``.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

from ..build import EvalCase, Json, Workspace, expand, load_yaml_files

__all__ = ["HOLDOUT_DIR", "load_holdout"]

HOLDOUT_DIR = Path(__file__).resolve().parent


def _read(directory: Path) -> tuple[dict[str, Workspace], list[Json]]:
    return load_yaml_files(directory)


@cache
def _holdout() -> tuple[EvalCase, ...]:
    workspaces, cases = _read(HOLDOUT_DIR)
    return tuple(built for case in cases for built in expand(case, workspaces))


def load_holdout() -> list[EvalCase]:
    """Every held-out case, built once per process; each call gets its own copy of the bodies."""
    return copy.deepcopy(list(_holdout()))
