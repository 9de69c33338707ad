"""The labelled routing evaluation set is well-formed and has the promised mix."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from memory_router.wire.openai import ChatCompletionRequest, parse_request
from tests.routing_eval import (
    LABELS,
    EvalCase,
    content_text,
    is_multi_turn,
    load_cases,
    long_cline_request,
    request_tokens,
)

LONG = 20_000


@pytest.fixture(scope="module")
def cases() -> list[EvalCase]:
    return load_cases()


def _by_style(cases: list[EvalCase], style: str) -> list[EvalCase]:
    return [case for case in cases if case.style == style]


def test_size_and_class_balance(cases: list[EvalCase]) -> None:
    assert len(cases) >= 150
    counts = Counter(case.label for case in cases)
    assert set(counts) == set(LABELS)
    assert min(counts.values()) >= 25, counts


def test_ids_unique_and_notes_present(cases: list[EvalCase]) -> None:
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert all(case.note.strip() for case in cases)


def test_both_tool_styles_are_well_represented(cases: list[EvalCase]) -> None:
    counts = Counter(case.style for case in cases)
    assert set(counts) <= {"native", "xml", "plain"}
    assert counts["native"] >= 0.4 * len(cases), counts
    assert counts["xml"] >= 0.4 * len(cases), counts
    assert counts["plain"] >= 5, counts  # a few other clients


def test_multi_turn_share(cases: list[EvalCase]) -> None:
    multi = [case for case in cases if is_multi_turn(case.body)]
    assert len(multi) >= 0.4 * len(cases)
    assert sum(len(case.body["messages"]) >= 10 for case in cases) >= 10


def test_long_requests(cases: list[EvalCase], tokens: dict[str, int]) -> None:
    long = [case for case in cases if tokens[case.id] > LONG]
    assert len(long) >= 15, sorted(tokens.values())[-20:]
    assert {case.style for case in long} >= {"native", "xml"}
    assert len({case.label for case in long}) == len(LABELS)


def test_modes_and_memory_bank_phases_present(cases: list[EvalCase]) -> None:
    cline = [case for case in cases if case.style != "plain"]
    plan = [c for c in cline if "# Plan Mode" in c.body["messages"][0]["content"]]
    xml_plan = [
        c
        for c in cline
        if c.style == "xml" and "PLAN MODE\n" in content_text(c.body["messages"][-1]["content"])
    ]
    assert len(plan) >= 3 and len(xml_plan) >= 3
    joined = [json.dumps(c.body["messages"][1:]) for c in cline if c.label == "memory"]
    assert any("initiali" in text for text in joined)
    assert any("update memory bank" in text.lower() for text in joined)
    assert sum("memory-bank/activeContext.md" in text for text in joined) >= 10


def test_long_cline_request_is_close_to_the_requested_size() -> None:
    for target in (20_000, 40_000):
        body = long_cline_request(target)
        assert abs(request_tokens(body) - target) <= 0.1 * target
        parse_request(ChatCompletionRequest, body)
        assert body["tools"] and body["messages"][-1]["role"] == "tool"
    assert abs(request_tokens(long_cline_request()) - 20_000) <= 2_000
