"""The classifier's accuracy on the labelled sets, cheap signals only (no embedder).

A regression guard: the figures with the example vote, per class, and the decision latency
come from ``bench/routing.py`` (docs/benchmarks.md). The second held-out set is kept blind:
on failure only its accuracy is reported, never which cases missed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from memory_router.routing.engine import RoutingEngine
from memory_router.routing.policy import View
from memory_router.settings import load_settings
from memory_router.wire.openai import ChatCompletionRequest, parse_request
from tests.routing_eval import EvalCase, load_cases
from tests.routing_eval.holdout import load_holdout
from tests.routing_eval.holdout2 import load_holdout2

SETTINGS = load_settings(Path(__file__).resolve().parents[2] / "config", environ={}, env_file=None)


def accuracy(cases: list[EvalCase]) -> tuple[float, list[str]]:
    wrong: list[str] = []
    for case in cases:
        engine = RoutingEngine(SETTINGS.models.models, SETTINGS.config.routing, 4096)
        decision = engine.decide(parse_request(ChatCompletionRequest, case.body), View())
        if decision.signals["class"] != case.label:
            wrong.append(f"{case.id}: {case.label} -> {decision.signals['class']}")
    return 1 - len(wrong) / len(cases), wrong


@pytest.mark.parametrize(
    ("loader", "bound"),
    [(load_cases, 0.95), (load_holdout, 0.95)],
    ids=["development", "first-held-out"],
)
def test_accuracy_on_the_sets_the_rules_were_fitted_to(loader: object, bound: float) -> None:
    score, wrong = accuracy(loader())  # type: ignore[operator]
    assert score >= bound, "\n".join(wrong)


def test_accuracy_on_the_blind_set() -> None:
    score, wrong = accuracy(load_holdout2())
    # Class pairs only: the cases themselves stay unprinted.
    pairs = Counter(line.split(": ", 1)[1] for line in wrong)
    assert score >= 0.90, f"accuracy {score:.1%} on the blind set; misses by class: {pairs}"
