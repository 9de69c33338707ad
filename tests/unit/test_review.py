"""The misroute detectors of ``memory-router review`` on hand-made decision records."""

from __future__ import annotations

import time
from typing import Any

import pytest

from memory_router.misroutes import (
    Suspect,
    corrects,
    counts,
    find_misroutes,
    parse_duration,
    recent,
    words_hash,
)

CODER, FAST, LONG = "qwen2.5-coder:32b", "qwen3:30b-a3b", "llama4:16x17b"


def rec(
    request_id: str,
    task: str = "t1",
    cls: str | None = "implement",
    model: str = CODER,
    *,
    words: str | None = None,
    messages: int | None = None,
    outcome: str = "ok",
    caused_load: bool = False,
    evicted: tuple[str, ...] = (),
    latency_ms: float = 100.0,
    in_tool_loop: bool = False,
    correction: bool = False,
    prompt: str | None = None,
    session: str | None = None,
) -> dict[str, Any]:
    """A record as the router writes it (prompt only when given: log_prompts)."""
    text = request_id if words is None else words
    signals: dict[str, Any] = {
        "class": cls,
        "in_tool_loop": in_tool_loop,
        "messages": messages if messages is not None else 2,
        "words": len(text.split()),
        "words_hash": words_hash(text),
        "correction": correction,
        "opening": task,
    }
    if prompt is not None:
        signals["prompt"] = prompt
    return {
        "ts": "2025-05-01T10:00:00.000Z",
        "request_id": request_id,
        "session": session or task,
        "routed": cls is not None,
        "class": cls,
        "signals": signals,
        "model": model,
        "caused_load": caused_load,
        "evicted": list(evicted),
        "load_s": 2.5 if caused_load else None,
        "latency_ms": latency_ms,
        "outcome": outcome,
    }


def kinds(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for suspect in find_misroutes(records):
        for reason in suspect.reasons:
            found.setdefault(reason.kind, []).append(suspect.request_id or "?")
    return found


def only(records: list[dict[str, Any]]) -> Suspect:
    (suspect,) = find_misroutes(records)
    return suspect


# -- the words, without keeping them -------------------------------------------------------


def test_words_hash_ignores_case_and_spacing_and_is_short() -> None:
    assert words_hash("Fix  the bug\n") == words_hash("fix the bug")
    assert words_hash("fix the bug") != words_hash("fix the bugs")
    assert len(words_hash("x") or "") == 12
    assert words_hash("  ") is None


@pytest.mark.parametrize(
    "text",
    [
        "no, I wanted the tests first",
        "No. Use pytest",
        "nope",
        "That's not what I asked",
        "that’s wrong",
        "I said the config file",
        "I didn't ask for a refactor",
        "Nein, das andere Modul",
        "Das ist nicht richtig",
        "non, pas ça",
        "ce n'est pas ce que je voulais",
        "No es lo que pedí",
        "não, o outro arquivo",
        "不是这个文件",
        "違う、テストを先に",
        "нет, не так",
        "> no, the other one",
    ],
)
def test_corrections_are_recognised_in_several_languages(text: str) -> None:
    assert corrects(text)


@pytest.mark.parametrize(
    "text",
    [
        "no tests should break",
        "Nothing else changed",
        "Non-blocking IO please",
        "note the new flag",
        "I think it works",
        "add a notice to the README",
        "",
    ],
)
def test_ordinary_words_are_no_correction(text: str) -> None:
    assert not corrects(text)


# -- repeats and corrections ------------------------------------------------------------


def test_a_repeat_after_the_answer_is_found_from_the_hashes_alone() -> None:
    records = [
        rec("r1", words="parse the dates", messages=2),
        rec("r2", words="Parse the  dates", messages=4),
    ]
    suspect = only(records)
    assert suspect.request_id == "r1" and suspect.words is None
    assert [r.kind for r in suspect.reasons] == ["repeat"]
    assert "r2" in suspect.reasons[0].detail and suspect.proposed_class is None


def test_a_repeat_classed_otherwise_proposes_the_new_class() -> None:
    records = [
        rec("r1", words="why is it slow", messages=2, cls="chat", model=FAST),
        rec("r2", words="why is it slow", messages=4, cls="analyze", model=LONG),
    ]
    assert only(records).proposed_class == "analyze"


def test_near_identical_words_count_as_a_repeat_when_prompts_are_logged() -> None:
    records = [
        rec("r1", words="a", prompt="write a parser for the ISO dates", messages=2),
        rec("r2", words="b", prompt="write a parser for the ISO dates!!", messages=4),
    ]
    assert kinds(records) == {"repeat": ["r1"]}
    assert only(records).words == "write a parser for the ISO dates"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"outcome": "error:502"}, {}),  # a retry after an error (the error is reported)
        ({}, {"in_tool_loop": True}),  # the agent's loop: the user said nothing new
        ({}, {"messages": 2}),  # the same conversation sent again: a client's retry
    ],
)
def test_the_same_words_again_are_not_always_a_repeat(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    records = [
        rec("r1", words="fix it", messages=2, **first),
        rec("r2", words="fix it", **{"messages": 4, **second}),
    ]
    assert "repeat" not in kinds(records)


def test_words_in_another_task_are_no_repeat() -> None:
    records = [rec("r1", "t1", words="fix it"), rec("r2", "t2", words="fix it", messages=4)]
    assert kinds(records) == {}


def test_a_correction_is_found_from_its_flag_or_from_the_logged_words() -> None:
    flagged = [
        rec("r1", messages=2),
        rec("r2", messages=4, correction=True, cls="analyze", model=LONG),
    ]
    suspect = only(flagged)
    assert suspect.request_id == "r1" and suspect.reasons[0].kind == "correction"
    assert suspect.proposed_class == "analyze"
    logged = [
        rec("r1", messages=2, prompt="add a cache"),
        rec("r2", messages=4, prompt="no, that's not what I asked"),
    ]
    assert kinds(logged) == {"correction": ["r1"]}
    assert '"no, that\'s not what I asked"' in only(logged).reasons[0].detail


def test_the_task_is_followed_across_its_first_answer() -> None:
    # The session key changes once the first answer is in; the opening does not.
    records = [
        rec("r1", "t1", words="fix it", session="s-open"),
        rec("r2", "t1", words="fix it", messages=4, session="s-after"),
    ]
    assert kinds(records) == {"repeat": ["r1"]}


# -- flips ------------------------------------------------------------------------------


def test_a_flip_and_back_proposes_where_the_task_settled() -> None:
    records = [
        rec("r1"),
        rec("r2", cls="chat", model=FAST),
        rec("r3", cls="chat", model=FAST),
        rec("r4"),
        rec("r5", cls="meta", model=FAST),  # housekeeping is no change of mind
        rec("r6"),
    ]
    assert kinds(records) == {"flip": ["r2", "r3"]}
    suspects = find_misroutes(records)
    assert {s.proposed_class for s in suspects} == {"implement"}
    assert suspects[0].reasons[0].detail == "its task went implement → chat → implement"


def test_a_longer_stretch_is_a_change_of_task_not_a_flip() -> None:
    classes = ["implement", "chat", "chat", "chat", "implement"]
    records = [rec(f"r{i}", cls=c) for i, c in enumerate(classes)]
    assert kinds(records) == {}


def test_a_flip_needs_one_task_and_routed_requests() -> None:
    records = [rec("r1", "t1"), rec("r2", "t2", cls="chat"), rec("r3", "t1")]
    assert kinds(records) == {}
    direct = [rec("r1"), rec("r2", cls=None), rec("r3")]
    assert kinds(direct) == {}


# -- errors and loads ---------------------------------------------------------------------


def test_errors_and_a_client_gone_after_a_load() -> None:
    records = [
        rec("r1", "t1", outcome="error:502"),
        rec("r2", "t2", outcome="client_gone", caused_load=True, model=LONG),
        rec("r3", "t3", outcome="client_gone"),  # left without a load: the user's choice
        rec("r4", "t4", model=LONG),
    ]
    assert kinds(records) == {"error": ["r1"], "client_gone_after_load": ["r2"]}
    assert find_misroutes(records)[0].reasons[0].detail == "outcome error:502"


def test_a_load_whose_task_went_elsewhere_next_served_one_request() -> None:
    records = [
        rec("r1", "t1", "analyze", LONG, caused_load=True),
        rec("r2", "t2", "chat", FAST),
        rec("r3", "t1", "implement", CODER),
    ]
    assert kinds(records) == {"load_served_one": ["r1"]}
    assert "its task's next request r3 went to qwen2.5-coder:32b" in (
        only(records).reasons[0].detail
    )


def test_a_load_evicted_before_another_request_served_one() -> None:
    records = [
        rec("r1", "t1", "analyze", LONG, caused_load=True),
        rec("r2", "t2", "implement", CODER, caused_load=True, evicted=(LONG,)),
        rec("r3", "t2", "implement", CODER),
    ]
    assert kinds(records) == {"load_served_one": ["r1"]}
    assert "r2 evicted before it served another request" in only(records).reasons[0].detail


def test_a_load_that_served_more_or_is_last_is_not_suspected() -> None:
    served_other_task = [
        rec("r1", "t1", "analyze", LONG, caused_load=True),
        rec("r2", "t2", "analyze", LONG),
        rec("r3", "t1", "implement", CODER),
    ]
    assert kinds(served_other_task) == {}
    last = [rec("r1", "t1", "analyze", LONG, caused_load=True), rec("r2", "t2", "chat", FAST)]
    assert kinds(last) == {}


# -- latency ------------------------------------------------------------------------------


def test_latency_above_the_p95_of_the_log() -> None:
    records = [rec(f"r{i}", f"t{i}", latency_ms=1500.0) for i in range(19)]
    records.append(rec("slow", "tx", latency_ms=9000.0, caused_load=True))
    assert kinds(records) == {"slow": ["slow"]}
    detail = only(records).reasons[0].detail
    assert detail.startswith("9.0 s, above the log's p95 (1.5 s)")
    assert detail.endswith(f"it loaded {CODER} (2.5 s)")


def test_latency_over_three_times_its_models_median() -> None:
    records = [rec(f"f{i}", f"t{i}", "chat", FAST, latency_ms=30_000.0) for i in range(30)]
    records += [rec(f"c{i}", f"u{i}", latency_ms=1000.0) for i in range(3)]
    records.append(rec("slow", "v", latency_ms=4000.0))
    assert kinds(records) == {"slow": ["slow"]}
    assert "over 3x the median for qwen2.5-coder:32b (1.0 s)" in only(records).reasons[0].detail


def test_milliseconds_are_never_slow_and_few_records_have_no_outlier() -> None:
    quick = [rec(f"r{i}", f"t{i}", latency_ms=5.0) for i in range(30)] + [
        rec("x", "tx", latency_ms=900.0)
    ]
    assert kinds(quick) == {}
    few = [rec("a", "t1", latency_ms=2000.0), rec("b", "t2", latency_ms=60_000.0)]
    assert kinds(few) == {}  # the p95 of two is the larger; no model has three


# -- the report ---------------------------------------------------------------------------


def test_one_suspect_a_request_with_every_reason_and_counts_by_reason() -> None:
    records = [
        rec("r1", messages=2, words="go", outcome="ok"),
        rec("r2", messages=4, words="go", outcome="error:500"),
    ]
    suspects = find_misroutes(records)
    assert [(s.request_id, [r.kind for r in s.reasons]) for s in suspects] == [
        ("r1", ["repeat"]),
        ("r2", ["error"]),
    ]
    assert counts(suspects) == {
        "repeat": 1,
        "correction": 0,
        "flip": 0,
        "error": 1,
        "client_gone_after_load": 0,
        "load_served_one": 0,
        "slow": 0,
    }


def test_a_candidate_line_for_the_user_to_confirm() -> None:
    records = [rec("r1", prompt="tidy the helpers"), rec("r2", cls="chat"), rec("r3")]
    assert find_misroutes(records)[0].candidate() == {
        "request_id": "r2",
        "session": "t1",
        "words": None,
        "class_given": "chat",
        "proposed_class": "implement",
        "reason": "flip: its task went implement → chat → implement",
        "confirmed": False,
    }


def test_durations_and_recent_records() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("7d") == 7 * 86_400
    assert parse_duration("1w") == 604_800
    for bad in ("", "soon", "3x", "5"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 120))
    old = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 7200))
    records = [{**rec("old"), "ts": old}, {**rec("new"), "ts": stamp}, {"request_id": "no ts"}]
    assert [r["request_id"] for r in recent(records, 3600, now)] == ["new"]
