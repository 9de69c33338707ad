"""Check routing-corpus files against the format in README.md; print counts per field.

    python corpus/routing/check.py corpus/routing/w3.yaml [more files]

Exits 1 with one line per problem, naming the case.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

LABELS = {"memory", "implement", "analyze", "chat", "meta"}
# The seven the test split covers, then others the router's users write in.
LANGS = {"en", "de", "es", "fr", "pt", "zh", "ja",
         "it", "pl", "ru", "uk", "ko", "vi", "tr", "id", "hi", "nl", "ar"}  # fmt: skip
CLIENTS = {"cline", "continue", "openwebui", "aider", "librechat", "nextchat", "zed", "cursor",
           "sdk"}  # fmt: skip
BANKS = {"memory-bank", "cline_docs", "docs/memory", "none"}
TOOL_STEPS = {"read", "list", "search", "edit", "write", "run", "ask"}
STEPS = TOOL_STEPS | {"user", "answer"}
CASE_KEYS = {"id", "project", "label", "lang", "client", "tools", "mode", "before", "text",
             "system", "trailing_system", "note"}  # fmt: skip


def problems(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Everything wrong with one file, and its cases."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    found: list[str] = []
    if not isinstance(data, dict):
        return [f"{path}: not a mapping"], []
    writer = data.get("writer")
    if writer != path.stem:
        found.append(f"{path}: writer {writer!r} is not the file's name {path.stem!r}")
    projects = {p.get("id"): p for p in data.get("projects") or []}
    for pid, project in projects.items():
        if not str(pid).startswith(f"{writer}-"):
            found.append(f"{path}: project {pid!r} must start with {writer}-")
        if project.get("bank") not in BANKS:
            found.append(f"{path}: project {pid!r}: bank must be one of {sorted(BANKS)}")
        for key in ("domain", "code", "workspace"):
            if not project.get(key):
                found.append(f"{path}: project {pid!r} has no {key}")
    cases = data.get("cases") or []
    seen: set[str] = set()
    for case in cases:
        cid = case.get("id", "?")
        where = f"{path}: {cid}"
        if cid in seen:
            found.append(f"{where}: duplicate id")
        seen.add(cid)
        if extra := set(case) - CASE_KEYS:
            found.append(f"{where}: unknown keys {sorted(extra)}")
        if case.get("project") not in projects:
            found.append(f"{where}: project {case.get('project')!r} is not in projects")
        if case.get("label") not in LABELS:
            found.append(f"{where}: label must be one of {sorted(LABELS)}")
        if case.get("lang") not in LANGS:
            found.append(f"{where}: lang must be one of {sorted(LANGS)}")
        client = case.get("client")
        if client not in CLIENTS:
            found.append(f"{where}: client must be one of {sorted(CLIENTS)}")
        if client == "cline":
            if case.get("tools") not in ("native", "xml"):
                found.append(f"{where}: a cline case needs tools: native or xml")
            if case.get("mode") not in ("act", "plan"):
                found.append(f"{where}: a cline case needs mode: act or plan")
        elif "tools" in case or "mode" in case:
            found.append(f"{where}: tools and mode are for cline cases only")
        before = case.get("before") or []
        for step in before:
            kinds = set(step) & STEPS
            if len(kinds) != 1 or set(step) - STEPS - {"result"}:
                found.append(f"{where}: a before step has one of {sorted(STEPS)} (+ result)")
        text = case.get("text")
        if text is None:
            last = next(iter(set(before[-1]) & STEPS), None) if before else None
            if last not in TOOL_STEPS:
                found.append(f"{where}: without text the last before step must be a tool step")
            elif not any("user" in step for step in before):
                found.append(f"{where}: a mid-loop case needs the task as an earlier user step")
        elif not isinstance(text, str) or not text.strip():
            found.append(f"{where}: text must be a non-empty string")
        if not case.get("note"):
            found.append(f"{where}: no note")
    return found, cases


def main(paths: list[str]) -> int:
    everything: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in paths:
        found, cases = problems(Path(name))
        failed += found
        everything += cases
    for line in failed:
        print(line)
    for field in ("label", "lang", "client", "tools", "mode", "project"):
        counts = Counter(str(c.get(field)) for c in everything)
        print(f"{field}: {dict(sorted(counts.items()))}")
    midloop = sum(c.get("text") is None for c in everything)
    print(f"cases: {len(everything)}, mid-loop: {midloop}, problems: {len(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
