"""The LLM classifier's prompt and answers, and how the engine weighs its vote."""

from __future__ import annotations

from typing import Any

import pytest

from memory_router.domain import TaskClass
from memory_router.routing.engine import RoutingEngine
from memory_router.routing.llm_vote import VOTE_CHARS, parse_vote, vote_key, vote_messages
from memory_router.routing.signals import read_signals
from memory_router.settings import RoutingSettings
from memory_router.wire.openai import ChatCompletionRequest
from tests.unit.test_classify import CATALOG, native_call, request, user

OPEN = "Something is off with the invoice totals when currencies differ"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("implement", "implement"),
        (" Analyze.", "analyze"),
        ("Analysis", "analyze"),
        ("analyse", "analyze"),
        ("Class: MEMORY", "memory"),
        ("<think>is it memory? no</think>\nchat", "chat"),
        ("<think>memory, or perhaps", None),
        ("meta\nimplement", "meta"),
        ("I cannot tell.", None),
        ("", None),
        ("implementation", "implement"),
        ("**chat**", "chat"),
        ("`meta`", "meta"),
        ("The class is implement", None),
        ("You sort a developer's message into one class: memory: read...", None),
    ],
)
def test_parse_vote_takes_the_class_the_answer_starts_with(
    answer: str, expected: TaskClass | None
) -> None:
    assert parse_vote(answer) == expected


def test_the_model_reads_only_the_users_words_cut_to_a_length() -> None:
    words = "x" * (VOTE_CHARS + 500)
    system, asked = vote_messages(f"  {words}  ")
    assert system["role"] == "system"
    assert "memory:" in system["content"] and "meta:" in system["content"]
    assert asked["role"] == "user"
    assert "x" * VOTE_CHARS in asked["content"]
    assert "x" * (VOTE_CHARS + 1) not in asked["content"]
    assert vote_key(f"  {words}  ") == "x" * VOTE_CHARS


def engine(votes: dict[str, TaskClass | None] | None) -> RoutingEngine:
    routing = RoutingEngine(CATALOG, RoutingSettings(), reserved_output=4096)
    routing.votes = votes
    routing.vote_model = "qwen3:0.6b"
    return routing


def classified(routing: RoutingEngine, req: ChatCompletionRequest) -> tuple[str, str, str]:
    found = routing.classify(read_signals(req))
    return found.task, found.via, " | ".join(found.reasons)


def test_a_vote_decides_what_the_cheap_signals_leave_open() -> None:
    assert classified(engine(None), request(user(OPEN)))[:2] == ("chat", "default")
    task, via, why = classified(engine({OPEN: "analyze"}), request(user(OPEN)))
    assert (task, via) == ("analyze", "llm")
    assert "the LLM classifier qwen3:0.6b reads the user's words as analyze" in why


def test_a_vote_never_overrules_a_rule_or_clear_keywords() -> None:
    hello = "hello!"
    change = "Refactor app/billing.py to use Decimal and fix the failing test"
    routing = engine({hello: "implement", change: "analyze"})
    assert classified(routing, request(user(hello)))[:2] == ("chat", "rules")
    assert classified(routing, request(user(change)))[0] == "implement"


def test_missing_or_empty_votes_are_said_and_change_nothing() -> None:
    task, _, why = classified(engine({}), request(user(OPEN)))
    assert task == "chat"
    assert "no answer from the LLM classifier qwen3:0.6b for these words" in why
    task, _, why = classified(engine({OPEN: None}), request(user(OPEN)))
    assert task == "chat"
    assert "the LLM classifier qwen3:0.6b named no task class for these words" in why


def test_mid_loop_the_vote_stands_for_what_the_user_asked() -> None:
    result: dict[str, Any] = {"role": "tool", "tool_call_id": "c1", "content": "..."}
    read = native_call("read_file", '{"path": "app/fx.py"}')
    statement = "the invoice totals drift when currencies differ"
    loop = request(user(statement), read, result)
    assert classified(engine(None), loop)[:2] == ("implement", "default")
    task, via, why = classified(engine({statement: "analyze"}), loop)
    assert (task, via) == ("analyze", "llm")
    assert "the agent is working on a task that" in why
    # The agent reads code to answer a question the vote calls chat: that is analysis.
    question = "do the totals in app/fx.py drift when currencies differ?"
    loop = request(user(question), read, result)
    assert classified(engine({question: "implement"}), loop)[:2] == ("implement", "llm")
    task, via, why = classified(engine({question: "chat"}), loop)
    assert (task, via) == ("analyze", "llm")
    assert "the agent is looking into the user's question" in why
