"""Memory-bank signals on real Cline requests and on variations built from them.

Fixtures (tests/fixtures/cline): ``native_*`` from cline@3.0.65 (native tools), ``xml_*`` from
cline@2.18.0 (XML tools in the text, user content as parts), ``native_plan_turn1`` from
cline@3.0.65 in Plan mode (task "Read notes.txt and tell me what it says" in a workspace
without a memory bank; 24 tools, no ``editor``, a ``# Plan Mode`` section in the prompt).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from memory_router.routing import bank_calls, memory_signals
from memory_router.routing.memory_signals import (
    MemorySignals,
    read_memory_signals,
    workspace_from_request,
)
from memory_router.wire.openai import ChatCompletionRequest
from tests.unit.cline_requests import (
    BANK,
    BRIEF,
    LAPSED,
    NATIVE_READ,
    TASK,
    WS,
    XML_READ,
    load,
    native_call,
    native_edit,
    native_task,
    ok,
    set_xml_mode,
    signals,
    xml_call,
    xml_task,
)

# --- the real requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "phase", "files_read", "reasons", "mode", "workspace"),
    [
        ("native_turn1", "read", (), (TASK,), "act", WS),
        ("native_turn2", "read", BANK, (TASK, NATIVE_READ), "act", WS),
        ("native_yolo_turn1", "read", (), (TASK,), "act", WS),
        ("native_yolo_turn2", "read", BANK, (TASK, NATIVE_READ), "act", WS),
        ("xml_turn1", "read", (), (TASK,), "act", WS),
        ("xml_turn2", "read", (BRIEF,), (TASK, XML_READ), "act", WS),
        ("native_plan_turn1", "none", (), (), "plan", "/tmp/cline_capture/ws1"),
    ],
)
def test_real_cline_requests(
    name: str,
    phase: str,
    files_read: tuple[str, ...],
    reasons: tuple[str, ...],
    mode: str,
    workspace: str,
) -> None:
    assert signals(load(name)) == MemorySignals(
        phase=phase,  # type: ignore[arg-type]
        reasons=reasons,
        files_read=files_read,
        files_written=(),
        pending_read=(),
        mode=mode,  # type: ignore[arg-type]
        workspace=workspace,
    )


@pytest.mark.parametrize(
    ("name", "workspace"),
    [
        ("native_turn1", WS),
        ("native_yolo_turn2", WS),
        ("xml_turn2", WS),
        ("native_plan_turn1", "/tmp/cline_capture/ws1"),
    ],
)
def test_workspace_from_either_prompt(name: str, workspace: str) -> None:
    request = ChatCompletionRequest.model_validate(load(name))
    assert workspace_from_request(request) == workspace


def test_workspace_from_environment_details_when_the_prompt_has_none() -> None:
    body = load("xml_turn1")
    body["messages"][0]["content"] = "You are a helpful assistant."
    assert signals(body).workspace == WS  # "# Current Working Directory (/path) Files"
    body = load("native_turn1")
    body["messages"][0]["content"] = "You are a helpful assistant."
    assert (signals(body).workspace, signals(body).mode) == (None, None)


def test_the_rules_in_the_system_prompt_are_not_the_users_words() -> None:
    body = native_task("what does todo.py do?")
    assert 'When the user says "update memory bank"' in body["messages"][0]["content"]
    assert (signals(body).phase, signals(body).reasons) == ("none", ())


# --- the user's phrases, both styles --------------------------------------------------------

PHRASES = [
    ("initialize memory bank", "initialize", "initialize memory bank"),
    ("Init the memory bank for this repo", "initialize", "Init the memory bank"),
    ("please create the memory-bank", "initialize", "create the memory-bank"),
    ("Set up a new memory bank for this project", "initialize", "Set up a new memory bank"),
    ("update memory bank", "update", "update memory bank"),
    ("Please update the memory bank.", "update", "update the memory bank"),
    ("umb", "update", "umb"),
    ("UMB", "update", "UMB"),
    ("do a memory bank update please", "update", "memory bank update"),
    ("follow your custom instructions", "read", "follow your custom instructions"),
    ("Read the memory bank, then fix the failing test", "read", "Read the memory bank"),
    (
        "initialize memory bank and then follow your custom instructions",
        "initialize",
        "initialize memory bank",
    ),
    (
        "follow your custom instructions, then update the memory bank",
        "update",
        "update the memory bank",
    ),
]
NOT_PHRASES = [
    "Add an in-memory cache so results stay in memory between calls",
    "Fix the memory leak in the bank account service",
    "don't update the memory bank, just fix the bug",
    "update memory bank switching in the linker script for the STM32",
    "follow the instructions in CONTRIBUTING.md",
    "umbrella: rename the module",
    "what does todo.py do?",
]


@pytest.mark.parametrize(("text", "phase", "said"), PHRASES)
def test_phrase_native(text: str, phase: str, said: str) -> None:
    found = signals(native_task(text))
    assert (found.phase, found.reasons) == (phase, (f'user said "{said}"',))


@pytest.mark.parametrize(("text", "phase", "said"), PHRASES)
def test_phrase_xml(text: str, phase: str, said: str) -> None:
    found = signals(xml_task(text))
    assert (found.phase, found.reasons) == (phase, (f'user said "{said}"',))


@pytest.mark.parametrize("text", NOT_PHRASES)
@pytest.mark.parametrize("style", ["native", "xml"])
def test_not_a_memory_bank_request(style: str, text: str) -> None:
    found = signals(native_task(text) if style == "native" else xml_task(text))
    assert (found.phase, found.reasons, found.files_read) == ("none", (), ())


def test_environment_details_are_not_the_users_words() -> None:
    body = xml_task("what does todo.py do?")
    details = body["messages"][1]["content"][2]
    details["text"] = details["text"].replace("(No visible files)", "update memory bank.txt")
    assert "memory-bank/progress.md" in details["text"]  # the file listing names the bank
    assert signals(body).phase == "none"


def test_the_user_input_tag_holds_the_words_and_the_mode() -> None:
    body = native_task('<user_input mode="plan">update the memory bank</user_input>')
    found = signals(body)
    assert (found.phase, found.mode) == ("update", "plan")
    body = native_task('<user_input mode="yolo">what does todo.py do?</user_input>')
    assert (signals(body).phase, signals(body).mode) == ("none", "act")


def test_a_system_notice_is_not_the_users_words() -> None:
    body = load("native_yolo_turn1")
    body["messages"][1]["content"] = "what does todo.py do?"
    assert body["messages"][2]["content"].startswith("[SYSTEM] ")
    assert signals(body).phase == "none"


def test_feedback_inside_an_xml_tool_result_is_the_users_words() -> None:
    body = xml_call(
        load("xml_turn2"),
        "<write_to_file>\n<path>todo.py</path>\n<content>print()</content>\n</write_to_file>",
        "[write_to_file for 'todo.py'] Result:\nThe user denied this operation. The user "
        "provided the following feedback:\n<feedback>\nupdate the memory bank first\n</feedback>",
    )
    found = signals(body)
    assert (found.phase, found.reasons) == ("update", ('user said "update the memory bank"',))
    assert found.files_written == ()


def test_a_phrase_at_the_end_of_a_long_paste_counts() -> None:
    log = "\n".join(f"line {i}: all good" for i in range(2000))
    assert signals(native_task(log + "\nnow update memory bank")).phase == "update"
    assert signals(native_task(log[: len(log) // 2] + " update memory bank " + log)).phase == (
        "none"
    )  # the middle of a paste is not read


# --- the phase over a task ------------------------------------------------------------------


def test_read_request_lapses_after_the_bank_is_read_and_the_agent_moves_on_native() -> None:
    body = native_call(
        load("native_turn2"),
        "read_files",
        {"files": [{"path": f"{WS}/todo.py"}]},
        ok(f"{WS}/todo.py"),
    )
    found = signals(body)  # the bank was read, then a source file: the agent has moved on
    assert (found.phase, found.reasons) == ("none", (LAPSED,))
    native_edit(body, f"{WS}/todo.py", "return 1", old_text="pass")
    found = signals(body)
    assert (found.phase, found.reasons, found.files_read) == ("none", (LAPSED,), BANK)


def test_read_request_lapses_after_the_bank_is_read_and_the_agent_moves_on_xml() -> None:
    body = xml_call(
        load("xml_turn2"),
        "<read_file>\n<path>todo.py</path>\n</read_file>",
        "[read_file for 'todo.py'] Result:\n1 | print('todo')",
    )
    assert signals(body).phase == "none"  # a source file after the bank: moved on
    xml_call(
        body,
        "<replace_in_file>\n<path>todo.py</path>\n<diff>x</diff>\n</replace_in_file>",
        "[replace_in_file for 'todo.py'] Result:\nThe content was successfully saved to todo.py.",
    )
    found = signals(body)
    assert (found.phase, found.reasons, found.files_read) == ("none", (LAPSED,), (BRIEF,))


def test_read_request_holds_until_the_bank_is_read() -> None:
    body = native_call(
        load("native_turn1"), "run_commands", {"commands": ["ls"]}, ok("ls")
    )  # a look around first
    assert (signals(body).phase, signals(body).reasons) == ("read", (TASK,))


def test_update_request_holds_through_other_work() -> None:
    body = native_task("update memory bank", "native_turn2")
    native_call(body, "read_files", {"files": [{"path": f"{WS}/todo.py"}]}, ok(f"{WS}/todo.py"))
    native_call(body, "run_commands", {"commands": ["git log -5"]}, ok("git log -5"))
    native_call(body, "search_codebase", {"queries": ["def done"]}, ok("def done"))
    found = signals(body)
    assert (found.phase, found.reasons) == ("update", ('user said "update memory bank"',))


def test_a_new_user_message_starts_over() -> None:
    body = load("native_turn2")
    body["messages"].append({"role": "assistant", "content": "It is a tiny todo CLI."})
    body["messages"].append({"role": "user", "content": "thanks, now add a --version flag"})
    found = signals(body)
    assert (found.phase, found.reasons, found.files_read) == ("none", (), BANK)
    body["messages"][-1]["content"] = "great, now update the memory bank"
    assert signals(body).phase == "update"


# --- Plan / Act -----------------------------------------------------------------------------


def test_xml_mode_follows_the_latest_user_message() -> None:
    body = load("xml_turn2")
    set_xml_mode(body["messages"][3], "PLAN MODE")
    assert signals(body).mode == "plan"
    body = load("xml_turn2")
    set_xml_mode(body["messages"][1], "PLAN MODE")  # switched to Act since
    assert signals(body).mode == "act"


def test_native_plan_section_only_in_plan_mode() -> None:
    plan = load("native_plan_turn1")["messages"][0]["content"]
    act = load("native_turn1")["messages"][0]["content"]
    assert "# Plan / Act Modes" in plan and "# Plan / Act Modes" in act
    assert "# Plan Mode\n" in plan and "# Plan Mode\n" not in act
    body = load("native_turn2")
    body["messages"][0]["content"] = plan
    assert (signals(body).mode, signals(body).workspace) == ("plan", "/tmp/cline_capture/ws1")


# --- shape of the module --------------------------------------------------------------------


def test_signals_are_frozen_plain_data() -> None:
    found = signals(load("native_turn2"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.phase = "none"  # type: ignore[misc]
    assert all(isinstance(getattr(found, f.name), tuple) for f in dataclasses.fields(found)[1:5])


def _imports(module: Any) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    return {
        alias.name.split(".")[0] if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }


def test_module_is_pure() -> None:
    # The module and the one it reads tool calls with: together they import what the module
    # alone did before the tool calls moved out.
    assert _imports(memory_signals) | _imports(bank_calls) == {
        "__future__",
        "bank_calls",
        "json",
        "posixpath",
        "re",
        "collections.abc",
        "dataclasses",
        "functools",  # memos of pure functions
        "threading",  # the memo's lock
        "typing",
        "wire.openai",
    }
    assert _imports(bank_calls) == {"__future__", "json", "posixpath", "re", "typing"}


def big_request(style: str, turns: int = 12) -> dict[str, Any]:
    """About 20k tokens: the real prompt plus ``turns`` file reads of ~3k characters each."""
    code = "\n".join(
        f"{i} | def handler_{i}(item):  return store.save(item, {i})" for i in range(60)
    )
    body = load("xml_turn2" if style == "xml" else "native_turn2")
    for turn in range(turns):
        if style == "xml":
            xml_call(
                body,
                f"<read_file>\n<path>src/mod{turn}.py</path>\n</read_file>",
                f"[read_file for 'src/mod{turn}.py'] Result:\n{code}",
            )
        else:
            path = f"{WS}/src/mod{turn}.py"
            result = [{"query": path, "result": code, "success": True}]
            native_call(body, "read_files", {"files": [{"path": path}]}, result)
    return body


@pytest.mark.parametrize("style", ["native", "xml"])
def test_a_big_request_gives_stable_answers(style: str) -> None:
    # Timing lives in the benchmarks; this checks a long conversation end to end, repeatedly.
    body = big_request(style)
    request = ChatCompletionRequest.model_validate(body)
    assert sum(len(m.text()) for m in request.messages) > 40_000
    answers = {read_memory_signals(request) for _ in range(20)}
    assert len(answers) == 1
    (found,) = answers
    assert (found.phase, found.reasons) == ("none", (LAPSED,))
    assert found.files_read == (BANK if style == "native" else (BRIEF,))


def test_the_words_memo_is_exact_and_bounded() -> None:
    memo = memory_signals._WordsMemo(4)
    # Same length, different words; a tool result; a plain message.
    texts = [f"<task>\nfix bug {i}\n</task>" for i in range(10)]
    texts += ["[read_file for 'a.py'] Result:\nprint(1)", "update memory bank"]
    for text in [*texts, *reversed(texts)]:
        assert memo(text) == memory_signals._human_words(text)
    assert len(memo._words) == 4
    assert memo(texts[3]) == "fix bug 3"
    assert memo(texts[10]) == ""


def test_a_bank_kept_in_the_older_cline_docs_folder_counts() -> None:
    # Older Cline memory banks live in cline_docs/: reading and writing there is bank work.
    body = native_task("fix the typo in the footer")
    path = f"{WS}/cline_docs/activeContext.md"
    native_call(body, "read_files", {"files": [{"path": path}]}, ok(path))
    found = signals(body)
    assert found.phase == "read" and found.files_read == ("cline_docs/activeContext.md",)
    native_edit(body, f"{WS}/cline_docs/progress.md", "- footer typo fixed")
    assert signals(body).phase == "update"
    # A folder that merely starts alike is not the bank.
    other = native_task("fix the typo in the footer")
    lookalike = f"{WS}/cline_docs_old/notes.md"
    native_call(other, "read_files", {"files": [{"path": lookalike}]}, ok(lookalike))
    assert signals(other).phase == "none"
