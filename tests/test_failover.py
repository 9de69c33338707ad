"""Failures before the answer's first event, with two Ollama hosts: retries, fallbacks,
cooldowns and their recovery, host pools and their failover.

Each test runs the real router on a loopback socket in front of two Ollama emulators (the
reference machine twice, loads and tokens sped up).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from memory_router.cli import app
from memory_router.decision_log import read_records
from tests.conftest import REPO, RouterFactory, RouterThread
from tests.ollama_emulator import OllamaEmulator, Script
from tests.test_ollama_emulator import quick_reference
from tests.test_ollama_hosts import chats

FAST, CODER, LONG = "qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"
GIB = 1024**3
VIRTUAL = "cline-memory-router"
HELLO = {"role": "user", "content": "hi, how are you today?"}
CODE = {"role": "user", "content": "Implement retries in the HTTP client and add a test"}


def models(**backends: Any) -> dict[str, Any]:
    """The shipped models.yaml with some models' ``backend`` replaced (a name or a pool)."""
    shipped: dict[str, Any] = yaml.safe_load((REPO / "config" / "models.yaml").read_text("utf-8"))
    names = {"fast": FAST, "coder": CODER, "long": LONG}
    for key, backend in backends.items():
        for spec in shipped["models"]:
            if spec["name"] == names[key]:
                spec["backend"] = backend
    return shipped


def gpu2(emulator: OllamaEmulator) -> dict[str, Any]:
    return {
        "name": "gpu2",
        "base_url": emulator.base_url,
        "vram_bytes": 16 * GIB,
        "ram_bytes": 128 * GIB,
        "connect_timeout_s": 0.5,
    }


def ask(router: RouterThread, *messages: dict[str, Any], **body: Any) -> httpx.Response:
    payload = {"model": VIRTUAL, "stream": False, "messages": list(messages), **body}
    return httpx.post(router.base_url + "/v1/chat/completions", json=payload, timeout=60)


def stream(router: RouterThread, *messages: dict[str, Any], **body: Any) -> tuple[
    httpx.Response, list[dict[str, Any]], list[str]
]:  # fmt: skip
    """A streamed request: the response, its data events (parsed), its comment lines."""
    payload = {"model": VIRTUAL, "stream": True, "messages": list(messages), **body}
    with httpx.stream(
        "POST", router.base_url + "/v1/chat/completions", json=payload, timeout=60
    ) as response:
        lines = list(response.iter_lines())
    data = [json.loads(x[6:]) for x in lines if x.startswith("data: ") and x != "data: [DONE]"]
    return response, data, [x for x in lines if x.startswith(":")]


def text_of(data: list[dict[str, Any]]) -> str:
    return "".join(
        chunk["choices"][0]["delta"].get("content") or "" for chunk in data if chunk["choices"]
    )


def records(tmp_path: Path, router: RouterThread, index: int = 0) -> list[dict[str, Any]]:
    router.stop()  # flushes the decision log
    return read_records(tmp_path / f"decisions{index}.jsonl")


def metric(router: RouterThread, name: str) -> float:
    text = httpx.get(router.base_url + "/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


@pytest.mark.parametrize("streamed", [False, True])
def test_a_failure_before_the_first_event_is_retried_on_the_same_host(
    machines: tuple[OllamaEmulator, OllamaEmulator], make_router: RouterFactory, streamed: bool
) -> None:
    here, _ = machines
    router = make_router(here.base_url)
    here.enqueue(Script(status=500, error="llama runner process has terminated"))
    if streamed:
        response, data, _ = stream(router, HELLO)
        assert "Hello from" in text_of(data)
    else:
        response = ask(router, HELLO)
        assert response.json()["choices"][0]["message"]["content"].startswith("Hello from")
    assert response.status_code == 200
    assert response.headers["x-router-model"] == FAST
    assert "x-router-fallback" not in response.headers
    assert chats(here) == [FAST, FAST]  # the failure, then the retry that answered
    assert metric(router, "memory_router_retries_total") == 1


@pytest.mark.parametrize("streamed", [False, True])
def test_a_model_that_keeps_failing_is_answered_by_the_next_choice(
    machines: tuple[OllamaEmulator, OllamaEmulator],
    make_router: RouterFactory,
    tmp_path: Path,
    streamed: bool,
) -> None:
    here, _ = machines
    router = make_router(here.base_url)
    for _ in range(3):  # the first try and both retries
        here.enqueue(Script(status=500, error="CUDA error: out of memory"))
    if streamed:
        response, data, _ = stream(router, HELLO)
        answer = text_of(data)
    else:
        response = ask(router, HELLO)
        answer = response.json()["choices"][0]["message"]["content"]
    assert response.status_code == 200
    served = response.headers["x-router-model"]
    assert served != FAST and answer.startswith(f"Hello from {served}")
    fallback = response.headers["x-router-fallback"]
    assert FAST in fallback and "500" in fallback and "out of memory" in fallback
    assert chats(here) == [FAST, FAST, FAST, served]
    assert metric(router, "memory_router_fallbacks_total") == 1
    (record,) = records(tmp_path, router)
    assert record["outcome"] == "fallback" and record["model"] == served
    assert record["fallback"]["from"] == FAST
    assert [a["model"] for a in record["attempts"]] == [FAST, FAST, FAST]
    assert all(a["status"] == 502 for a in record["attempts"])


def test_with_one_host_failing_every_chat_every_request_is_served_by_the_other(
    machines: tuple[OllamaEmulator, OllamaEmulator], make_router: RouterFactory, tmp_path: Path
) -> None:
    here, there = machines
    router = make_router(
        here.base_url, models(coder="gpu2"), ollama_hosts=[gpu2(there)],
        routing={"failover": {"cooldown_s": 60}},
    )  # fmt: skip
    here.enqueue(*[Script(status=500, error="model crashed") for _ in range(40)])
    asks = [HELLO, CODE, {"role": "user", "content": "explain how the scheduler picks a job"}]
    replies = [ask(router, asks[i % 3]) for i in range(9)]
    assert [r.status_code for r in replies] == [200] * 9
    assert {r.headers["x-router-model"] for r in replies} == {CODER}
    assert set(chats(there)) == {CODER} and len(chats(there)) == 9
    # Each model tried here failed three times in a row and cools down: later requests
    # skip it, and say so.
    failing = httpx.get(router.base_url + "/ready").json()["failing"]
    assert f"ollama/{FAST}" in failing
    assert all(state["cooling"] and state["failures"] == 3 for state in failing.values())
    assert len(chats(here)) == 3 * len(failing)
    reason = replies[-3].headers["x-router-reason"]
    assert f"{FAST} skipped: cooling down after 3 failures" in reason
    outcomes = [r["outcome"] for r in records(tmp_path, router)]
    assert outcomes.count("fallback") >= 1 and set(outcomes) <= {"ok", "fallback"}


def test_a_dead_host_cools_down_and_a_probe_brings_it_back(
    machines: tuple[OllamaEmulator, OllamaEmulator], make_router: RouterFactory
) -> None:
    here, there = machines
    router = make_router(
        here.base_url, models(coder=["gpu2", "ollama"]), ollama_hosts=[gpu2(there)],
        routing={"failover": {"cooldown_s": 0.5, "backoff_s": 0.01}, "poll_s": 0.2},
    )  # fmt: skip
    port = there.port
    there.stop()
    direct = {"model": CODER}
    first = ask(router, CODE, **direct)
    assert first.status_code == 200
    assert chats(here) == [CODER]
    ready = httpx.get(router.base_url + "/ready").json()
    assert ready["failing"]["gpu2"]["cooling"]
    assert any("gpu2 is skipped" in note for note in ready["notes"])
    assert metric(router, 'memory_router_cooling_down{key="gpu2"}') == 1
    shown = CliRunner().invoke(
        app, ["status", "--url", router.base_url, "--config-dir", str(router.settings.config_dir)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "cooling down: gpu2, 3 failures in a row" in shown.output
    # While it cools down, nothing is sent to it.
    assert ask(router, CODE, **direct).status_code == 200
    assert chats(here) == [CODER, CODER]
    revived = OllamaEmulator(quick_reference(), port=port).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready = httpx.get(router.base_url + "/ready").json()  # reads the view: probes
            if "gpu2" not in ready["failing"]:
                break
            time.sleep(0.1)
        assert "gpu2" not in ready["failing"]
        assert metric(router, 'memory_router_cooling_down{key="gpu2"}') == 0
        # Back in the pool: a session's work may go there again.
        assert ask(router, CODE, **direct).status_code == 200
    finally:
        revived.stop()


def test_a_model_not_pulled_on_one_host_is_served_by_the_other(
    make_router: RouterFactory, tmp_path: Path
) -> None:
    without = quick_reference()
    del without.models[CODER]
    with OllamaEmulator(without) as here, OllamaEmulator(quick_reference()) as there:
        router = make_router(
            here.base_url, models(coder=["ollama", "gpu2"]), ollama_hosts=[gpu2(there)]
        )
        named = ask(router, CODE, model=CODER)
        routed = ask(router, CODE)
        ready = httpx.get(router.base_url + "/ready").json()
    for reply in (named, routed):
        assert reply.status_code == 200
        assert reply.headers["x-router-model"] == CODER
    assert chats(there) == [CODER, CODER]
    assert ready["missing_models"] == []
    assert any(f"{CODER} is not available on ollama" in note for note in ready["notes"])
    # Ollama's list of models told the router it is not there: it was never asked for it.
    assert chats(here) == []
    assert "x-router-fallback" not in named.headers
    assert f"{CODER} skipped: not pulled on ollama" in named.headers["x-router-reason"]


def test_a_pool_keeps_a_session_on_its_host_and_fails_over_when_the_host_dies(
    machines: tuple[OllamaEmulator, OllamaEmulator], make_router: RouterFactory
) -> None:
    here, there = machines
    router = make_router(
        here.base_url, models(coder=["ollama", "gpu2"]), ollama_hosts=[gpu2(there)],
        routing={"failover": {"backoff_s": 0.01}},
    )  # fmt: skip
    system = {"role": "system", "content": "You are Cline.\nCurrent Working Directory: /src/a\n"}
    first = ask(router, system, CODE)
    host_of = {"ollama": here, "gpu2": there}
    used = next(name for name, emu in host_of.items() if CODER in chats(emu))
    follow = [
        system,
        CODE,
        {"role": "assistant", "content": "I will edit client.py."},
        {"role": "user", "content": "also make the retry count configurable"},
    ]
    assert ask(router, *follow).status_code == 200
    assert chats(host_of[used]).count(CODER) == 2  # the session stayed on its host
    other = "gpu2" if used == "ollama" else "ollama"
    assert CODER not in chats(host_of[other])
    host_of[used].stop()
    after = ask(router, *follow, {"role": "assistant", "content": "Done."}, CODE)
    assert first.status_code == 200 and after.status_code == 200
    assert after.headers["x-router-model"] == CODER
    assert CODER in chats(host_of[other])


def test_a_model_removed_from_a_host_after_start_up_is_served_by_the_pool(
    machines: tuple[OllamaEmulator, OllamaEmulator], make_router: RouterFactory
) -> None:
    here, there = machines
    router = make_router(
        here.base_url, models(coder=["ollama", "gpu2"]), ollama_hosts=[gpu2(there)]
    )
    del here.config.models[CODER]  # `ollama rm` on this host, after the router read its list
    named = ask(router, CODE, model=CODER)
    assert named.status_code == 200
    assert chats(there) == [CODER]
    fallback = named.headers["x-router-fallback"]
    assert "not pulled" in fallback and "404" in fallback


def test_a_host_killed_mid_run_loses_no_request_that_had_not_started_streaming(
    make_router: RouterFactory,
) -> None:
    slow = quick_reference()
    slow.token_delay_s = 0.05  # ~3 s an answer: the kill lands mid-stream
    slow.default_content = " ".join(f"w{i}" for i in range(60))
    with OllamaEmulator(slow) as here, OllamaEmulator(slow) as there:
        router = make_router(
            here.base_url, models(coder=["ollama", "gpu2"]), ollama_hosts=[gpu2(there)],
            routing={"failover": {"backoff_s": 0.01}, "queue": {"max_waiting_per_model": 8}},
        )  # fmt: skip
        results: dict[int, dict[str, Any]] = {}

        def one(i: int) -> None:
            body = {"model": CODER, "stream": True, "messages": [CODE]}
            first_at, lines = None, []
            with httpx.stream(
                "POST", router.base_url + "/v1/chat/completions", json=body, timeout=60
            ) as response:
                for line in response.iter_lines():
                    if first_at is None and '"content":"w' in line:
                        first_at = time.monotonic()
                        streaming.add(i)
                    lines.append(line)
            results[i] = {"first_at": first_at, "lines": lines, "headers": dict(response.headers)}

        streaming: set[int] = set()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        # The first goes to the pool's first host (both idle) and is streaming from it when
        # the host dies; the others arrive while it runs: queued behind it there, or on the
        # other host.
        threads[0].start()
        deadline = time.monotonic() + 20
        while 0 not in streaming and time.monotonic() < deadline:
            time.sleep(0.02)
        assert 0 in streaming, "the first request never started streaming"
        for thread in threads[1:]:
            thread.start()
            time.sleep(0.05)
        time.sleep(0.3)
        killed_at = time.monotonic()
        here.stop()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads), "a stream hung"
    words = slow.default_content.split()
    cut = served = 0
    for result in results.values():
        data = [json.loads(x[6:]) for x in result["lines"] if x.startswith("data: {")]
        errors = [d["error"] for d in data if "error" in d]
        text = "".join(
            d["choices"][0]["delta"].get("content") or "" for d in data if d.get("choices")
        )
        assert [x for x in result["lines"] if x][-1] == "data: [DONE]"
        if errors:  # only a stream that had started before the kill may end in an error
            assert result["first_at"] is not None and result["first_at"] < killed_at
            cut += 1
        else:
            assert text.split() == words
            served += 1
    assert cut >= 1 and cut + served == 6
    # Work queued on the dead host moved to the other one: said in the headers, or in an SSE
    # comment when the headers had gone out while it waited.
    moved = [
        r
        for r in results.values()
        if "x-router-fallback" in r["headers"]
        or any(x.startswith(": fallback") for x in r["lines"])
    ]
    assert moved and all("cannot reach" in str(r) for r in moved)
    assert len(chats(there)) >= served
