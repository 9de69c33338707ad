"""A held-out routing evaluation set, written apart from the classifier and the main set.

``load_holdout()`` reads ``holdout/*.yaml`` (the same schema as ``cases/*.yaml``) and expands
every case with the builder in ``tests/routing_eval/build.py``. Workspaces are shared between
the files of this directory only, so the held-out set needs nothing from ``cases/``.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import yaml

from ..build import EvalCase, Json, Workspace, expand

__all__ = ["HOLDOUT_DIR", "load_holdout"]

HOLDOUT_DIR = Path(__file__).resolve().parent


def _read(directory: Path) -> tuple[dict[str, Workspace], list[Json]]:
    """``build.load_yaml_files`` for another directory."""
    workspaces: dict[str, Workspace] = {}
    cases: list[Json] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path.name}: {exc}") from None
        for name, spec in (data.get("workspaces") or {}).items():
            if name in workspaces:
                raise ValueError(f"{path.name}: workspace {name!r} defined twice")
            workspaces[name] = Workspace(
                name,
                spec["path"],
                bool(spec.get("memory_bank")),
                str(spec.get("listing", "")).strip(),
                dict(spec.get("files") or {}),
                bool(spec.get("repo")),
            )
        for case in data.get("cases") or []:
            case["_file"] = path.name
            cases.append(case)
    return workspaces, cases


@cache
def _holdout() -> tuple[EvalCase, ...]:
    workspaces, cases = _read(HOLDOUT_DIR)
    return tuple(built for case in cases for built in expand(case, workspaces))


def load_holdout() -> list[EvalCase]:
    """Every held-out case, built once per process; each call gets its own copy of the bodies."""
    return copy.deepcopy(list(_holdout()))
