"""Two machines, two Ollamas: each host is a backend with its own residency.

The fast and long-context models stay on this machine's Ollama; the coder lives on a second
host (``ollama_hosts``). Loading the coder there must not evict anything here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from memory_router.errors import ConfigError
from memory_router.settings import load_settings
from tests.conftest import REPO, RouterFactory, free_socket, write_config
from tests.ollama_emulator import OllamaEmulator, fast_profile

FAST, CODER = "qwen3:30b-a3b", "qwen2.5-coder:32b"
GIB = 1024**3


def models_with_coder_on(host: str) -> dict[str, Any]:
    models: dict[str, Any] = yaml.safe_load((REPO / "config" / "models.yaml").read_text("utf-8"))
    for spec in models["models"]:
        if spec["name"] == CODER:
            spec["backend"] = host
    return models


def chats(emulator: OllamaEmulator) -> list[str]:
    return [
        r.json["model"] for r in emulator.requests if r.path == "/api/chat" and r.json["messages"]
    ]


@pytest.mark.parametrize("coder_on", ["gpu2", "ollama"])
def test_each_host_holds_its_own_models(
    machines: tuple[OllamaEmulator, OllamaEmulator], make_router: RouterFactory, coder_on: str
) -> None:
    here, there = machines
    host = {
        "name": "gpu2",
        "base_url": there.base_url,
        "vram_bytes": 16 * GIB,
        "ram_bytes": 128 * GIB,
    }
    router = make_router(here.base_url, models_with_coder_on(coder_on), ollama_hosts=[host])
    chat = {"model": "cline-memory-router", "stream": False}
    with httpx.Client(base_url=router.base_url, timeout=60) as client:
        quick = client.post(
            "/v1/chat/completions",
            json={**chat, "messages": [{"role": "user", "content": "hi, how are you?"}]},
        )
        code = client.post(
            "/v1/chat/completions",
            json={
                **chat,
                "messages": [{"role": "user", "content": "Implement retries in the client"}],
            },
        )
        ready = client.get("/ready").json()
        metrics = client.get("/metrics").text
    assert quick.headers["x-router-model"] == FAST
    assert code.headers["x-router-model"] == CODER
    assert ready["status"] == "ready"
    assert sorted(b["name"] for b in ready["backends"]) == ["gpu2", "ollama"]
    if coder_on == "gpu2":
        assert chats(here) == [FAST] and chats(there) == [CODER]
        assert here.unloads == [] and there.unloads == []  # nothing here made room for it
        assert f'backend="gpu2",model="{CODER}"' in metrics
        assert f'backend="ollama",model="{FAST}"' in metrics
    else:  # the control: on one 16 GiB GPU the coder's load must evict the fast model
        assert chats(here) == [FAST, CODER] and chats(there) == []
        assert [model for model, _ in here.unloads] == [FAST]


def test_a_host_that_is_down_at_start_up_is_skipped_and_named_503_until_it_answers(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    host = {"name": "gpu2", "base_url": "http://127.0.0.1:9", "vram_bytes": GIB, "ram_bytes": GIB}
    router = make_router(emulator.base_url, models_with_coder_on("gpu2"), ollama_hosts=[host])
    body = {
        "model": CODER,
        "stream": False,
        "messages": [{"role": "user", "content": "Implement retries"}],
    }
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        reply = client.post("/v1/chat/completions", json=body)
        routed = client.post("/v1/chat/completions", json={**body, "model": "cline-memory-router"})
        ready = client.get("/ready").json()
    assert reply.status_code == 503 and "retry-after" in reply.headers
    # Routed, the work goes to a model whose host answers, and the reason says why.
    assert routed.status_code == 200
    assert routed.headers["x-router-model"] != CODER
    assert f"{CODER} skipped: its host gpu2 does not answer" in routed.headers["x-router-reason"]
    assert any("Ollama host gpu2 did not answer" in note for note in ready["notes"])
    assert ready["missing_models"] == [CODER]


@pytest.mark.parametrize(
    ("hosts", "key", "words"),
    [
        ([{"name": "ollama"}], "ollama_hosts.0.name", "names another backend"),
        ([{"name": "a"}, {"name": "a"}], "ollama_hosts.1.name", "names another backend"),
    ],
)
def test_host_names_must_be_unique(
    tmp_path: Path, hosts: list[dict[str, Any]], key: str, words: str
) -> None:
    full = [
        {"base_url": "http://127.0.0.1:1", "vram_bytes": 0, "ram_bytes": GIB, **h} for h in hosts
    ]
    directory = write_config(tmp_path, {"ollama_hosts": full})
    with pytest.raises(ConfigError) as caught:
        load_settings(directory, environ={}, env_file=None)
    assert key in str(caught.value) and words in str(caught.value)


def test_a_model_on_an_unknown_host_names_the_known_ones(tmp_path: Path) -> None:
    directory = write_config(tmp_path, {}, models_with_coder_on("gpu9"))
    with pytest.raises(ConfigError) as caught:
        load_settings(directory, environ={}, env_file=None)
    assert "unknown backend 'gpu9'" in str(caught.value)


def test_a_host_that_comes_up_later_gets_its_sizes_and_capabilities_read(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    nowhere = free_socket()  # bound, not listening: the second machine is off
    port = nowhere.getsockname()[1]
    host = {"name": "gpu2", "base_url": f"http://127.0.0.1:{port}", "vram_bytes": 16 * GIB}
    router = make_router(
        emulator.base_url,
        models_with_coder_on("gpu2"),
        ollama_hosts=[{**host, "ram_bytes": 128 * GIB, "connect_timeout_s": 0.5}],
        # The emulator's models are 10,000 times smaller than the real ones: a disk as much
        # slower gives them real load times.
        routing={"poll_s": 0.2, "budget": {"disk_bytes_per_s": 2e9 / 10_000}},
    )
    body = {"model": "cline-memory-router", "messages": [{"role": "user", "content": "Fix it"}]}

    def coder() -> dict[str, Any]:
        explained = httpx.post(router.base_url + "/v1/route/explain", json=body).json()
        found: dict[str, Any] = next(c for c in explained["candidates"] if c["model"] == CODER)
        return found

    assert coder()["fits"] is False  # skipped: its host does not answer
    nowhere.close()
    with OllamaEmulator(fast_profile(), port=port):
        deadline = time.monotonic() + 10
        while not coder()["fits"] and time.monotonic() < deadline:
            time.sleep(0.1)
        candidate = coder()
        assert candidate["fits"] is True
        assert candidate["loads"] is True and candidate["load_s"] > 0  # its size is known now
        listed = httpx.get(router.base_url + "/v1/models").json()["data"]
        assert next(m for m in listed if m["id"] == CODER)["capabilities"] == [
            "completion",
            "insert",
            "tools",
        ]


def test_a_model_pulled_after_start_up_gets_its_profile_on_a_later_poll(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    pulled_later = emulator.config.models.pop(CODER)  # not pulled when the router starts
    router = make_router(
        emulator.base_url,
        routing={"poll_s": 0.05, "budget": {"disk_bytes_per_s": 2e9 / 10_000}},
    )

    def capabilities() -> Any:
        listed = httpx.get(router.base_url + "/v1/models").json()["data"]
        return next(m for m in listed if m["id"] == CODER).get("capabilities")

    assert capabilities() is None
    emulator.config.models[CODER] = pulled_later  # `ollama pull qwen2.5-coder:32b`
    deadline = time.monotonic() + 10
    while capabilities() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert capabilities() == ["completion", "insert", "tools"]
    body = {"model": "cline-memory-router", "messages": [{"role": "user", "content": "Fix it"}]}
    explained = httpx.post(router.base_url + "/v1/route/explain", json=body).json()
    coder = next(c for c in explained["candidates"] if c["model"] == CODER)
    assert coder["loads"] is True and coder["load_s"] > 0  # its size is known now
