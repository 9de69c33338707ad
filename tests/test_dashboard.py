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

from memory_router.recent import MINUTES, QUEUE_SIZE, Recent
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
        resident = [
            r["model"]
            for r in body["residency"].get("ollama", {}).get("resident", [])
            if r["expires_at"]  # read back from Ollama's /api/ps, not only planned
        ]
        return model in resident and bool(body["recent"])

    wait_for(shown, timeout=5, step=0.1)
    body = state()
    host = body["residency"]["ollama"]
    assert host["budget"]["vram_bytes"] == 16 * 1024**3
    loaded = next(r for r in host["resident"] if r["model"] == model)
    assert loaded["num_ctx"] > 0 and loaded["size"] > 0
    assert loaded["expires_at"].startswith("20")  # Ollama's RFC 3339 expiry
    row = body["recent"][0]
    assert row["client"].startswith("python-httpx/")  # who sent it: its User-Agent
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
    # The listener has hung up: its queue is gone from the service's ring.
    recent: Recent = router.server.config.app.state.service.recent
    wait_for(lambda: not recent._subscribers, timeout=5)


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


def row(model: str, t: float, load_s: float | None = None) -> dict[str, Any]:
    return {"t": t, "model": model, "caused_load": load_s is not None, "load_s": load_s}


def test_ring_keeps_the_newest_rows_and_an_hour_of_minutes() -> None:
    now = [10_000 * 60.0]
    recent = Recent(3, clock=lambda: now[0])
    for i in range(5):
        recent.append(row("a", now[0] - 120 + i, load_s=2.0 if i == 0 else None))
    recent.append(row("b", now[0], load_s=1.5))
    assert len(recent) == 3
    assert [r["model"] for r in recent.last(2)] == ["b", "a"]
    chart = recent.per_minute()
    assert chart["step_s"] == 60 and len(chart["models"]["a"]["requests"]) == MINUTES
    assert sum(chart["models"]["a"]["requests"]) == 5
    assert sum(chart["models"]["a"]["load_s"]) == 2.0  # only rows that caused a load
    assert chart["models"]["b"]["requests"][-1] == 1 and chart["models"]["b"]["load_s"][-1] == 1.5
    now[0] += 2 * MINUTES * 60  # two hours on: the old minutes drop out
    recent.append(row("b", now[0]))
    assert set(recent.per_minute()["models"]) == {"b"}


async def test_a_slow_subscriber_loses_rows_and_never_blocks() -> None:
    recent = Recent(10)
    queue = recent.subscribe()
    for i in range(QUEUE_SIZE + 5):
        recent.append(row("a", 60.0 * i))
    assert queue.qsize() == QUEUE_SIZE and recent.dropped == 5
    recent.unsubscribe(queue)
    recent.append(row("a", 0.0))
    assert queue.qsize() == QUEUE_SIZE
