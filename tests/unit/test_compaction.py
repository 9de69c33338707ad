"""Cline 3.x compaction: the summarizer's request, and the conversation that goes on from it.

The shapes are cline 3.0.65's: the summarizer asks with its own system prompt and one user
message ("Summarize this session for continuation..."); the compacted conversation then opens
with a user message "Context summary:\\n\\n<summary>" in place of its older messages, the task
among them, followed by the turns it kept.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from memory_router.routing.engine import RoutingEngine
from memory_router.routing.policy import View
from memory_router.routing.replies import answer_print
from memory_router.routing.signals import read_signals
from memory_router.settings import RoutingSettings, load_settings
from memory_router.wire.openai import ChatCompletionRequest, ChatMessage

REPO = Path(__file__).resolve().parents[2]
NATIVE = json.loads((REPO / "tests/fixtures/cline/native_turn1.json").read_text(encoding="utf-8"))
CATALOG = load_settings(REPO / "config").models.models
CODER, FAST = "qwen2.5-coder:32b", "qwen3:30b-a3b"
TASK = "Follow your custom instructions. Add limit/offset pagination to GET /invoices."
SUMMARY = (
    "Context summary:\n\n## Goal\nAdd limit/offset pagination to GET /invoices.\n\n## State\n"
    "- Done: read the memory bank; paginated the query in app/api/invoices.py\n"
    "- In Progress: the X-Total-Count header\n\n## Next\nRun the tests, then update the "
    "memory bank.\n\n## Files\nRead: memory-bank/projectbrief.md, memory-bank/activeContext.md,"
    " app/api/invoices.py\nEdited: app/api/invoices.py"
)


def body(*messages: dict[str, Any], workspace: str = "/tmp/cline_capture/todo-app") -> Any:
    system = NATIVE["messages"][0]["content"].replace("/tmp/cline_capture/todo-app", workspace)
    return ChatCompletionRequest.model_validate(
        {
            "model": "cline-memory-router",
            "messages": [{"role": "system", "content": system}, *copy.deepcopy(messages)],
            "tools": NATIVE["tools"],
        }
    )


def tool_turn(name: str, arguments: dict[str, Any], result: str, n: int) -> list[dict[str, Any]]:
    call = {"id": f"c{n}", "type": "function", "function": {"name": name, "arguments": ""}}
    call["function"]["arguments"] = json.dumps(arguments)
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"c{n}", "content": result},
    ]


TESTS = tool_turn("run_commands", {"commands": ["uv run pytest -q"]}, "1 failed, 41 passed", 9)
EDIT = tool_turn("editor", {"path": "app/api/invoices.py", "new_text": "x"}, "Edited", 8)


def test_the_summarizer_request_is_housekeeping() -> None:
    summarize = ChatCompletionRequest.model_validate(
        {
            "model": "cline-memory-router",
            "messages": [
                {
                    "role": "system",
                    "content": "Summarize the provided coding session into a concise "
                    "continuation note with detailed next steps.",
                },
                {
                    "role": "user",
                    "content": "Summarize this session for continuation. Be concise and "
                    "factual.\n\n## Goal\nOne sentence: what is being built or fixed.\n\n"
                    f"## Files\nRead: memory-bank/projectbrief.md\nEdited: none\n\n"
                    f"Conversation:\n[user]: {TASK}\n[assistant]: I'll read the memory bank.",
                },
            ],
        }
    )
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    assert engine.decide(summarize, View(), remember=False).task == "meta"


def test_the_summary_is_not_the_users_words() -> None:
    signals = read_signals(
        body({"role": "user", "content": [{"type": "text", "text": SUMMARY}]}, *TESTS)
    )
    assert signals.compacted and not signals.first_turn
    assert signals.human_text == ""  # "read the memory bank" above is the summary's, not theirs
    assert signals.memory.phase == "none"
    assert signals.in_tool_loop
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    request = body({"role": "user", "content": SUMMARY}, *TESTS)
    assert engine.decide(request, View(), remember=False).task == "implement"
    # Without a kept turn it is still no task's first turn (the bank was read before).
    alone = read_signals(body({"role": "user", "content": SUMMARY}))
    assert alone.compacted and not alone.first_turn and alone.memory.phase == "none"
    # The user's own words after the summary count as theirs.
    umb = read_signals(
        body(
            {"role": "user", "content": SUMMARY},
            *TESTS,
            {"role": "user", "content": "update memory bank"},
        )
    )
    assert umb.human_text == "update memory bank" and umb.memory.phase == "update"


def test_a_compacted_conversation_goes_on_as_its_task_not_beside_it() -> None:
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    working = engine.decide(body({"role": "user", "content": TASK}, *EDIT), View())
    assert working.model == CODER and working.session is not None
    engine.replied(working.session, working=True)
    compacted = body({"role": "user", "content": SUMMARY}, *TESTS)
    # Explaining the route (``/v1/route/explain``) finds the link and notes nothing.
    explained = engine.decide(compacted, View(), remember=False)
    assert explained.signals["continues"] == working.session
    assert CODER in engine.contested("/tmp/cline_capture/todo-app", "a second window")
    going_on = engine.decide(compacted, View())
    assert going_on.session != working.session  # the summary replaced the task's message
    assert going_on.signals["continues"] == working.session
    assert going_on.signals["sticky"] == CODER  # the task's model, as it had it
    assert "contested" not in going_on.signals
    # The task's last request, still "working", is not another window beside its own
    # continuation; a second window on the checkout is.
    assert going_on.session is not None
    assert engine.contested("/tmp/cline_capture/todo-app", going_on.session) == {}
    other = engine.contested("/tmp/cline_capture/todo-app", "a second window")
    assert other == {CODER: [other[CODER][0]]}  # the continuation's claim; the old one's gone


def test_a_compacted_conversation_with_nothing_to_continue_links_to_no_later_window() -> None:
    """The router restarted, say: nothing was working when the compacted task arrived. A
    second window starting afterwards is a second window, not the task's earlier self."""
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    going_on = engine.decide(body({"role": "user", "content": SUMMARY}, *TESTS), View())
    assert "continues" not in going_on.signals and going_on.session is not None
    engine.replied(going_on.session, working=True)
    other = engine.decide(body({"role": "user", "content": TASK}, *EDIT), View())
    assert other.session is not None
    engine.replied(other.session, working=True)
    again = engine.decide(body({"role": "user", "content": SUMMARY}, *TESTS, *EDIT), View())
    assert again.session == going_on.session and "continues" not in again.signals
    assert CODER in engine.contested("/tmp/cline_capture/todo-app", going_on.session)


def test_the_users_own_context_summary_is_not_a_compaction() -> None:
    text = "Context summary: we use Postgres 16 and FastAPI. Add a /health endpoint."
    signals = read_signals(body({"role": "user", "content": text}))
    assert not signals.compacted and signals.first_turn and signals.human_text == text


def test_a_compacted_conversation_continues_the_session_whose_answer_it_kept() -> None:
    """Two windows on one checkout. B's task ends with a text answer (it waits); at B's next
    message cline compacts it. The compaction kept B's last answer, so it continues B, not A
    (which is working, and the latest): A still counts as alongside, and B's last request,
    now superseded, claims nothing any more."""
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    ws = "/tmp/cline_capture/todo-app"
    b_task = "Add a CSV export of paid invoices for a date range."
    b = engine.decide(body({"role": "user", "content": b_task}, *EDIT), View())
    assert b.session is not None
    final = "Done: GET /reports/paid.csv streams the rows."
    printed = answer_print(ChatMessage.model_validate({"role": "assistant", "content": final}))
    engine.replied(b.session, False, record=b.signals, answer=printed)
    a = engine.decide(body({"role": "user", "content": TASK}, *EDIT), View())
    assert a.session is not None
    engine.replied(a.session, True, record=a.signals, answer="call_a1")
    kept = [
        {"role": "assistant", "content": final},
        {"role": "user", "content": "update memory bank"},
    ]
    b2 = engine.decide(body({"role": "user", "content": SUMMARY}, *kept), View())
    assert b2.signals["continues"] == b.session
    assert b2.session is not None
    assert CODER in engine.contested(ws, b2.session)  # A, working alongside
    # B's request before the compaction no longer claims anything for itself.
    claims = engine.contested(ws, "a third window")
    assert sum(len(c) for c in claims.values()) == 2  # A's and B2's, not B's as well


def test_an_answer_is_noted_on_its_own_request_not_a_retry_in_flight() -> None:
    """A client drops a request and retries at once: the retry is decided before the dropped
    one's answer is noted. The note must not mark the retry, which is in flight."""
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    request = body({"role": "user", "content": TASK}, *EDIT)
    first = engine.decide(request, View())
    retry = engine.decide(request, View())
    assert first.session is not None and first.session == retry.session
    engine.replied(first.session, False, record=first.signals)  # the dropped one: client gone
    assert CODER in engine.contested("/tmp/cline_capture/todo-app", "a second window")
    engine.replied(retry.session, False, record=retry.signals)
    assert engine.contested("/tmp/cline_capture/todo-app", "a second window") == {}
