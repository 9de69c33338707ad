"""The labelled routing evaluation set is well-formed and has the promised mix."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest

from memory_router.wire.openai import ChatCompletionRequest, parse_request
from tests.routing_eval import (
    LABELS,
    EvalCase,
    is_multi_turn,
    load_cases,
    long_cline_request,
    request_tokens,
)
from tests.routing_eval.build import CASES_DIR, MODEL

LONG = 20_000


@pytest.fixture(scope="module")
def cases() -> list[EvalCase]:
    return load_cases()


@pytest.fixture(scope="module")
def tokens(cases: list[EvalCase]) -> dict[str, int]:
    return {case.id: request_tokens(case.body) for case in cases}


def _by_style(cases: list[EvalCase], style: str) -> list[EvalCase]:
    return [case for case in cases if case.style == style]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text") or "" for part in content or [])


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
        if c.style == "xml" and "PLAN MODE\n" in _text(c.body["messages"][-1]["content"])
    ]
    assert len(plan) >= 3 and len(xml_plan) >= 3
    joined = [json.dumps(c.body["messages"][1:]) for c in cline if c.label == "memory"]
    assert any("initiali" in text for text in joined)
    assert any("update memory bank" in text.lower() for text in joined)
    assert sum("memory-bank/activeContext.md" in text for text in joined) >= 10


def test_every_body_parses(cases: list[EvalCase]) -> None:
    for case in cases:
        body = case.body
        request = parse_request(ChatCompletionRequest, body)
        assert request.model == MODEL == body["model"]
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["messages"][-1]["role"] in ("user", "tool"), case.id


def test_native_bodies(cases: list[EvalCase]) -> None:
    for case in _by_style(cases, "native"):
        body = case.body
        assert body["tools"] and body["tool_choice"] == "auto", case.id
        names = {tool["function"]["name"] for tool in body["tools"]}
        assert "read_files" in names
        system = body["messages"][0]
        assert system["role"] == "system" and "Working Directory: /" in system["content"]
        pending: dict[str, str] = {}
        for message in body["messages"][1:]:
            if message["role"] == "tool":
                assert message["tool_call_id"] in pending, (case.id, message["tool_call_id"])
                del pending[message["tool_call_id"]]
                continue
            assert not pending, (case.id, "a tool call without a result", pending)
            for call in message.get("tool_calls") or []:
                assert call["function"]["name"] in names, case.id
                json.loads(call["function"]["arguments"])
                pending[call["id"]] = call["function"]["name"]
        assert not pending, case.id


def test_xml_bodies(cases: list[EvalCase]) -> None:
    tool_tag = re.compile(
        r"<(read_file|write_to_file|replace_in_file|execute_command|"
        r"search_files|list_files|attempt_completion|plan_mode_respond)>"
    )
    for case in _by_style(cases, "xml"):
        body = case.body
        assert "tools" not in body and "tool_choice" not in body, case.id
        system = body["messages"][0]["content"]
        assert "# Tool Use Formatting" in system and "## read_file" in system, case.id
        assert "Current Working Directory: /" in system
        first = body["messages"][1]["content"]
        assert isinstance(first, list) and first[0]["text"].startswith("<task>\n"), case.id
        for message in body["messages"][1:]:
            assert message["role"] in ("user", "assistant"), case.id
            if message["role"] == "user":
                assert "<environment_details>" in message["content"][-1]["text"], case.id
            else:  # exactly one XML tool call per assistant message
                assert len(tool_tag.findall(message["content"])) == 1, case.id
        for previous, message in zip(body["messages"][1:], body["messages"][2:], strict=False):
            assert previous["role"] != message["role"], case.id


def test_plain_bodies(cases: list[EvalCase]) -> None:
    for case in _by_style(cases, "plain"):
        assert "tools" not in case.body
        assert "Cline" not in json.dumps(case.body["messages"]), case.id


def test_long_cline_request_is_close_to_the_requested_size() -> None:
    for target in (20_000, 40_000):
        body = long_cline_request(target)
        assert abs(request_tokens(body) - target) <= 0.1 * target
        parse_request(ChatCompletionRequest, body)
        assert body["tools"] and body["messages"][-1]["role"] == "tool"
    assert abs(request_tokens(long_cline_request()) - 20_000) <= 2_000


def test_case_files_stay_small() -> None:
    for path in CASES_DIR.glob("*.yaml"):
        assert len(path.read_text(encoding="utf-8").splitlines()) < 600, path.name
