"""The live dashboard: the offline page, its state, its event stream and their API-key check.

Each test runs the real router on a loopback socket in front of the Ollama emulator.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import httpx

from tests.conftest import RouterFactory, RouterThread
from tests.ollama_emulator import OllamaEmulator

VIRTUAL = "cline-memory-router"
HELLO = {"role": "user", "content": "hi, how are you today?"}


def ask(router: RouterThread, headers: dict[str, str] | None = None) -> httpx.Response:
    payload = {"model": VIRTUAL, "stream": False, "messages": [HELLO]}
    response = httpx.post(
        router.base_url + "/v1/chat/completions", json=payload, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    return response


def wait_for(predicate: Any, timeout: float, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(step)


def test_page_is_served_offline(emulator: OllamaEmulator, make_router: RouterFactory) -> None:
    router = make_router(emulator.base_url)
    page = httpx.get(router.base_url + "/dashboard", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script>" in html and "<style>" in html
    # Nothing is loaded from outside the router: no http(s) URL, no protocol-relative one,
    # no external script or stylesheet.
    assert re.findall(r"https?://", html) == []
    assert re.findall(r"""(?:src|href)\s*=\s*["']//""", html) == []
    assert "/dashboard/events" in html and "/v1/memory/search" in html


def test_state_shows_the_loaded_model_and_the_decision(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    response = ask(router)
    model = response.json()["model"]
    request_id = response.headers["x-request-id"]

    def state() -> dict[str, Any]:
        reply = httpx.get(router.base_url + "/dashboard/state", timeout=10)
        assert reply.status_code == 200
        body: dict[str, Any] = reply.json()
        return body

    def shown() -> bool:
        body = state()
        resident = [r["model"] for r in body["residency"].get("ollama", {}).get("resident", [])]
        return model in resident and bool(body["recent"])

    wait_for(shown, timeout=5, step=0.1)
    body = state()
    host = body["residency"]["ollama"]
    assert host["budget"]["vram_bytes"] == 16 * 1024**3
    loaded = next(r for r in host["resident"] if r["model"] == model)
    assert loaded["num_ctx"] > 0 and loaded["size"] > 0
    row = body["recent"][0]
    assert row["model"] == model and row["backend"] == "ollama"
    assert row["request_id"] == request_id
    assert row["outcome"] == "ok" and row["class"] == "chat"
    assert row["reason"] and row["latency_ms"] > 0
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert [h["name"] for h in body["hosts"]] == ["ollama"]
    assert body["hosts"][0]["answers"] is True and body["embedded_fallback"] is False
    assert sum(body["per_minute"]["models"][model]["requests"]) == 1
    assert body["memory"]["enabled"] is True  # on by default; no bank under its roots here


def test_events_deliver_a_decision_within_two_seconds(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    events: list[tuple[str, dict[str, Any], float]] = []
    opened = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", router.base_url + "/dashboard/events", timeout=10) as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            name = ""
            for line in reply.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:]), time.monotonic()))
                    opened.set()
                    if name == "decision":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(5), "no state event on connecting"
    assert events[0][0] == "state" and "residency" in events[0][1]
    sent = time.monotonic()
    model = ask(router).json()["model"]
    listener.join(timeout=2.5)
    decisions = [(row, at) for name, row, at in events if name == "decision"]
    assert decisions, "no decision event within 2 s"
    row, at = decisions[0]
    assert row["model"] == model and at - sent < 2.0


def test_state_and_events_need_the_key_when_keys_are_set(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url, server={"api_keys": ["s3cret"]})
    good = {"Authorization": "Bearer s3cret"}
    base = router.base_url
    # The page itself holds no data: it is served without a key and asks for one.
    assert httpx.get(base + "/dashboard", timeout=10).status_code == 200
    for path in ("/dashboard/state", "/dashboard/events"):
        assert httpx.get(base + path, timeout=10).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert httpx.get(base + path, headers=bad, timeout=10).status_code == 401
    assert httpx.get(base + "/dashboard/state", headers=good, timeout=10).status_code == 200
    with httpx.stream("GET", base + "/dashboard/events", headers=good, timeout=10) as reply:
        assert reply.status_code == 200
        first = next(reply.iter_lines())
        assert first == "event: state"
