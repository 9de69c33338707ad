"""A generated Cline workload for ``bench/residency.py``: one developer's tasks, turn by turn.

Every request is what cline 3.0.65 sends in native-tool mode: the captured system prompt and
tools of ``tests/fixtures/cline/native_turn1.json`` (``native_plan_turn1.json`` in Plan mode),
the whole conversation resent each turn, ``read_files`` / ``search_codebase`` / ``editor`` /
``run_commands`` calls answered by ``role: "tool"`` messages of ``[{query, result, success}]``.

A task: the memory bank is read (the custom instructions demand it), then a tool loop of 8-20
turns; about half the tasks hold an analysis (at the start in Plan mode, or after the first
implementation with a pasted log); some end with a short chat question; every task ends with
"update memory bank". Housekeeping comes now and then: a title for the conversation, and
cline 3.x's compaction once the last request used 80 % of the 32768-token window (its
summarizer's request, then the summary in place of the task's message and the older turns).

A request's true label is the work its answer does (reading the bank is ``memory``, the first
look at the code ``implement``), except that the request carrying the bank's contents back is
still ``memory``: the model digests the bank there. Everything comes from ``Random(seed)``;
``workspace`` (the project's path in the system prompt, the tool calls and their results) only
names where the developer works, so a second Cline window is a second workspace.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path
from typing import Any

from residency_replay import Builder, Reply, TraceItem
from residency_text import BANK_TEXT, FIELDS, HEADER, NOUNS, STATEMENTS, TASKS, VERBS, TaskSpec

__all__ = ["CONDENSE_AT", "WS", "Reply", "TraceItem", "build_trace"]

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "cline"
MODEL = "cline-memory-router"
WS = "/home/dev/src/ledgerline"
CONDENSE_AT = int(0.8 * 32768)
"""Cline condenses once the last request's tokens pass 80 % of the context window."""
BANK_FILES = (
    *("projectbrief", "productContext", "systemPatterns"),
    *("techContext", "activeContext", "progress"),
)
Json = dict[str, Any]
Call = tuple[str, Json, str]  # tool name, arguments, the result Cline sends back


def _fixture(name: str) -> Json:
    data: Json = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


@cache
def _systems(ws: str) -> dict[str, str]:
    act = _fixture("native_turn1")["messages"][0]["content"]
    rules = act[act.index("\n\n# Rules\n") :]  # the plan capture's workspace had no bank
    plan = _fixture("native_plan_turn1")["messages"][0]["content"]
    return {
        "act": act.replace("/tmp/cline_capture/todo-app", ws),
        "plan": plan.replace("/tmp/cline_capture/ws1", ws) + rules,
    }


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _module(rng: random.Random, path: str) -> str:
    """A plausible Python module: imports, a row type, 5-12 functions with bodies."""
    model = rng.choice(NOUNS).title()
    stem = path.rsplit("/", 1)[-1].removesuffix(".py").replace("_", " ").title()
    lines = [f'"""{stem}: {rng.choice(VERBS)}ing {rng.choice(NOUNS)}s."""\n']
    lines += HEADER.format(m=model).split("\n")
    lines += [f"    {f}: {rng.choice(['Decimal', 'str', 'datetime', 'int'])}" for f in FIELDS]
    for _ in range(rng.randint(5, 12)):
        verb, noun, fld = rng.choice(VERBS), rng.choice(NOUNS), rng.choice(FIELDS)
        lines += [
            "\n",
            f"async def {verb}_{noun}(session: AsyncSession, {noun}_id: int, "
            f"*, strict: bool = True) -> {model}Row | None:",
            f'    """{verb.title()} the {noun} and its {fld.replace("_", " ")}."""',
            f"    query = select({model}).where({model}.id == {noun}_id)",
            "    row = (await session.execute(query)).scalar_one_or_none()",
            f'    if row is None:\n        raise NotFound(f"{noun} {{{noun}_id}} not found")',
        ]
        for _ in range(rng.randint(2, 6)):
            line = rng.choice(STATEMENTS)
            lines.append(line.format(o=rng.choice(FIELDS), f=fld, n=noun, v=verb))
        lines.append(f"    return {model}Row(**{{f: getattr(row, f) for f in _FIELDS}})")
    return "\n".join(lines) + "\n"


def _pytest(rng: random.Random, ws: str, test: str, symbol: str, passed: bool) -> str:
    total, seconds = rng.randint(38, 140), f"{rng.uniform(2, 9):.2f}s"
    out = (
        f"{'=' * 29} test session starts {'=' * 30}\nplatform linux -- Python 3.12.7, "
        f"pytest-8.3.4, pluggy-1.5.0\nrootdir: {ws}\nconfigfile: pyproject.toml\nplugins: "
        f"anyio-4.6.2, xdist-3.6.1, time-machine-2.16.0\ncollected {total} items\n\n"
    )
    dots = "\n".join(f"{test} {'.' * rng.randint(8, 30)}   [{p:3d}%]" for p in (31, 64, 100))
    if passed:
        return f"{out}{dots}\n\n{'=' * 30} {total} passed in {seconds} {'=' * 30}"
    name = f"test_{symbol.lower()}_{rng.choice(['edge', 'rounding', 'empty', 'twice', 'limit'])}"
    got, want = rng.randint(2, 60), rng.randint(2, 60)
    frames = "\n".join(
        f"{ws}/app/{rng.choice(['services', 'api', 'jobs'])}/{rng.choice(NOUNS)}.py:"
        f"{rng.randint(20, 300)}: in {rng.choice(VERBS)}_{rng.choice(NOUNS)}\n"
        "    row = (await session.execute(query)).scalar_one_or_none()"
        for _ in range(rng.randint(3, 7))
    )
    return (
        f"{out}{dots.replace('.', 'F', 1)}\n\n{'=' * 35} FAILURES {'=' * 35}\n{'_' * 22} "
        f"{name} {'_' * 22}\n\n    async def {name}(client, factories):\n        inv = await "
        "factories.invoice(lines=25)\n        resp = await client.get('/invoices')\n>       "
        f"assert resp.json()['total'] == {want}\nE       AssertionError: assert {got} == {want}"
        f"\n\n{frames}\n{'=' * 27} short test summary info {'=' * 28}\nFAILED {test}::{name} - "
        f"AssertionError: assert {got} == {want}\n{'=' * 10} 1 failed, {total - 1} passed in "
        f"{seconds} {'=' * 10}"
    )


def _log(rng: random.Random, lines: int) -> str:
    out = []
    for i in range(lines):
        level, noun = rng.choices(["INFO", "WARNING", "ERROR"], [8, 2, 1])[0], rng.choice(NOUNS)
        out.append(
            f"2026-11-{rng.randint(10, 20)}T{rng.randint(0, 23):02d}:{i % 60:02d}:"
            f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z {level:<7} app.{noun} "
            f"{rng.choice(VERBS)}_{noun} {noun}_id={rng.randint(1000, 99999)} request_id="
            f"{rng.getrandbits(64):016x} attempt={rng.randint(1, 4)} ms={rng.randint(3, 2400)}"
        )
        if level == "ERROR":
            out.append(_TRACEBACK.format(line=rng.randint(40, 300)))
    return "\n".join(out)


_TRACEBACK = (
    'Traceback (most recent call last):\n  File "/app/app/services/payments.py", line {line}, '
    "in book_payment\n    await session.flush()\nsqlalchemy.exc.IntegrityError: duplicate key "
    'value violates unique constraint "payments_provider_event_id_key"'
)


class Project:
    """The workspace: generated Python sources (stable per path) and the memory bank."""

    def __init__(self, seed: int, ws: str) -> None:
        self.seed, self.ws = seed, ws
        self.sources: dict[str, str] = {}
        self.focus = "Paying down small bugs before the Q3 release."
        self.decisions: list[str] = []
        self.done: list[str] = []

    def source(self, path: str) -> str:
        if path not in self.sources:
            self.sources[path] = _module(random.Random(f"{self.seed}:{path}"), path)
        return self.sources[path]

    def bank(self, name: str) -> str:
        paths = sorted({path for spec in TASKS for path in (*spec.files, spec.test)})
        return BANK_TEXT[name].format(
            focus=self.focus,
            decisions="".join(f"- {d}\n" for d in self.decisions[-6:]),
            done="".join(f"- {d}\n" for d in self.done),
            modules="".join(f"- `{p}`: {self.source(p).split(chr(10))[0][3:-3]}\n" for p in paths),
        )

    def read(self, paths: list[str], ranges: dict[str, tuple[int, int]] | None = None) -> Call:
        """A ``read_files`` call and its result: numbered lines, as Cline returns them."""
        files, results = [], []
        for path in paths:
            bank = path.startswith("memory-bank/")
            text = self.bank(path[12:-3]) if bank else self.source(path)
            lines = text.rstrip("\n").split("\n")
            start, end = (ranges or {}).get(path, (1, len(lines)))
            entry: Json = {"path": f"{self.ws}/{path}"}
            files.append(entry | ({"start_line": start, "end_line": end} if ranges else {}))
            numbered = "\n".join(f"{start + i} | {x}" for i, x in enumerate(lines[start - 1 : end]))
            results.append({"query": f"{self.ws}/{path}", "result": numbered, "success": True})
        return ("read_files", {"files": files}, _compact(results))

    def search(self, rng: random.Random, spec: TaskSpec) -> Call:
        hits = []
        for path in [*spec.files, spec.test, "app/api/errors.py", "app/jobs/scheduler.py"]:
            lines = self.source(path).split("\n")
            for n in sorted(rng.sample(range(len(lines)), rng.randint(1, 5))):
                hits.append(f"{self.ws}/{path}:{n + 1}:{lines[n]}")
        result = [{"query": spec.symbol, "result": "\n".join(hits), "success": True}]
        return ("search_codebase", {"queries": [spec.symbol]}, _compact(result))

    def edit(self, rng: random.Random, path: str) -> Call:
        lines = self.source(path).split("\n")
        start = rng.randrange(20, max(len(lines) - 20, 21))
        old = "\n".join(lines[start : start + rng.randint(4, 14)])
        note = f"    # {rng.choice(VERBS)} the {rng.choice(NOUNS)} first ({rng.choice(FIELDS)})"
        new = "\n".join([note, old, *old.split("\n")[: rng.randint(2, 8)]])
        return _edit(self.ws, path, old, new)


def _edit(ws: str, path: str, old: str, new: str) -> Call:
    full = f"{ws}/{path}"
    result = _compact([{"query": f"edit:{full}", "result": f"Edited {full}", "success": True}])
    return ("editor", {"path": full, "old_text": old, "new_text": new}, result)


def _command(command: str, output: str, ok: bool = True) -> Call:
    result = _compact([{"query": command, "result": output, "success": ok}])
    return ("run_commands", {"commands": [command]}, result)


def _plain(message: Json) -> str:
    content = message.get("content") or ""
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def _as_text(message: Json) -> str:
    """One message as cline 3.x writes the conversation for its summarizer (each part cut at
    2,000 characters)."""
    if message["role"] == "tool":
        return f"[Tool result]: {_plain(message)[:2000]}"
    who = "User" if message["role"] == "user" else "Bot"
    parts = [f"[{who}]: {_plain(message)[:2000]}"] if _plain(message) else []
    for call in message.get("tool_calls") or ():
        function = call["function"]
        parts.append(f"[Bot tool calls]: {function['name']}({function['arguments'][:2000]})")
    return "\n\n".join(parts)


class Conversation:
    """One Cline task: the messages it resends every turn."""

    def __init__(self, b: Builder, ws: str, task: int, mode: str, first: str, tag: str) -> None:
        self.b, self.ws, self.task, self.mode = b, ws, task, mode
        self.tag = tag  # in the tool calls' ids: unique to this developer, as the router's are
        self.messages: list[Json] = [{"role": "user", "content": first}]
        self.calls = 0
        self.last_total = 0
        self.carrying_bank = False  # the next request brings the bank's contents back

    def body(self, *extra: Json) -> Json:
        system = {"role": "system", "content": _systems(self.ws)[self.mode]}
        return {
            "model": MODEL,
            "messages": [system, *self.messages, *extra],
            "tools": self.b.tools[self.mode],
            "tool_choice": "auto",
        }

    def user(self, text: str, mode: str | None = None) -> None:
        self.mode = mode or self.mode
        self.messages.append({"role": "user", "content": text})

    def _condense(self) -> None:
        """cline 3.x compaction: the summarizer's request (its own prompt, the conversation as
        text, no tools), then the summary, as a user message, in place of the older messages
        (the task's among them); the last turn is kept."""
        head = (
            "Summarize this session for continuation. Be concise and factual.\n\n## Goal\nOne "
            "sentence: what is being built or fixed.\n\n## State\n- Done: completed steps\n"
            "- In Progress: current work\n- Blocked: blockers or open questions\n\n"
            "## Highlights\nKey technical choices or notable findings (omit if none).\n\n"
            "## Next\nImmediate next steps.\n\n"
        )
        read, edited = self._files()
        files = (
            f"## Files\nRead: {', '.join(read) or 'none'}\nEdited: {', '.join(edited) or 'none'}"
        )
        text = "\n\n".join(_as_text(m) for m in self.messages)
        ask = f"{head}{files}\n\nConversation:\n{text}"
        system = "Summarize the provided coding session into a concise continuation note with "
        system += "detailed next steps."
        messages = [{"role": "system", "content": system}, {"role": "user", "content": ask}]
        done = [m for m in self.messages if m["role"] == "assistant" and m.get("content")]
        summary = (
            f"## Goal\n{_plain(self.messages[0])[:200]}\n\n## State\n- Done: "
            + "; ".join(str(m["content"])[:120] for m in done[-6:])
            + "\n\n## Next\nGo on from the last step.\n\n"
            + "## Files\nRead:\n"
            + ("\n".join(f"- {f}" for f in read) or "- none")
            + "\nModified:\n"
            + ("\n".join(f"- {f}" for f in edited) or "- none")
        )
        self.b.emit(
            self.task, "meta", "condense", {"model": MODEL, "messages": messages}, Reply(summary)
        )
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        opening = {
            "role": "user",
            "content": [{"type": "text", "text": f"Context summary:\n\n{summary}"}],
        }
        self.messages = [opening, *self.messages[last:]]
        self.last_total = 0

    def _files(self) -> tuple[list[str], list[str]]:
        """The files the conversation's calls read and edited, as cline lists them."""
        read: dict[str, None] = {}
        edited: dict[str, None] = {}
        for message in self.messages:
            for call in message.get("tool_calls") or ():
                arguments = json.loads(call["function"]["arguments"])
                if call["function"]["name"] == "read_files":
                    read.update(dict.fromkeys(f["path"] for f in arguments["files"]))
                elif call["function"]["name"] == "editor":
                    edited.update({arguments["path"]: None})
        return list(read), list(edited)

    def ask(self, label: str, note: str, say: str, calls: list[Call] | None = None) -> None:
        """A request answered by ``say`` and ``calls`` (none: a final answer)."""
        if self.last_total > CONDENSE_AT:
            self._condense()
        calls = calls or []
        reply = Reply(say, tuple({"name": n, "arguments": a} for n, a, _ in calls))
        label, self.carrying_bank = "memory" if self.carrying_bank else label, False
        self.last_total = self.b.emit(self.task, label, note, self.body(), reply)
        ids = [f"call_{self.tag}_t{self.task}_{self.calls + k}" for k in range(1, len(calls) + 1)]
        self.calls += len(calls)
        message: Json = {"role": "assistant", "content": say}
        if calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": _compact(a)}}
                for i, (n, a, _) in zip(ids, calls, strict=True)
            ]
        self.messages.append(message)
        for i, (_, _, result) in zip(ids, calls, strict=True):
            self.messages.append({"role": "tool", "tool_call_id": i, "content": result})


_SAY = {
    "search": ("Let me find where {s} is defined and used.", "I'll search for {s} first."),
    "read": ("Let me read the modules and the tests first.", "I need to see how {s} works."),
    "edit": ("Now I'll update {f}.", "Applying the change to {f}.", "Fixing {f} accordingly."),
    "test": ("Let me run the tests.", "Running the test suite to verify."),
    "read_range": ("The failure points at {f}; let me look at that part again.",),
    "lint": ("Tests pass; let me run the linters and type checks.",),
}


def _say(rng: random.Random, kind: str, spec: TaskSpec, path: str, ws: str) -> str:
    return rng.choice(_SAY[kind]).format(s=spec.symbol, f=f"{ws}/{path}")


def _implement(c: Conversation, p: Project, spec: TaskSpec, turns: int, reads: int) -> None:
    """An implementation loop of ``turns`` requests: reads, edit/test cycles, an answer."""
    rng = c.b.rng
    kinds = (["search"] if reads > 1 and rng.random() < 0.5 else []) + ["read"] * reads
    kinds = kinds[: max(turns - 3, 0)]
    while len(kinds) < turns - 1:
        kinds += ["edit", rng.choice(["test", "test", "read_range", "lint"])]
    kinds = kinds[: turns - 1]
    kinds[-1] = "test"
    to_read = [*spec.files, spec.test]
    for i, kind in enumerate(kinds):
        path = rng.choice(spec.files)
        if kind == "search":
            calls = [p.search(rng, spec)]
        elif kind == "read":
            k = rng.randint(1, 3)
            batch, to_read = to_read[:k] or [path], to_read[k:]
            calls = [p.read(batch)]
        elif kind == "read_range":
            start = rng.randint(1, 60)
            calls = [p.read([path], {path: (start, start + rng.randint(30, 80))})]
        elif kind == "edit":
            calls = [p.edit(rng, q) for q in [path, spec.test][: rng.choice([1, 1, 2])]]
        elif kind == "lint":
            out = f"All checks passed!\nSuccess: no issues found in {rng.randint(40, 90)} files"
            calls = [_command("uv run ruff check . && uv run mypy app", out)]
        else:
            last = i == len(kinds) - 1
            out = _pytest(rng, p.ws, spec.test, spec.symbol, passed=last)
            calls = [_command(f"uv run pytest -q {spec.test}", out, ok=last)]
        c.ask("implement", kind, _say(rng, kind, spec, path, p.ws), calls)
    done = "\n".join(f"- {_say(rng, 'edit', spec, f, p.ws)}" for f in spec.files)
    summary = f"Done. I changed {', '.join(spec.files[:2])} and extended {spec.test}.\n\n{done}"
    c.ask("implement", "done", summary + "\n\nAll tests pass; ruff and mypy are clean.")


def _analysis(c: Conversation, p: Project, spec: TaskSpec) -> None:
    """Look around (1-3 turns), then explain: every request here is ``analyze``."""
    rng = c.b.rng
    for i in range(rng.randint(1, 3)):
        if i == 0 and rng.random() < 0.5:
            c.ask("analyze", "search", _say(rng, "search", spec, "", p.ws), [p.search(rng, spec)])
        else:
            path = spec.files[i % len(spec.files)]
            c.ask("analyze", "read", "Let me read how this works today.", [p.read([path])])
    points = "\n".join(
        f"{n}. `{f}` {rng.choice(VERBS)}s the {rng.choice(NOUNS)} and "
        f"{rng.choice(VERBS)}s its {rng.choice(FIELDS).replace('_', ' ')} in one "
        f"transaction; the risk is {rng.choice(['a race', 'a lost update', 'a slow query'])} "
        f"when two requests reach `{spec.symbol}` at once."
        for n, f in enumerate(spec.files * 2, 1)
    )
    options = "\n".join(
        f"- Option {k}: {rng.choice(VERBS)} the {rng.choice(NOUNS)} "
        f"{rng.choice(['in the database', 'in Redis', 'in the service layer'])}; simple, but "
        f"{rng.choice(['it locks', 'it costs a query', 'it needs a migration'])}."
        for k in "ABC"
    )
    answer = f"## How it works\n\n{points}\n\n## Options\n\n{options}\n\n## Recommendation\n\n"
    c.ask("analyze", "explain", answer + f"Option A, with a test calling `{spec.symbol}`.")


def _read_bank(c: Conversation, p: Project) -> None:
    paths = [f"memory-bank/{n}.md" for n in BANK_FILES]
    say = "I'll start by reading the memory bank, as my custom instructions require."
    if c.b.rng.random() < 0.6:
        c.ask("memory", "bank read", say, [p.read(paths)])
    else:
        c.ask("memory", "bank read 1/2", say, [p.read(paths[:3])])
        c.ask("memory", "bank read 2/2", "Now the rest of the memory bank.", [p.read(paths[3:])])
    c.carrying_bank = True


def _update_bank(c: Conversation, p: Project, spec: TaskSpec) -> None:
    paths = [f"memory-bank/{n}.md" for n in BANK_FILES]
    c.ask("memory", "bank review", "I'll review every memory bank file first.", [p.read(paths)])
    old_focus, p.focus = p.focus, f"Just finished: {spec.text}"
    p.decisions.append(f"{spec.symbol}: {c.b.rng.choice(VERBS)} in the service layer, tested.")
    p.done.append(spec.text.split(".")[0])
    edits = [
        _edit(p.ws, "memory-bank/activeContext.md", old_focus, p.focus),
        _edit(
            p.ws, "memory-bank/progress.md", "## What is left", f"- {p.done[-1]}\n\n## What is left"
        ),
    ]
    c.ask("memory", "bank write", "Updating activeContext.md and progress.md.", edits)
    text = "The memory bank is updated: activeContext.md has the new focus and decisions."
    c.ask("memory", "bank done", text)


_OPENERS = ("", "Follow your custom instructions. ", "follow your custom instructions, then: ")
_GO = ("Looks good, go ahead and implement it.", "ok, do it", "Sounds right. Implement option A.")
_FIX = ("ok, please fix what you found", "good catch, fix it", "fix those and rerun the tests")
_UPDATE = ("update memory bank", "umb", "Please update the memory bank with what we did.")
_TOOLS = {"act": "native_turn1", "plan": "native_plan_turn1"}


def _chat(c: Conversation, spec: TaskSpec) -> None:
    rng = c.b.rng
    c.user(spec.chat)
    answer = " ".join(
        f"In short: it is about how the {rng.choice(NOUNS)} is {rng.choice(VERBS)}ed when "
        "two requests arrive at once, and what the client sees then."
        for _ in range(rng.randint(2, 5))
    )
    c.ask("chat", "chat", answer + f" In our code `{spec.symbol}` relies on it.")


def _title(b: Builder, task: int, text: str) -> None:
    ask = "Generate a concise title for this conversation (at most six words). Reply with the "
    messages = [
        {"role": "system", "content": "You write short, descriptive titles."},
        {"role": "user", "content": f"{ask}title only.\n\n{text}"},
    ]
    b.emit(task, "meta", "title", {"model": MODEL, "messages": messages}, Reply(text[:40]))


def build_trace(seed: int, tasks: int, workspace: str = WS) -> list[TraceItem]:
    """``tasks`` Cline tasks one after another, as one developer works in ``workspace``."""
    rng = random.Random(seed)
    tools = {mode: _fixture(name)["tools"] for mode, name in _TOOLS.items()}
    b = Builder(rng, tools)
    project = Project(seed, workspace)
    order = rng.sample(range(len(TASKS)), len(TASKS))
    analysed = set(rng.sample(range(tasks), tasks // 2))  # half the tasks, where is random
    for n in range(tasks):
        spec = TASKS[order[n % len(order)]]
        analysis = rng.choice(["start", "middle"]) if n in analysed else None
        log = f"\n\n```\n{_log(rng, rng.randint(30, 140))}\n```"
        first = rng.choice(_OPENERS) + (spec.question if analysis == "start" else spec.text)
        first += log if analysis == "start" and first.endswith(":") else ""
        mode = "plan" if analysis == "start" else "act"
        c = Conversation(b, workspace, n, mode, first, tag=f"{seed:x}")
        if rng.random() < 0.5:
            _title(b, n, first[:400])
        _read_bank(c, project)
        if analysis == "start":
            _analysis(c, project, spec)
            c.user(rng.choice(_GO), mode="act")
        _implement(c, project, spec, rng.randint(8, 20), reads=rng.randint(1, 3))
        if analysis == "middle":
            c.user(spec.review + log)
            _analysis(c, project, spec)
            c.user(rng.choice(_FIX))
            _implement(c, project, spec, rng.randint(3, 6), reads=0)
        if rng.random() < 0.5:
            _chat(c, spec)
        c.user(rng.choice(_UPDATE))
        _update_bank(c, project, spec)
    return b.items
