"""Fixtures every evaluation-set module shares; each module's ``cases`` names its set."""

from __future__ import annotations

import pytest

from tests.routing_eval import EvalCase, request_tokens


@pytest.fixture(scope="module")
def tokens(cases: list[EvalCase]) -> dict[str, int]:
    """Each case's request size in cl100k tokens, by case id."""
    return {case.id: request_tokens(case.body) for case in cases}
