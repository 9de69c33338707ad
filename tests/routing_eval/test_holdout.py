"""The held-out routing evaluation set is well-formed and has the promised mix."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter

import pytest

from tests.routing_eval import (
    LABELS,
    EvalCase,
    content_text,
    is_multi_turn,
    load_cases,
    typed_texts,
)
from tests.routing_eval.holdout import load_holdout
from tests.routing_eval.snapshot import frozen_paths

LONG = 20_000
MEDIUM = 8_000


@pytest.fixture(scope="module")
def cases() -> list[EvalCase]:
    return load_holdout()


def test_size_and_class_balance(cases: list[EvalCase]) -> None:
    assert len(cases) >= 80
    counts = Counter(case.label for case in cases)
    assert set(counts) == set(LABELS)
    assert min(counts.values()) >= 14, counts


def test_ids_unique_prefixed_and_apart_from_the_main_set(cases: list[EvalCase]) -> None:
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert all(i.startswith("ho-") for i in ids)
    assert not set(ids) & {case.id for case in load_cases()}
    assert all(case.note.strip() for case in cases)


def test_tool_styles(cases: list[EvalCase]) -> None:
    counts = Counter(case.style for case in cases)
    assert set(counts) == {"native", "xml", "plain"}
    assert counts["native"] >= 0.35 * len(cases), counts
    assert counts["xml"] >= 0.35 * len(cases), counts
    assert counts["plain"] >= 5, counts


def test_multi_turn_share(cases: list[EvalCase]) -> None:
    multi = [case for case in cases if is_multi_turn(case.body)]
    assert len(multi) >= 0.4 * len(cases)
    assert sum(len(case.body["messages"]) >= 10 for case in cases) >= 8


def test_long_requests_read_repository_files(cases: list[EvalCase], tokens: dict[str, int]) -> None:
    assert sum(tokens[case.id] > MEDIUM for case in cases) >= 10
    long = [case for case in cases if tokens[case.id] > LONG]
    assert len(long) >= 4, sorted(tokens.values())[-8:]
    assert {case.style for case in long} >= {"native", "xml"}
    assert len({case.label for case in long}) >= 4
    for case in long:  # the bulk is real files of this repository, read by tool calls
        body = json.dumps(case.body["messages"], ensure_ascii=False)
        paths = set(re.findall(r"(?:src|tests|bench)/[\w/]+\.py", body))
        real = paths & frozen_paths()
        assert len(real) >= 2, (case.id, sorted(paths))


def test_modes_languages_and_memory_bank_phases(cases: list[EvalCase]) -> None:
    cline = [case for case in cases if case.style != "plain"]
    plan = [c for c in cline if "# Plan Mode" in c.body["messages"][0]["content"]]
    xml_plan = [
        c
        for c in cline
        if c.style == "xml" and "PLAN MODE\n" in content_text(c.body["messages"][-1]["content"])
    ]
    assert len(plan) >= 3 and len(xml_plan) >= 3
    yolo = [
        c
        for c in cline
        if any(t["function"]["name"] == "submit_and_exit" for t in c.body.get("tools", []))
    ]
    assert len(yolo) >= 2

    def non_english(case: EvalCase) -> bool:
        typed = "".join(typed_texts(case)[-1:])
        return any(ord(ch) > 127 and unicodedata.category(ch).startswith("L") for ch in typed)

    assert sum(non_english(case) for case in cases) >= 12
    joined = [json.dumps(c.body["messages"][1:]) for c in cline if c.label == "memory"]
    assert any("initiali" in text for text in joined)
    assert any("update memory bank" in text.lower() for text in joined)
    assert sum("memory-bank/activeContext.md" in text for text in joined) >= 5
