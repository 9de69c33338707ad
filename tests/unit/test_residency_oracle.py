"""The residency oracle (bench/residency_oracle.py): the least load time for a given fit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from residency_oracle import Machine, best_fit, least_load_s, score
from residency_replay import TraceItem

# Two models: "fast" is good at memory and pinned at the start, "coder" at implementation and
# slower to load; "coder" alone holds long prompts.
MACHINE = Machine(
    models=["fast", "coder"],
    fit={"fast": {"memory": 0.9, "implement": 0.5}, "coder": {"memory": 0.5, "implement": 0.9}},
    num_ctx={"fast": 8192, "coder": 32768},
    load_s={"fast": 10.0, "coder": 20.0},
    reserved_output=1000,
)


def trace(*turns: tuple[str, int]) -> list[TraceItem]:
    return [
        TraceItem(i, 0, label, "", {}, 0.0, None, tokens)  # type: ignore[arg-type]
        for i, (label, tokens) in enumerate(turns)
    ]


MIXED = trace(
    ("memory", 100), ("memory", 100), ("implement", 100), ("implement", 100),
    ("implement", 100), ("memory", 100),
)  # fmt: skip


def test_best_fit_switches_at_every_change_of_best_model() -> None:
    fit, load_s, loads = best_fit(MACHINE, MIXED, "fast")
    assert (round(fit, 6), load_s, loads) == (0.9, 30.0, 2)  # coder, then fast again


def test_the_oracle_trades_fit_for_load_time_exactly() -> None:
    least = least_load_s(MACHINE, MIXED, "fast")
    # Everything on the resident fast model: 3 x 0.9 + 3 x 0.5 = 4.2, no load.
    assert least[420] == 0.0
    # Any more fit needs the coder once (20 s): the last memory turn stays on it (5.0).
    assert least[421] == least[500] == 20.0
    # All of best fit's 5.4 needs the switch back too.
    assert least[501] == least[540] == 30.0
    assert least[541] == float("inf")


def test_a_prompt_only_one_model_holds_forces_it() -> None:
    long = trace(("memory", 100), ("memory", 20000), ("memory", 100))
    least = least_load_s(MACHINE, long, "fast")
    assert least[0] == 20.0  # the long turn must load the coder, whatever the fit
    assert least[190] == 20.0  # fast, coder (0.5), then stay on it (0.5): 1.9 for one load
    assert least[191] == least[230] == 30.0  # back to fast for the last turn: 2.3
    assert least[231] == float("inf")


def test_score_reports_the_oracle_against_best_fit() -> None:
    result = score(MACHINE, MIXED, start="fast")
    assert result["best_fit"] == {"mean_fit": 0.9, "load_s": 30.0, "loads": 2}
    by_fraction = {row["fit_fraction"]: row for row in result["oracle"]}
    assert by_fraction[0.9]["oracle_load_s"] == 20.0  # 90% of 5.4 = 4.86: the coder once
    assert by_fraction[1.0]["ratio_to_best_fit"] == pytest.approx(1.0)
