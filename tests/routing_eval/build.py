"""Expand the hand-written cases in ``cases/*.yaml`` into real chat-completion request bodies.

A case gives its workspace, user turns and assistant steps (``say`` text plus tool operations
in ``do``, each with its result). It is rendered as Cline sends it: ``native`` (cline 3.0.65:
``tools``, assistant ``tool_calls``, ``role: tool`` results, absolute paths, a final answer is
plain text) or ``xml`` (cline 2.18: XML tools described in the system prompt, one tool call
per assistant message, results as user messages of text parts ending in
``<environment_details>``, final answers through ``attempt_completion`` / ``plan_mode_respond``).
``plain`` cases (other clients) give their messages as sent. System prompts and tool lists
are the captured ones in ``tests/fixtures/cline``, with the working directory replaced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
REPO = HERE.parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "cline"
MODEL = "cline-memory-router"
LABELS = ("memory", "implement", "analyze", "chat", "meta")
STYLES = ("native", "xml", "plain")
CAPTURED_WS = "/tmp/cline_capture/todo-app"
CAPTURED_PLAN_WS = "/tmp/cline_capture/ws1"
CAPTURED_HOME = "/tmp/cline_capture/home218"
BANK_FILES = "projectbrief productContext systemPatterns techContext activeContext progress"

Json = dict[str, Any]


@dataclass(frozen=True)
class EvalCase:
    """One labelled request: ``body`` is a complete ``/v1/chat/completions`` body."""

    id: str
    label: str
    style: str
    body: dict[str, Any]
    note: str


@dataclass
class Workspace:
    name: str
    path: str
    memory_bank: bool
    listing: str
    files: dict[str, Any]
    repo: bool = False


@cache
def _fixture(name: str) -> Json:
    data: Json = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _native_rules() -> str:
    act = _fixture_text("native_turn1", 0)
    return act[act.index("\n\n# Rules\n") :]


def native_system(mode: str, ws: Workspace) -> str:
    """Cline 3.0.65's system prompt for ``mode`` ("act", "plan" or "yolo") in ``ws``."""
    if mode == "plan":
        text = _fixture_text("native_plan_turn1", 0).replace(CAPTURED_PLAN_WS, ws.path)
        return text + _native_rules() if ws.memory_bank else text
    text = _fixture_text("native_yolo_turn1" if mode == "yolo" else "native_turn1", 0)
    text = text.replace(CAPTURED_WS, ws.path)
    if not ws.memory_bank:
        text = text[: text.index("\n\n# Rules\n")]
    return text


def native_tools(mode: str) -> list[Json]:
    name = {"plan": "native_plan_turn1", "yolo": "native_yolo_turn1"}.get(mode, "native_turn1")
    return json.loads(json.dumps(_fixture(name)["tools"]))  # type: ignore[no-any-return]


def xml_system(ws: Workspace) -> str:
    """Cline 2.18's system prompt (XML tools) for ``ws``."""
    text = _fixture_text("xml_turn1", 0).replace(CAPTURED_WS, ws.path)
    user = ws.path.split("/")[2] if ws.path.startswith("/home/") else "dev"
    text = text.replace(CAPTURED_HOME, f"/home/{user}")
    if not ws.memory_bank:
        text = text[: text.index("\n\n====\n\nUSER'S CUSTOM INSTRUCTIONS")]
    return text


def _fixture_text(name: str, index: int, part: int | None = None) -> str:
    content = _fixture(name)["messages"][index]["content"]
    text = content if part is None else content[part]["text"]
    assert isinstance(text, str)
    return text


PLAN_MODE_NOTE = (
    "In this mode you should gather information, ask questions and architect a solution. "
    "Once you have a plan, use the plan_mode_respond tool to talk it through with the user. "
    '(If the user wants tools only available in Act mode, ask them to "toggle to Act mode"; '
    "you cannot switch modes yourself.)"
)
CLI_TOOLS = (
    "These are some of the tools on the user's machine, and may be useful if needed to "
    "accomplish the task: git, docker, kubectl, aws, gcloud, terraform, npm, pip, cargo, curl, "
    "jq, make, cmake, python, node, psql, sqlite3, grep, sed, awk, apt, mvn, wget. This list is "
    "not exhaustive, and other tools may be available."
)
SAVED_NOTE = (
    "IMPORTANT: For any future changes to this file, use the final_file_content shown above as "
    "your reference. This content reflects the current state of the file, including any "
    "auto-formatting. Always base your SEARCH/REPLACE operations on this final version."
)


ENV_HEAD = """<environment_details>
# Cline CLI - Node.js Visible Files
{visible}

# Cline CLI - Node.js Open Tabs
{tabs}

# Current Time
{time}"""
ENV_FIRST = (
    """

# Current Working Directory ({path}) Files
{listing}

# Workspace Configuration
{config}

# Detected CLI Tools
"""
    + CLI_TOOLS
)
ENV_TAIL = """

# Context Window Usage
{usage}

# Current Mode
{mode}
</environment_details>"""
SWITCHED = (
    "[plan_mode_respond] Result:\n"
    "[The user has switched to ACT MODE, so you may now proceed with the task.]"
)
SWITCHED_MSG = "The user also provided the following message when switching to ACT MODE:"
FEEDBACK = (
    "[attempt_completion] Result:\nThe user has provided feedback on the results. Consider "
    "their input to continue the task, and then attempt completion again."
    "\n<feedback>\n{}\n</feedback>"
)
RESUMED_PLAN = (
    "[TASK RESUMPTION] This task was interrupted {ago}. The conversation may have been "
    "incomplete. Be aware that the project state may have changed since then. The current "
    "working directory is now '{cwd}'.\n\nNote: you are in PLAN MODE, so respond to the "
    "user's message rather than continuing the task.\n\nNew message to respond to with "
    "plan_mode_respond tool:\n<user_message>\n{text}\n</user_message>"
)
RESUMED_ACT = (
    "[TASK RESUMPTION] This task was interrupted {ago}. It may or may not be complete, so "
    "please reassess the task context. Be aware that the project state may have changed since "
    "then. The current working directory is now '{cwd}'. If the task has not been completed, "
    "retry the last step before interruption and proceed with completing the task.\n\n"
    "New instructions for task continuation:\n<user_message>\n{text}\n</user_message>"
)
DENIED = (
    "The user denied this operation. The user provided the following feedback:\n"
    "<feedback>\n{}\n</feedback>"
)
FAILED = "The tool execution failed with the following error:\n<error>\n{}\n</error>"


def load_yaml_files(directory: Path = CASES_DIR) -> tuple[dict[str, Workspace], list[Json]]:
    """The workspaces and case descriptions of every YAML file in ``directory``."""
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
            listing, files = str(spec.get("listing", "")).strip(), dict(spec.get("files") or {})
            bank, repo = bool(spec.get("memory_bank")), bool(spec.get("repo"))
            workspaces[name] = Workspace(name, spec["path"], bank, listing, files, repo)
        for case in data.get("cases") or []:
            case["_file"] = path.name
            cases.append(case)
    return workspaces, cases


def repo_text(path: str) -> str:
    """A file of this repository (for realistic long tool results), as frozen for the sets."""
    from .snapshot import frozen_text  # here: `python -m tests.routing_eval.snapshot` runs it

    return frozen_text(path)


def _resolve(entry: Any) -> str:
    return repo_text(entry["from"]) if isinstance(entry, dict) else str(entry)


def numbered(text: str, start: int = 1) -> str:
    lines = text.rstrip("\n").split("\n")
    return "\n".join(f"{start + i} | {line}" for i, line in enumerate(lines))


def compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _clock(case_id: str, index: int) -> str:
    seed = int(hashlib.sha1(case_id.encode()).hexdigest()[:8], 16)
    start = datetime(2026, 3, 2, 8, 0, tzinfo=UTC) + timedelta(minutes=seed % (60 * 24 * 200))
    t = start + timedelta(seconds=37 * index)
    hour, half = t.hour % 12 or 12, "AM" if t.hour < 12 else "PM"
    return f"{t.month}/{t.day}/{t.year}, {hour}:{t:%M:%S} {half} (UTC, UTC+0:00)"


@dataclass
class Renderer:
    """Builds one case's messages, tracking mode, file state and tool-call ids."""

    case: Json
    ws: Workspace
    style: str
    mode: str = "act"
    messages: list[Json] = field(default_factory=list)
    fs: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    progress_set: bool = False
    last_final: str | None = None  # "completion" | "plan" after a final answer, else None
    base_tokens: int = 0  # the system prompt, for the context-window line

    def file(self, path: str) -> str:
        if path in self.fs:
            return self.fs[path]
        extra = self.case.get("files") or {}
        if path in extra:
            text = _resolve(extra[path])
        elif path in self.ws.files:
            text = _resolve(self.ws.files[path])
        elif self.ws.repo:
            text = repo_text(path)
        else:
            raise KeyError(f"{self.case['id']}: no content for {path!r} in {self.ws.name}")
        self.fs[path] = text
        return text

    def abs(self, path: str) -> str:
        return path if path.startswith("/") else f"{self.ws.path}/{path}"

    def env(self, first: bool) -> str:
        visible = "\n".join(self.case.get("visible") or []) or None
        used = 0
        if self.messages:  # roughly what the previous request cost, as Cline reports it
            used = self.base_tokens + len(json.dumps([m["content"] for m in self.messages])) // 4
        window = int(self.case.get("window", 128000))  # the context window the user typed
        text = ENV_HEAD.format(
            visible=visible or "(No visible files)",
            tabs=visible or "(No open tabs)",
            time=_clock(self.case["id"], len(self.messages)),
        )
        if first:
            config = {"workspaces": {self.ws.path: {"hint": self.ws.path.rsplit("/", 1)[-1]}}}
            text += ENV_FIRST.format(
                path=self.ws.path, listing=self.ws.listing, config=json.dumps(config, indent=2)
            )
        mode = "PLAN MODE\n" + PLAN_MODE_NOTE if self.mode == "plan" else "ACT MODE"
        usage = f"{used:,} / {window // 1000}K tokens used ({round(100 * used / window)}%)"
        return text + ENV_TAIL.format(usage=usage, mode=mode)

    def xml_user(self, text: str, first: bool = False) -> None:
        parts = [{"type": "text", "text": text}]
        if not self.progress_set:
            parts.append({"type": "text", "text": _fixture_text("xml_turn1", 1, 1)})
        parts.append({"type": "text", "text": self.env(first)})
        self.messages.append({"role": "user", "content": parts})

    def user(self, turn: Json, first: bool) -> None:
        text = str(turn["user"]).rstrip("\n")
        new_mode = turn.get("mode", self.mode)
        if not first and self.last_final is None:
            raise ValueError(f"{self.case['id']}: a user turn must follow a final answer")
        switched = new_mode != self.mode
        self.mode = new_mode
        final, self.last_final = self.last_final, None
        if self.style == "native":
            self.messages.append({"role": "user", "content": text})
            if first and self.case.get("mode") == "yolo":
                self.messages.append(
                    {"role": "user", "content": _fixture_text("native_yolo_turn1", 2)}
                )
            return
        if first:
            self.xml_user(f"<task>\n{text}\n</task>", first=True)
        elif turn.get("resumed"):
            template = RESUMED_PLAN if self.mode == "plan" else RESUMED_ACT
            self.xml_user(template.format(ago=turn["resumed"], cwd=self.ws.path, text=text))
        elif final == "plan" and switched and self.mode == "act":
            extra = f"\n\n{SWITCHED_MSG}\n<user_message>\n{text}\n</user_message>" if text else ""
            self.xml_user(SWITCHED + extra)
        elif final == "plan":
            self.xml_user(f"[plan_mode_respond] Result:\n<user_message>\n{text}\n</user_message>")
        else:
            self.xml_user(FEEDBACK.format(text))

    def append(self, text: str) -> None:
        """Text Cline adds to the pending input (e.g. its auto-condense instructions)."""
        last = self.messages[-1]
        if self.style == "xml" and last["role"] == "user":
            last["content"].insert(len(last["content"]) - 1, {"type": "text", "text": text})
        else:
            self.messages.append({"role": "user", "content": text})
            self.last_final = None

    def step(self, turn: Json) -> None:
        if self.last_final is not None:
            raise ValueError(f"{self.case['id']}: an assistant step must follow user or tool input")
        say = str(turn.get("say") or "").rstrip("\n")
        ops = list(turn.get("do") or [])
        if not ops:
            self.final(say)
            return
        if self.style == "native":
            self.native_step(say, ops)
        else:
            for i, op in enumerate(ops):
                progress = turn.get("progress") if i == len(ops) - 1 else None
                self.xml_op(say if i == 0 else str(op.get("say") or ""), op, progress)

    def final(self, text: str) -> None:
        self.last_final = "plan" if self.mode == "plan" else "completion"
        if self.style == "xml" and self.mode == "plan":
            text = f"<plan_mode_respond>\n<response>{text}</response>\n</plan_mode_respond>"
        elif self.style == "xml":
            text = f"<attempt_completion>\n<result>\n{text}\n</result>\n</attempt_completion>"
        self.messages.append({"role": "assistant", "content": text})

    def call_id(self) -> str:
        self.calls += 1
        digest = hashlib.sha1(f"{self.case['id']}:{self.calls}".encode()).hexdigest()
        return f"call_{digest[:24]}"

    def native_step(self, say: str, ops: list[Json]) -> None:
        calls: list[Json]
        results: list[Json]
        calls, results = [], []
        for op in ops:
            name, args, result = self.native_op(op)
            cid = self.call_id()
            function = {"name": name, "arguments": compact(args)}
            calls.append({"id": cid, "type": "function", "function": function})
            results.append({"role": "tool", "tool_call_id": cid, "content": result})
        self.messages.append({"role": "assistant", "content": say, "tool_calls": calls})
        self.messages.extend(results)

    def outcome(self, op: Json) -> str | None:
        if "denied" in op:
            return DENIED.format(op["denied"])
        return FAILED.format(op["error"]) if "error" in op else None

    def read_entries(self, op: Json) -> list[Json]:
        raw = op["read"]
        items = raw if isinstance(raw, list) else [raw]
        out: list[Json] = []
        for item in items:
            if item == "@bank":  # the six core files, in the order the custom instructions give
                out.extend({"path": f"memory-bank/{name}.md"} for name in BANK_FILES.split())
            else:
                out.append(item if isinstance(item, dict) else {"path": item})
        return out

    def read_text(self, entry: Json) -> tuple[str, int, int, int]:
        lines = self.file(entry["path"]).rstrip("\n").split("\n")
        start = int(entry.get("start") or 1)
        end = min(int(entry.get("end") or len(lines)), len(lines))
        return numbered("\n".join(lines[start - 1 : end]), start), start, end, len(lines)

    def native_op(self, op: Json) -> tuple[str, Json, str]:
        denied = self.outcome(op)
        if "read" in op:
            files, results = [], []
            for entry in self.read_entries(op):
                spec: Json = {"path": self.abs(entry["path"])}
                if entry.get("start"):
                    spec.update(start_line=entry["start"], end_line=entry.get("end"))
                files.append(spec)
                if denied is None:
                    body = self.read_text(entry)[0]
                    results.append({"query": spec["path"], "result": body, "success": True})
            return "read_files", {"files": files}, denied or compact(results)
        out = str(op.get("out", "")).rstrip("\n")
        if "run" in op or "list" in op:
            cmd = str(op["run"]) if "run" in op else f"find {op['list']} -type f | sort"
            ok = int(op.get("exit", 0)) == 0
            result = compact([{"query": cmd, "result": out, "success": ok}])
            return "run_commands", {"commands": [cmd]}, denied or result
        if "search" in op:
            result = compact([{"query": op["search"], "result": out, "success": True}])
            return "search_codebase", {"queries": [op["search"]]}, denied or result
        if "write" in op:
            path = self.abs(op["write"])
            if denied is None:
                self.fs[op["write"]] = str(op["content"])
            return "editor", {"path": path, "new_text": op["content"]}, denied or f"Created {path}"
        if "edit" in op:
            path = self.abs(op["edit"])
            if denied is None:
                self.apply_edit(op)
            args = {"path": path, "old_text": op["old"], "new_text": op["new"]}
            return "editor", args, denied or f"Edited {path}: replaced 1 occurrence"
        if "ask" in op:
            args = {"question": op["ask"], "options": op["options"]}
            return "ask_question", args, denied or str(op["answer"])
        if "fetch" in op:
            args = {"requests": [{"url": op["fetch"], "prompt": op["prompt"]}]}
            return "fetch_web_content", args, denied or out
        raise ValueError(f"{self.case['id']}: unknown operation {sorted(op)}")

    def apply_edit(self, op: Json) -> str | None:
        try:
            before = self.file(op["edit"])
        except KeyError:
            return None
        old = str(op["old"]).rstrip("\n")
        if old not in before:  # e.g. a repository file that changed since the case was written
            return None
        after = before.replace(old, str(op["new"]).rstrip("\n"), 1)
        self.fs[op["edit"]] = after
        return after

    def xml_op(self, say: str, op: Json, progress: str | None) -> None:
        denied = self.outcome(op)
        if "read" in op:
            entries = self.read_entries(op)
            for i, entry in enumerate(entries):
                params = [("path", entry["path"])]
                if entry.get("start"):
                    params += [("start_line", str(entry["start"])), ("end_line", str(entry["end"]))]
                body, start, end, total = self.read_text(entry)
                span = f"Showing lines {start}-{end} of {total}"
                if (start, end) == (1, total):
                    span = f"File has {total} lines total"
                result = denied or f"{body}\n\n({span}.)"
                last = i == len(entries) - 1
                head = f"[read_file for '{entry['path']}'] Result:\n"
                self.xml_call(
                    say if i == 0 else "",
                    "read_file",
                    params,
                    progress if last else None,
                    head + result,
                )
            return
        out = str(op.get("out", "")).rstrip("\n")
        if "run" in op:
            tool, target = "execute_command", str(op["run"])
            params = [
                ("command", target),
                ("requires_approval", str(op.get("approval", False)).lower()),
            ]
            result = f"Command executed.\nOutput:\n{out}"
        elif "list" in op:
            tool, target = "list_files", str(op["list"])
            params, result = [("path", target), ("recursive", "true")], out
        elif "search" in op:
            tool, target = "search_files", f"{op['search']}' in '{op.get('glob', '*')}"
            params = [("path", str(op.get("path", "."))), ("regex", str(op["search"]))]
            params.append(("file_pattern", str(op.get("glob", "*"))))
            result = out
        elif "write" in op:
            tool, target = "write_to_file", str(op["write"])
            content = str(op["content"]).rstrip("\n")
            if denied is None:
                self.fs[target] = content + "\n"
            params, result = (
                [("path", target), ("content", f"\n{content}\n")],
                self.saved(target, content),
            )
        elif "edit" in op:
            tool, target = "replace_in_file", str(op["edit"])
            old, new = str(op["old"]).rstrip("\n"), str(op["new"]).rstrip("\n")
            params = [
                ("path", target),
                ("diff", f"\n------- SEARCH\n{old}\n=======\n{new}\n+++++++ REPLACE\n"),
            ]
            after = None if denied else self.apply_edit(op)
            result = f"The content was successfully saved to {target}."
            if after is not None:
                result = self.saved(target, after)
        elif "ask" in op:
            tool, target = "ask_followup_question", str(op["ask"])
            params = [("question", target)]
            if op.get("options"):
                params.append(("options", json.dumps(op["options"], ensure_ascii=False)))
            result = f"<answer>\n{op['answer']}\n</answer>"
        else:
            raise ValueError(f"{self.case['id']}: operation {sorted(op)} has no XML form")
        self.xml_call(
            say, tool, params, progress, f"[{tool} for '{target}'] Result:\n{denied or result}"
        )

    def saved(self, path: str, content: str) -> str:
        return (
            f"The content was successfully saved to {path}.\n\n"
            "Here is the full, updated content of the file that was saved:\n\n"
            f'<final_file_content path="{path}">\n{content.rstrip()}\n</final_file_content>\n\n'
            f"{SAVED_NOTE}\n\n"
        )

    def xml_call(
        self, say: str, tool: str, params: list[tuple[str, str]], progress: str | None, result: str
    ) -> None:
        inner = "\n".join(f"<{k}>{v}</{k}>" for k, v in params)
        if progress:
            inner += f"\n<task_progress>\n{progress.rstrip()}\n</task_progress>"
            self.progress_set = True
        xml = f"<{tool}>\n{inner}\n</{tool}>"
        self.messages.append({"role": "assistant", "content": f"{say}\n\n{xml}" if say else xml})
        self.xml_user(result)


def build_body(case: Json, ws: Workspace | None, style: str) -> Json:
    """The request body for ``case`` rendered in ``style``."""
    body: Json = {"model": MODEL}
    if style == "plain":
        body["messages"] = [dict(m) for m in case["messages"]]
    else:
        assert ws is not None
        mode = str(case.get("mode", "act"))
        renderer = Renderer(case, ws, style, mode="plan" if mode == "plan" else "act")
        renderer.base_tokens = len(xml_system(ws)) // 4
        turns = case["turns"]
        for i, turn in enumerate(turns):
            if "user" in turn:
                renderer.user(turn, first=i == 0)
            elif "append" in turn:
                renderer.append(str(turn["append"]).rstrip("\n"))
            else:
                renderer.step(turn)
        if renderer.last_final is not None:
            raise ValueError(f"{case['id']}: the request must end with user input or tool results")
        sys_mode = "yolo" if mode == "yolo" else renderer.mode
        system = native_system(sys_mode, ws) if style == "native" else xml_system(ws)
        body["messages"] = [{"role": "system", "content": system}, *renderer.messages]
        if style == "native":
            body["tools"] = native_tools(sys_mode)
            body["tool_choice"] = "auto"
        else:
            body["temperature"] = 0
    body.update(case.get("body") or {})
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body


def expand(case: Json, workspaces: dict[str, Workspace]) -> list[EvalCase]:
    for key in ("id", "label", "style", "note"):
        if key not in case:
            raise ValueError(f"{case.get('_file')}: a case lacks {key!r}: {case.get('id')}")
    if case["label"] not in LABELS:
        raise ValueError(f"{case['id']}: unknown label {case['label']!r}")
    ws = workspaces[case["ws"]] if "ws" in case else None
    styles = ["native", "xml"] if case["style"] == "both" else [case["style"]]
    out = []
    for style in styles:
        if style not in STYLES:
            raise ValueError(f"{case['id']}: unknown style {style!r}")
        cid = f"{case['id']}-{style[0]}" if case["style"] == "both" else case["id"]
        body = build_body({**case, "id": cid}, ws, style)
        note = " ".join(str(case["note"]).split())
        out.append(EvalCase(id=cid, label=case["label"], style=style, body=body, note=note))
    return out


def build_all() -> list[EvalCase]:
    workspaces, cases = load_yaml_files()
    built: list[EvalCase] = []
    for case in cases:
        built.extend(expand(case, workspaces))
    return built
