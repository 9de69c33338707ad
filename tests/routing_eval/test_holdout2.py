"""The second held-out routing evaluation set is well-formed and has the promised mix."""

from __future__ import annotations

import json
import re
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
from tests.routing_eval.holdout import _read, load_holdout
from tests.routing_eval.holdout2 import HOLDOUT2_DIR, languages, load_holdout2
from tests.routing_eval.snapshot import frozen_paths

LONG = 20_000
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
        real = paths & frozen_paths()
        assert len(real) >= 3, (case.id, sorted(paths))
        assert "memory_router/routing/" not in body, case.id


def test_modes(cases: list[EvalCase]) -> None:
    cline = [case for case in cases if case.style != "plain"]
    native_plan = [c for c in cline if c.style == "native" and "# Plan Mode" in _system(c)]
    xml_plan = [
        c
        for c in cline
        if c.style == "xml"
        and any("PLAN MODE\n" in content_text(m["content"]) for m in c.body["messages"][1:])
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
        typed = "\n".join(typed_texts(case))
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


def test_plain_requests_cover_every_class(cases: list[EvalCase]) -> None:
    assert {c.label for c in cases if c.style == "plain"} == set(LABELS)
