"""The routing corpus (``corpus/routing``) as complete request bodies, split by writer.

Each writer's file gives projects and cases in the compact form its README describes. A Cline
case becomes a case of ``build.py``'s schema (a workspace from its project, ``before`` steps as
user turns and assistant steps whose tool results are the written ones) and is rendered as
cline 3.0.65 (``native``) or 2.18 (``xml``) sends it. A case of another client is rendered as
that client sends it: its own system message if it has one, the conversation, tool calls in
OpenAI's shape, the newest message, and a trailing system message where the case has one.

``load_corpus()`` returns ``{"train": [...], "dev": [...], "test": [...]}``; each item is a
``CorpusCase``: the built ``EvalCase`` plus the writer, project, language and client.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .build import BANK_FILES, EvalCase, Json, Workspace, build_body, compact

__all__ = ["CORPUS_DIR", "CorpusCase", "load_corpus", "render"]

CORPUS_DIR = Path(__file__).resolve().parents[2] / "corpus" / "routing"
_TOOL_STEPS = ("read", "list", "search", "edit", "write", "run", "ask")
# What other clients call their tools (OpenAI function calls), roughly as they name them.
_CLIENT_TOOLS = {
    "read": ("read_file", "path"),
    "list": ("list_directory", "path"),
    "search": ("grep_search", "query"),
    "edit": ("edit_file", "path"),
    "write": ("create_file", "path"),
    "run": ("run_terminal_command", "command"),
    "ask": ("ask_user", "question"),
}


@dataclass(frozen=True)
class CorpusCase:
    case: EvalCase
    writer: str
    project: str
    lang: str
    client: str


def _workspace(project: Json, cases: list[Json]) -> Workspace:
    """A workspace for a project: its path, its bank, and a listing of the files its cases
    touch (what Cline's first environment details show)."""
    bank = str(project.get("bank") or "none")
    paths: set[str] = set()
    for case in cases:
        for step in case.get("before") or []:
            for key in ("read", "edit", "write"):
                if key in step and not str(step[key]).startswith("/"):
                    paths.add(str(step[key]))
    if bank != "none":
        paths.update(f"{bank}/{name}.md" for name in BANK_FILES.split())
    listing = "\n".join(sorted(paths)) or "README.md"
    return Workspace(str(project["id"]), str(project["workspace"]), bank != "none", listing, {})


def _result(step: Json) -> str:
    return str(step.get("result") or "").rstrip("\n")


def _dsl(case: Json, bank: str) -> Json:
    """``case`` in ``build.py``'s schema: turns of user input and assistant steps."""
    turns: list[Json] = []
    files: dict[str, str] = {}
    pending: list[Json] = []  # tool operations of the assistant step being built
    said = ""  # assistant text not yet placed: the words before its tools, or a final answer

    def close(final: bool) -> None:
        nonlocal pending, said
        if pending:
            turns.append({"say": said, "do": pending})
            pending, said = [], ""
        if final and (said or (turns and "user" not in turns[-1])):
            turns.append({"say": said or "Done."})  # Cline takes new words after a final answer
            said = ""

    for step in case.get("before") or []:
        if "user" in step:
            close(final=True)
            if turns and "user" in turns[-1]:  # two user messages in a row: sent as one
                turns[-1] = {"user": f"{turns[-1]['user']}\n\n{step['user']}"}
            else:
                turns.append({"user": str(step["user"])})
        elif "answer" in step:
            close(final=False)
            said = str(step["answer"])
        else:
            kind = next(k for k in _TOOL_STEPS if k in step)
            target = str(step[kind])
            out = _result(step)
            if kind == "read":
                files[target] = out or "\n"
                pending.append({"read": target})
            elif kind == "edit":
                pending.append({"edit": target, "old": "\n", "new": out or "\n"})
            elif kind == "write":
                pending.append({"write": target, "content": out or "\n"})
            elif kind == "ask":
                pending.append({"ask": target, "options": [], "answer": out or "ok"})
            else:
                pending.append({kind: target, "out": out})
    text = case.get("text")
    if text is not None:
        close(final=True)
        if turns and "user" in turns[-1]:
            turns[-1] = {"user": f"{turns[-1]['user']}\n\n{text}"}
        else:
            turns.append({"user": str(text)})
    else:
        close(final=False)
    if turns and "user" not in turns[0]:
        turns.insert(0, {"user": "continue"})
    if bank not in ("none", "memory-bank"):
        for path in list(files):
            files[path.replace("memory-bank/", f"{bank}/")] = files.pop(path)
    return {
        "id": case["id"],
        "label": case["label"],
        "mode": case.get("mode", "act"),
        "turns": turns,
        "files": files,
    }


def _client_messages(case: Json) -> list[Json]:
    """The messages another client sends: its system message, the conversation, the rest."""
    messages: list[Json] = []
    if case.get("system"):
        messages.append({"role": "system", "content": str(case["system"])})
    calls = 0
    for step in case.get("before") or []:
        if "user" in step:
            messages.append({"role": "user", "content": str(step["user"])})
        elif "answer" in step:
            messages.append({"role": "assistant", "content": str(step["answer"])})
        else:
            kind = next(k for k in _TOOL_STEPS if k in step)
            name, arg = _CLIENT_TOOLS[kind]
            calls += 1
            digest = hashlib.sha1(f"{case['id']}:{calls}".encode()).hexdigest()[:20]
            function = {"name": name, "arguments": compact({arg: str(step[kind])})}
            call = {"id": f"call_{digest}", "type": "function", "function": function}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append(
                {"role": "tool", "tool_call_id": call["id"], "content": _result(step) or "ok"}
            )
    if case.get("text") is not None:
        messages.append({"role": "user", "content": str(case["text"])})
    if case.get("trailing_system"):
        messages.append({"role": "system", "content": str(case["trailing_system"])})
    return messages


def render(case: Json, project: Json, workspace: Workspace) -> EvalCase:
    """One corpus case as the request body its client sends."""
    note = " ".join(str(case.get("note", "")).split())
    if case["client"] != "cline":
        body: Json = {"model": "cline-memory-router", "messages": _client_messages(case),
                      "stream": True}  # fmt: skip
        return EvalCase(case["id"], case["label"], "plain", body, note)
    style = str(case["tools"])
    bank = str(project.get("bank") or "none")
    dsl = _dsl(case, bank)
    body = build_body(dsl, workspace, style)
    if bank not in ("none", "memory-bank"):
        for message in body["messages"][:1]:  # the custom instructions name the bank's folder
            message["content"] = str(message["content"]).replace("memory-bank/", f"{bank}/")
    if case.get("trailing_system"):
        body["messages"].append({"role": "system", "content": str(case["trailing_system"])})
    return EvalCase(case["id"], case["label"], style, body, note)


@cache
def _load() -> tuple[tuple[str, tuple[CorpusCase, ...]], ...]:
    splits: dict[str, list[str]] = yaml.safe_load(
        (CORPUS_DIR / "splits.yaml").read_text(encoding="utf-8")
    )
    out: dict[str, list[CorpusCase]] = {name: [] for name in splits}
    for split, writers in splits.items():
        for writer in writers:
            path = CORPUS_DIR / f"{writer}.yaml"
            if not path.is_file():
                continue  # a writer not written yet
            data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
            projects = {str(p["id"]): p for p in data.get("projects") or []}
            cases = list(data.get("cases") or [])
            spaces = {
                pid: _workspace(p, [c for c in cases if c.get("project") == pid])
                for pid, p in projects.items()
            }
            for case in cases:
                pid = str(case["project"])
                built = render(case, projects[pid], spaces[pid])
                out[split].append(
                    CorpusCase(built, writer, pid, str(case["lang"]), str(case["client"]))
                )
    return tuple((name, tuple(items)) for name, items in out.items())


def load_corpus() -> dict[str, list[CorpusCase]]:
    """The corpus by split; each call gets its own copy of the bodies."""
    return {name: copy.deepcopy(list(items)) for name, items in _load()}
