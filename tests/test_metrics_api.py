"""``GET /metrics``: Prometheus text with what the router answered and what is resident."""

from __future__ import annotations

import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RouterThread
from tests.ollama_emulator import OllamaEmulator


def samples(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = http.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }


def wait_for(http: httpx.Client, key: tuple[str, tuple[tuple[str, str], ...]]) -> Any:
    deadline = time.monotonic() + 5  # records are written in batches, after the answer
    while (found := samples(http)).get(key) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_metrics_count_answers_tokens_loads_and_errors(
    emulator: OllamaEmulator, router: RouterThread, http: httpx.Client
) -> None:
    body = {
        "model": "cline-memory-router",
        "messages": [{"role": "user", "content": "Implement retries in the HTTP client"}],
    }
    assert http.post("/v1/chat/completions", json=body).status_code == 200
    assert http.post("/v1/chat/completions", json={**body, "model": "gpt-9"}).status_code == 404
    coder = "qwen2.5-coder:32b"
    ok = (
        "memory_router_requests_total",
        (("model", coder), ("outcome", "ok"), ("task", "implement")),
    )
    found = wait_for(http, ok)
    assert found[ok] == 1
    assert found[("memory_router_model_loads_total", (("model", coder),))] == 1
    assert found[("memory_router_request_seconds_count", (("model", coder),))] == 1
    assert found[("memory_router_tokens_total", (("kind", "completion"), ("model", coder)))] > 0
    assert found[("memory_router_tokens_total", (("kind", "prompt"), ("model", coder)))] > 0
    assert found[("memory_router_decision_seconds_count", ())] == 1
    assert found[("memory_router_errors_total", (("status", "404"),))] == 1
    # Read at scrape time: nothing in flight now, the coder resident, Ollama serving.
    assert found[("memory_router_in_flight", (("model", coder),))] == 0
    resident = [k for k in found if k[0] == "memory_router_resident_bytes"]
    assert [dict(labels)["model"] for _, labels in resident] == [coder]
    assert found[("memory_router_embedded_fallback", ())] == 0
