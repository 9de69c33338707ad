"""The second held-out routing evaluation set is well-formed and has the promised mix."""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import pairwise
from typing import Any

import pytest

from memory_router.wire.openai import ChatCompletionRequest, parse_request
from tests.routing_eval import LABELS, EvalCase, is_multi_turn, load_cases, request_tokens
from tests.routing_eval.build import MODEL, REPO
from tests.routing_eval.holdout import _read, load_holdout
from tests.routing_eval.holdout2 import HOLDOUT2_DIR, languages, load_holdout2

LONG = 20_000
XML_TOOL = re.compile(
    r"<(read_file|write_to_file|replace_in_file|execute_command|"
    r"search_files|list_files|attempt_completion|plan_mode_respond)>"
)
# Scripts that only appear in the typed text of the cases written in these languages.
SCRIPTS = {
    "ja": re.compile(r"[\u3040-\u30ff]"),
    "zh": re.compile(r"[\u4e00-\u9fff]"),
    "ko": re.compile(r"[\uac00-\ud7af]"),
    "ru": re.compile(r"[\u0400-\u04ff]"),
}
ANY_SCRIPT = re.compile("|".join(p.pattern for p in SCRIPTS.values()))


@pytest.fixture(scope="module")
def cases() -> list[EvalCase]:
    return load_holdout2()


@pytest.fixture(scope="module")
def tokens(cases: list[EvalCase]) -> dict[str, int]:
    return {case.id: request_tokens(case.body) for case in cases}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text") or "" for part in content or [])


def _user_text(case: EvalCase) -> str:
    """Every user message, without Cline's environment details."""
    users = [m for m in case.body["messages"] if m["role"] == "user"]
    return "\n".join(_text(m["content"]).split("<environment_details>")[0] for m in users)


def _system(case: EvalCase) -> str:
    first = case.body["messages"][0]
    return str(first["content"]) if first["role"] == "system" else ""


def test_size_and_class_balance(cases: list[EvalCase]) -> None:
    assert len(cases) >= 80
    counts = Counter(case.label for case in cases)
    assert set(counts) == set(LABELS)
    assert min(counts.values()) >= 14, counts


def test_ids_unique_prefixed_and_apart_from_the_other_sets(cases: list[EvalCase]) -> None:
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert all(i.startswith("h2-") for i in ids)
    others = {case.id for case in load_cases()} | {case.id for case in load_holdout()}
    assert not set(ids) & others
    assert all(case.note.strip() for case in cases)
    workspaces, _ = _read(HOLDOUT2_DIR)
    assert workspaces and all(name.startswith("h2_") for name in workspaces)


def test_tool_styles(cases: list[EvalCase]) -> None:
    counts = Counter(case.style for case in cases)
    assert set(counts) == {"native", "xml", "plain"}
    assert counts["native"] >= 0.35 * len(cases), counts
    assert counts["xml"] >= 0.35 * len(cases), counts
    assert counts["plain"] >= 8, counts
    for label in LABELS:  # every class in both Cline tool styles
        assert {c.style for c in cases if c.label == label} >= {"native", "xml"}, label


def test_multi_turn_share(cases: list[EvalCase]) -> None:
    multi = [case for case in cases if is_multi_turn(case.body)]
    assert len(multi) >= 0.4 * len(cases)
    assert sum(len(case.body["messages"]) >= 10 for case in cases) >= 8
    single = [case for case in cases if not is_multi_turn(case.body)]
    assert len({case.label for case in single}) == len(LABELS)


def test_long_requests_read_repository_files(cases: list[EvalCase], tokens: dict[str, int]) -> None:
    long = [case for case in cases if tokens[case.id] > LONG]
    assert len(long) >= 4, sorted(tokens.values())[-8:]
    assert {case.style for case in long} >= {"native", "xml"}
    assert len({case.label for case in long}) >= 4
    for case in long:  # the bulk is real files of this repository, read by tool calls
        body = json.dumps(case.body["messages"], ensure_ascii=False)
        paths = set(re.findall(r"(?:src|tests|bench)/[\w/]+\.py", body))
        real = [p for p in paths if (REPO / p).is_file()]
        assert len(real) >= 3, (case.id, sorted(paths))
        assert "memory_router/routing/" not in body, case.id


def test_modes(cases: list[EvalCase]) -> None:
    cline = [case for case in cases if case.style != "plain"]
    native_plan = [c for c in cline if c.style == "native" and "# Plan Mode" in _system(c)]
    xml_plan = [
        c
        for c in cline
        if c.style == "xml"
        and any("PLAN MODE\n" in _text(m["content"]) for m in c.body["messages"][1:])
    ]
    assert len(native_plan) >= 3 and len(xml_plan) >= 3
    assert len({c.label for c in native_plan + xml_plan}) >= 4
    yolo = [
        c
        for c in cline
        if any(t["function"]["name"] == "submit_and_exit" for t in c.body.get("tools", []))
    ]
    assert len(yolo) >= 2
    banked = [c for c in cline if "memory-bank" in _system(c)]
    assert {c.label for c in banked} == set(LABELS)  # a bank in the prompt decides nothing


def test_languages(cases: list[EvalCase]) -> None:
    langs = languages()
    ids = {case.id for case in cases}
    assert set(langs) <= ids
    assert 8 <= len(langs) <= 0.15 * len(cases), len(langs)
    assert len(set(langs.values())) >= 6
    for case in cases:
        typed = _user_text(case)
        lang = langs.get(case.id)
        if lang in SCRIPTS:
            assert SCRIPTS[lang].search(typed), case.id
        elif lang is None:
            assert not ANY_SCRIPT.search(typed), case.id


def test_memory_bank_phases(cases: list[EvalCase]) -> None:
    memory = [json.dumps(c.body["messages"][1:]) for c in cases if c.label == "memory"]
    assert sum("initiali" in text for text in memory) >= 2
    assert sum(bool(re.search(r"update (the )?memory bank", text, re.I)) for text in memory) >= 4
    assert sum("memory-bank/activeContext.md" in text for text in memory) >= 6
    others = [json.dumps(c.body["messages"][1:]) for c in cases if c.label != "memory"]
    assert sum("memory-bank/progress.md" in text for text in others) >= 5


def test_every_body_parses(cases: list[EvalCase]) -> None:
    for case in cases:
        body = case.body
        request = parse_request(ChatCompletionRequest, body)
        assert request.model == MODEL == body["model"]
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["messages"][-1]["role"] in ("user", "tool"), case.id


def test_native_bodies(cases: list[EvalCase]) -> None:
    for case in (c for c in cases if c.style == "native"):
        body = case.body
        assert body["tools"] and body["tool_choice"] == "auto", case.id
        names = {tool["function"]["name"] for tool in body["tools"]}
        assert "Working Directory: /" in _system(case), case.id
        pending: set[str] = set()
        for message in body["messages"][1:]:
            if message["role"] == "tool":
                assert message["tool_call_id"] in pending, case.id
                pending.discard(message["tool_call_id"])
                continue
            assert not pending, (case.id, "a tool call without a result")
            for call in message.get("tool_calls") or []:
                assert call["function"]["name"] in names, (case.id, call["function"]["name"])
                json.loads(call["function"]["arguments"])
                pending.add(call["id"])
        assert not pending, case.id


def test_xml_bodies(cases: list[EvalCase]) -> None:
    for case in (c for c in cases if c.style == "xml"):
        body = case.body
        assert "tools" not in body and "tool_choice" not in body, case.id
        system = _system(case)
        assert "# Tool Use Formatting" in system and "Current Working Directory: /" in system
        first = body["messages"][1]["content"]
        assert isinstance(first, list) and first[0]["text"].startswith("<task>\n"), case.id
        for message in body["messages"][1:]:
            assert message["role"] in ("user", "assistant"), case.id
            if message["role"] == "user":
                assert "<environment_details>" in message["content"][-1]["text"], case.id
            else:
                assert len(XML_TOOL.findall(message["content"])) == 1, case.id
        roles = [m["role"] for m in body["messages"][1:]]
        assert all(a != b for a, b in pairwise(roles)), case.id


def test_plain_bodies(cases: list[EvalCase]) -> None:
    plain = [c for c in cases if c.style == "plain"]
    assert {c.label for c in plain} == set(LABELS)
    for case in plain:
        assert "tools" not in case.body
        assert "Cline" not in json.dumps(case.body["messages"]), case.id


def test_files_stay_small() -> None:
    files = list(HOLDOUT2_DIR.glob("*.yaml"))
    assert files
    for path in files:
        assert len(path.read_text(encoding="utf-8").splitlines()) < 600, path.name
