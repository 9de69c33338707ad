"""The routing API: explain a decision without running it, context limits, escalation."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from memory_router.decision_log import read_records
from tests.conftest import REPO, RouterFactory
from tests.ollama_emulator import OllamaEmulator

FIXTURES = Path(__file__).parent / "fixtures" / "cline"
FAST, CODER, LONG = "qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"


def cline_request(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return body


def test_explain_returns_class_signals_candidates_and_choice(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    body = cline_request("native_turn1.json")  # "follow your custom instructions ..."
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        reply = client.post("/v1/route/explain", json=body)
    assert reply.status_code == 200
    decision = reply.json()
    assert decision["task"] == "memory"
    assert decision["model"] == FAST
    assert decision["num_ctx"] == 32768
    assert decision["routed"] is True
    assert decision["reasons"][0] == "memory bank read"
    signals = decision["signals"]
    assert signals["tool_style"] == "native"
    assert signals["memory_bank"] == "read"
    assert signals["class_via"] == "rules"
    assert signals["prompt_tokens"] > 4000  # Cline's system prompt and 25 tools
    candidates = {c["model"]: c for c in decision["candidates"]}
    assert set(candidates) == {FAST, CODER, LONG}
    assert candidates[FAST]["task_fit"] == 0.95
    assert candidates[FAST]["score"] <= candidates[FAST]["task_fit"]
    # Nothing is loaded on the emulator: every candidate would load, none evicts.
    assert all(c["loads"] and c["evicts"] == [] for c in candidates.values())
    assert candidates[FAST]["score"] == max(c["score"] for c in candidates.values())
    # Explaining ran no model.
    assert [r.path for r in emulator.requests if r.path in ("/api/chat", "/api/generate")] == []


def test_explain_sees_what_is_loaded(emulator: OllamaEmulator, make_router: RouterFactory) -> None:
    router = make_router(emulator.base_url)
    body = {
        "model": "cline-memory-router",
        "messages": [{"role": "user", "content": "Implement retries in the client"}],
    }
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        ran = client.post("/v1/chat/completions", json={**body, "stream": False})
        assert ran.headers["x-router-model"] == CODER
        emulator.wait_until(lambda: any(m["name"] == CODER for m in emulator.loaded()))
        explained = client.post("/v1/route/explain", json=body).json()
    assert explained["model"] == CODER
    assert explained["loads"] is False
    assert any("resident" in reason for reason in explained["reasons"])


def test_a_request_no_local_context_holds_is_400(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    body = {
        "model": "cline-memory-router",
        "messages": [{"role": "user", "content": "word " * 140_000}],
    }
    with httpx.Client(base_url=router.base_url, timeout=60) as client:
        reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "messages"
    assert "the largest local context is 131072 (llama4:16x17b)" in error["message"]
    assert [r for r in emulator.requests if r.path == "/api/chat"] == []


def test_configured_escalation_takes_what_fits_nowhere_locally(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    # The "cloud" is a second router in front of the emulator, speaking OpenAI over HTTP.
    # Like a cloud, it holds far more than this machine: the long model at its full context.
    models = yaml.safe_load((REPO / "config" / "models.yaml").read_text(encoding="utf-8"))
    large = copy.deepcopy(models)
    (long_spec,) = [spec for spec in large["models"] if spec["name"] == LONG]
    long_spec["num_ctx"] = long_spec["context_window"]
    big = {"vram_bytes": 1 << 42, "ram_bytes": 1 << 42}
    cloud = make_router(emulator.base_url, models=large, routing={"budget": big})
    router = make_router(
        emulator.base_url,
        models=models,
        openai_upstreams=[{"name": "cloud", "base_url": cloud.base_url + "/v1"}],
        routing={"escalation": {"backend": "cloud", "model": LONG}},
    )
    long_body = {
        "model": "cline-memory-router",
        "stream": False,
        "messages": [{"role": "user", "content": "word " * 140_000}],
    }
    with httpx.Client(base_url=router.base_url, timeout=60) as client:
        reply = client.post("/v1/chat/completions", json=long_body)
        short = client.post(
            "/v1/chat/completions",
            json={**long_body, "messages": [{"role": "user", "content": "hello"}]},
        )
    assert reply.status_code == 200
    assert reply.headers["x-router-model"] == LONG
    reason = reply.headers["x-router-reason"]
    assert reason.startswith("the request needs about 144")  # 140,000 words and 4,096 reserved
    assert reason.endswith(
        "(prompt plus reserved output) but the largest local context is 131072 "
        "(llama4:16x17b); escalated to llama4:16x17b on cloud (configured escalation)"
    )
    # What fits locally never escalates.
    assert short.status_code == 200
    assert "escalated" not in short.headers["x-router-reason"]


def test_decision_log_holds_prompt_text_only_when_asked(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    body = {
        "model": "cline-memory-router",
        "stream": False,
        "messages": [{"role": "user", "content": "Implement retries in the client"}],
    }
    for log_prompts in (False, True):
        router = make_router(emulator.base_url, logging={"log_prompts": log_prompts})
        with httpx.Client(base_url=router.base_url, timeout=30) as client:
            assert client.post("/v1/chat/completions", json=body).status_code == 200
        path = router.settings.config.logging.decision_log.path
        deadline = time.monotonic() + 5
        while not (path.exists() and read_records(path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        (record,) = read_records(path)
        assert record["class"] == "implement"
        assert record["model"] == CODER
        logged = {c["model"]: c for c in record["candidates"]}
        assert set(logged) == {FAST, CODER, LONG}
        assert logged[CODER]["task_fit"] == 0.95 and logged[CODER]["evicts"] == []
        assert set(logged[CODER]) == {
            "model", "backend", "task_fit", "num_ctx", "fits", "score", "loads", "evicts",
            "load_s", "cost", "lacks",
        }  # fmt: skip
        if log_prompts:
            assert record["signals"]["prompt"] == "Implement retries in the client"
        else:
            assert "prompt" not in record["signals"]
            assert "Implement retries" not in path.read_text(encoding="utf-8")
