"""The pure residency model (placement like Ollama's scheduler) and the token estimator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memory_router.routing.context import ContextEstimator
from memory_router.routing.residency import (
    Budget,
    Profile,
    Resident,
    Snapshot,
    kv_bytes_from_show,
    plan,
)
from memory_router.wire.openai import ChatCompletionRequest
from tests.ollama_emulator import reference_profile
from tests.ollama_emulator.routes import _model_info

REPO = Path(__file__).resolve().parents[2]

GB = 1_000_000_000


def model(name: str, weights: int, kv: int = 100_000) -> Profile:
    return Profile(name, weights, kv, overhead_bytes=0)


def loaded(name: str, size: int, vram: int, **extra: Any) -> Resident:
    return Resident(name, 8192, size, vram, **extra)


def test_first_model_may_spill_into_ram() -> None:
    snapshot = Snapshot(Budget(16 * GB, 64 * GB))
    result = plan(snapshot, model("big", 40 * GB), 8192)
    assert result.loads and result.fits and result.evicts == ()


def test_a_second_model_must_fit_in_free_vram() -> None:
    snapshot = Snapshot(Budget(16 * GB, 64 * GB), (loaded("a", 10 * GB, 10 * GB),))
    assert plan(snapshot, model("small", 4 * GB), 8192).evicts == ()
    assert plan(snapshot, model("large", 8 * GB), 8192).evicts == ("a",)
    # Without the GPU rule (CPU-only hosts), RAM counts too.
    relaxed = Snapshot(snapshot.budget, snapshot.resident, strict_gpu_fit=False)
    assert plan(relaxed, model("large", 8 * GB), 8192).evicts == ()


def test_victims_cheapest_first_and_busy_last() -> None:
    snapshot = Snapshot(
        Budget(24 * GB, 64 * GB),
        (
            loaded("busy", 8 * GB, 8 * GB, in_flight=1),
            loaded("dear", 8 * GB, 8 * GB),
            loaded("cheap", 8 * GB, 8 * GB),
        ),
    )
    costs = {"busy": 0.0, "dear": 10.0, "cheap": 1.0}
    result = plan(snapshot, model("new", 7 * GB), 8192, costs)
    assert result.evicts == ("cheap",)
    result = plan(snapshot, model("new", 15 * GB), 8192, costs)
    assert result.evicts == ("cheap", "dear")
    assert result.waits_for == ()
    result = plan(snapshot, model("new", 23 * GB), 8192, costs)
    assert result.evicts == ("cheap", "dear", "busy")
    assert result.waits_for == ("busy",)


def test_only_the_victims_the_load_needs_gone_are_evicted() -> None:
    """The cheapest victim is tried first; if it freed too little and a dearer one had to go
    as well, the cheap one stays when the dearer one alone makes room."""
    snapshot = Snapshot(
        Budget(24 * GB, 64 * GB),
        (loaded("small", 2 * GB, 2 * GB), loaded("big", 12 * GB, 12 * GB)),
    )
    costs = {"small": 1.0, "big": 5.0}
    assert plan(snapshot, model("new", 13 * GB), 8192, costs).evicts == ("big",)
    # Of two needless victims that cannot both stay, the dearer one stays.
    three = Snapshot(
        Budget(24 * GB, 64 * GB),
        (loaded("a", 4 * GB, 4 * GB), loaded("b", 4 * GB, 4 * GB), loaded("c", 12 * GB, 12 * GB)),
    )
    order = {"a": 1.0, "b": 2.0, "c": 9.0}
    assert plan(three, model("new", 17 * GB), 8192, order).evicts == ("a", "c")
    # When both must go, both go.
    assert plan(snapshot, model("new", 23 * GB), 8192, costs).evicts == ("small", "big")
    # A model in RAM only (num_gpu 0: no VRAM) frees nothing a GPU load beside others needs,
    # but a load that needs the whole host (the first model spills to RAM) clears it too.
    cpu = Snapshot(
        Budget(16 * GB, 64 * GB), (loaded("cpu", GB, 0), loaded("gpu", 15 * GB, 15 * GB))
    )
    assert plan(cpu, model("new", 8 * GB), 8192, {"cpu": 0.0, "gpu": 9.0}).evicts == ("gpu",)
    assert plan(cpu, model("new", 20 * GB), 8192, {"cpu": 0.0, "gpu": 9.0}).evicts == ("cpu", "gpu")


def test_max_loaded_models_counts() -> None:
    three = tuple(loaded(n, GB, GB, idle_s=float(i)) for i, n in enumerate("abc"))
    snapshot = Snapshot(Budget(100 * GB, 100 * GB), three, max_loaded=3)
    assert len(plan(snapshot, model("d", GB), 8192).evicts) == 1


def test_resident_at_another_num_ctx_is_a_reload() -> None:
    snapshot = Snapshot(Budget(16 * GB, 64 * GB), (loaded("a", 5 * GB, 5 * GB),))
    same = plan(snapshot, model("a", 4 * GB), 8192)
    assert not same.loads
    other = plan(snapshot, model("a", 4 * GB), 16384)
    assert other.loads and other.reload and other.evicts == ()


def test_too_big_for_the_host_does_not_fit() -> None:
    snapshot = Snapshot(Budget(16 * GB, 16 * GB, reserve_bytes=2 * GB))
    result = plan(snapshot, model("huge", 31 * GB), 8192)
    assert not result.fits
    assert "needs 31.8 GB" in result.notes[0]


@pytest.mark.parametrize("name", ["qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"])
def test_kv_bytes_from_the_emulators_model_info(name: str) -> None:
    spec = reference_profile().models[name]
    assert kv_bytes_from_show(_model_info(spec)) == spec.kv_bytes_per_token


def test_kv_bytes_without_key_length_uses_embedding_over_heads() -> None:
    info = {
        "general.architecture": "llama",
        "llama.block_count": 32,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
        "llama.embedding_length": 4096,
    }
    assert kv_bytes_from_show(info) == 2 * 32 * 8 * 128 * 2
    assert kv_bytes_from_show({"general.architecture": "x"}) is None
    assert kv_bytes_from_show({}) is None


# --- tokens ------------------------------------------------------------------------------


def conversation(turns: int) -> ChatCompletionRequest:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are Cline. " * 500}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"step {i}: " + "read the file " * 50})
        messages.append({"role": "assistant", "content": f"done {i}"})
    return ChatCompletionRequest.model_validate({"model": "m", "messages": messages})


def test_each_message_is_counted_once() -> None:
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return len(text.split())

    estimator = ContextEstimator(count)
    first = estimator.prompt_tokens(conversation(5))
    assert len(calls) == 11
    second = estimator.prompt_tokens(conversation(6))
    assert len(calls) == 13  # only the two new messages
    assert second > first
    assert estimator.prompt_tokens(conversation(6)) == second
    assert len(calls) == 13


def test_real_counts_are_cl100k() -> None:
    from memory_router.tokens import count_tokens

    request = conversation(1)
    expected = sum(count_tokens(m.text()) + 4 for m in request.messages)
    assert ContextEstimator().prompt_tokens(request) == expected


def test_correction_is_learned_from_prompt_eval_count() -> None:
    estimator = ContextEstimator()
    assert estimator.for_model("m", 1000) == 1000
    for _ in range(30):
        estimator.observe("m", 1000, 1200)
    assert estimator.ratio("m") == pytest.approx(1.2, abs=0.01)
    assert estimator.for_model("m", 1000) == pytest.approx(1200, abs=10)
    # A cached prefix makes Ollama report far fewer: no evidence about the tokenizer.
    estimator.observe("m", 1000, 50)
    assert estimator.ratio("m") == pytest.approx(1.2, abs=0.01)
    assert estimator.ratio("other") == 1.0


def test_raw_completions_are_counted_with_tiktoken_and_the_learned_ratio() -> None:
    from memory_router.routing.engine import RoutingEngine
    from memory_router.routing.policy import View
    from memory_router.settings import load_settings
    from memory_router.tokens import count_tokens

    settings = load_settings(REPO / "config", environ={}, env_file=None)
    engine = RoutingEngine(settings.models.models, settings.config.routing, 4096)
    # Code tokenizes far from 4 characters a token: a character estimate would be off.
    prompt = "def f(x):\n    return {k: v for k, v in x.items() if v}\n" * 40
    tokens = count_tokens(prompt)
    assert abs(tokens - len(prompt) // 4) > tokens // 4
    decision = engine.decide_completion(prompt, 64, View())
    assert decision.signals["prompt_tokens"] == tokens
    assert decision.task == "implement" and decision.needed_tokens == tokens + 64
    for _ in range(40):
        engine.tokens.observe(decision.model, tokens, round(tokens * 1.5))
    again = engine.decide_completion(prompt, 64, View())
    assert again.model == decision.model
    assert again.needed_tokens == pytest.approx(tokens * 1.5 + 64, rel=0.02)
    assert engine.tokens.counted == 1  # the same prompt is tokenized once
