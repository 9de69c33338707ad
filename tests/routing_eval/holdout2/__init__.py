"""A second held-out routing evaluation set, written apart from the classifier and both other sets.

``load_holdout2()`` reads ``holdout2/*.yaml`` (the schema of ``cases/*.yaml``) and expands every
case with the builder in ``tests/routing_eval/build.py``. Workspaces are shared between the
files of this directory only, so this set needs nothing from ``cases/`` or ``holdout/``.
A case written in another language than English says which in ``lang`` (``languages()``).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

from ..build import EvalCase, expand
from ..holdout import _read

__all__ = ["HOLDOUT2_DIR", "languages", "load_holdout2"]

HOLDOUT2_DIR = Path(__file__).resolve().parent


@cache
def _holdout2() -> tuple[EvalCase, ...]:
    workspaces, cases = _read(HOLDOUT2_DIR)
    return tuple(built for case in cases for built in expand(case, workspaces))


def languages() -> dict[str, str]:
    """The language of every built case written in another language than English, by id."""
    out: dict[str, str] = {}
    for case in _read(HOLDOUT2_DIR)[1]:
        if "lang" not in case:
            continue
        cid = case["id"]
        ids = [f"{cid}-n", f"{cid}-x"] if case["style"] == "both" else [cid]
        out.update(dict.fromkeys(ids, str(case["lang"])))
    return out


def load_holdout2() -> list[EvalCase]:
    """Every case of this set, built once per process; each call gets its own copy of the bodies."""
    return copy.deepcopy(list(_holdout2()))
