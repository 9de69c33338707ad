"""The router's rules hold for a request that names a concrete model as for a routed one,
pins hold, and the per-model queue runs as many requests as it is told, over real sockets
against the Ollama emulator."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from memory_router.decision_log import read_records
from tests.conftest import RouterFactory, RouterThread
from tests.ollama_emulator import OllamaEmulator, Script, reference_profile

FAST, CODER, LONG = "qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"
WORD = "lorem ipsum dolor sit amet consectetur adipiscing elit "  # ~10 cl100k tokens


@pytest.fixture
def machine() -> Any:
    """The reference machine (16 GiB VRAM, 128 GiB RAM) with instant loads and tokens."""
    config = reference_profile()
    config.load_seconds_per_gb = 0.0
    config.token_delay_s = 0.0
    with OllamaEmulator(config) as emulator:
        yield emulator


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def post(router: RouterThread, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(router.base_url + "/v1/chat/completions", json=body, timeout=60)


def loads_of(machine: OllamaEmulator) -> list[tuple[str, int]]:
    return [(load.model, load.num_ctx) for load in machine.loads]


def test_a_named_model_gets_the_context_check(
    machine: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(machine.base_url)
    reply = post(router, chat(CODER, WORD * 6800))  # ~68k tokens; the coder's context is 32k
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "the largest local context is 32768 (qwen2.5-coder:32b)" in error["message"]
    assert not [r for r in machine.requests if r.path == "/api/chat"]  # Ollama never asked


def test_a_named_model_keeps_the_size_it_is_loaded_at_and_is_recorded(
    machine: OllamaEmulator, make_router: RouterFactory, tmp_path: Any
) -> None:
    # Loaded at 16384 (by a routed request, or anyone), a direct request that fits stays there.
    httpx.post(
        machine.base_url + "/api/chat",
        json={"model": CODER, "messages": [], "options": {"num_ctx": 16384}},
        timeout=30,
    ).raise_for_status()
    router = make_router(machine.base_url)
    machine.clear()
    reply = post(router, chat(CODER, "rename the variable", stream=False))
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-router-model"] == CODER
    assert "client asked for qwen2.5-coder:32b (num_ctx 16384)" in reply.headers["x-router-reason"]
    (sent,) = [r.json for r in machine.requests if r.path == "/api/chat"]
    assert sent["options"]["num_ctx"] == 16384
    assert machine.loads == [] and machine.unloads == []  # no reload at 32768
    # The fast model, named, loads (beside the coder: both fit in 128 GiB of RAM here).
    assert post(router, chat(FAST, "hello", stream=False)).status_code == 200
    assert loads_of(machine) == [(FAST, 32768)]
    router.stop()  # flushes the decision log
    records = read_records(tmp_path / "decisions0.jsonl")
    direct = [r for r in records if r["routed"] is False]
    assert [(r["model"], r["num_ctx"], r["caused_load"]) for r in direct] == [
        (CODER, 16384, False),
        (FAST, 32768, True),
    ]
    assert all(r["class"] is None and r["signals"]["direct"] for r in direct)


def test_a_named_model_counts_in_the_load_metrics(
    machine: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(machine.base_url)
    assert post(router, chat(LONG, "summarise this", stream=False)).status_code == 200
    wanted = f'memory_router_model_loads_total{{model="{LONG}"}} 1.0'
    deadline = time.monotonic() + 10  # records are written just after the answer
    while wanted not in httpx.get(router.base_url + "/metrics", timeout=30).text:
        assert time.monotonic() < deadline, "the load was not counted"
        time.sleep(0.05)


def test_a_model_pinned_in_ollama_is_never_unloaded_by_the_router(
    machine: OllamaEmulator, make_router: RouterFactory
) -> None:
    # Someone ran the fast model with keep_alive -1 (not in models.yaml's words: /api/ps
    # shows an expiry centuries ahead). The coder needs the GPU it holds.
    httpx.post(
        machine.base_url + "/api/chat",
        json={"model": FAST, "messages": [], "keep_alive": -1, "options": {"num_ctx": 32768}},
        timeout=30,
    ).raise_for_status()
    router = make_router(machine.base_url, routing={"budget": {"disk_bytes_per_s": 1e12}})
    machine.clear()
    for model in (CODER, "cline-memory-router"):
        reply = post(router, chat(model, "write a function that parses ISO dates", stream=False))
        if model == CODER:  # asked for by name: it cannot load without unloading the pin
            assert reply.status_code == 400
            assert f"keeps pinned {FAST} (keep_alive -1)" in reply.json()["error"]["message"]
        else:  # routed: chooses among what fits, and says why
            assert reply.status_code == 200
            assert reply.headers["x-router-model"] == FAST
            assert (
                f"{CODER} skipped: loading it would unload pinned {FAST}"
                in (reply.headers["x-router-reason"])
            )
    assert machine.unload_requests == [] and machine.unloads == []


@pytest.mark.parametrize(("running", "waiting"), [(1, 4), (5, 0)])
def test_running_and_waiting_limits_are_each_honoured(
    running: int, waiting: int, machine: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(
        machine.base_url,
        routing={"queue": {"max_running_per_model": running, "max_waiting_per_model": waiting}},
    )
    # Warm the model first, so the requests below overlap on generation alone.
    assert post(router, chat(FAST, "hi", stream=False)).status_code == 200
    machine.enqueue(*(Script(content="tick " * 40, token_delay_s=0.02) for _ in range(6)))
    statuses: list[int] = []
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, machine.in_flight(FAST))
            time.sleep(0.01)

    def one() -> None:
        statuses.append(post(router, chat(FAST, "count", stream=False)).status_code)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    watcher.join()
    # Running plus waiting are admitted, the sixth is told to retry; at most `running` of
    # them reach Ollama at once.
    assert sorted(statuses) == [200] * 5 + [429]
    assert peak == running
