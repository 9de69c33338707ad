"""Ollama started after the router: the embedded fallback gives way to it without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from memory_router.service import RouterService
from memory_router.settings import load_settings
from tests.conftest import REPO, free_socket, write_config
from tests.e2e.conftest import start_router, stop, wait_ready
from tests.ollama_emulator import OllamaEmulator, fast_profile

pytestmark = pytest.mark.e2e
CONFIGURED = ["qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"]


def eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_the_router_switches_to_ollama_once_it_answers(tmp_path: Path) -> None:
    nowhere = free_socket()  # bound, not listening: Ollama is not running yet
    ollama_port = nowhere.getsockname()[1]
    router = start_router(
        tmp_path,
        {
            "ollama": {"base_url": f"http://127.0.0.1:{ollama_port}", "connect_timeout_s": 1},
            "embedded": {"mode": "auto", "n_ctx": 4096, "default_max_tokens": 8},
            "routing": {
                "poll_s": 0.5,
                "warm_pinned": False,
                "budget": {"vram_bytes": 16 * 1024**3, "ram_bytes": 128 * 1024**3},
            },
        },
    )
    base_url, process, log_path = router.base_url, router.process, router.log_path
    try:
        wait_ready(base_url, process, timeout=180)
        assert httpx.get(base_url + "/ready").json()["embedded_fallback"] is True
        nowhere.close()
        with OllamaEmulator(fast_profile(), port=ollama_port) as emulator:

            def switched() -> bool:
                ready: dict[str, Any] = httpx.get(base_url + "/ready").json()
                return ready["embedded_fallback"] is False

            assert eventually(switched), log_path.read_text()
            ready = httpx.get(base_url + "/ready").json()
            assert ready["status"] == "ready" and ready["missing_models"] == []
            assert any("Ollama answered" in note for note in ready["notes"])
            models = [m["id"] for m in httpx.get(base_url + "/v1/models").json()["data"]]
            assert models == ["cline-memory-router", *CONFIGURED]

            client = openai.OpenAI(base_url=base_url + "/v1", api_key="any", max_retries=0)
            with client:
                raw = client.chat.completions.with_raw_response.create(
                    model="cline-memory-router",
                    messages=[{"role": "user", "content": "Add a --verbose flag to the CLI"}],
                )
            assert raw.headers["x-router-model"] in CONFIGURED
            assert raw.parse().choices[0].message.content
            assert [r for r in emulator.requests if r.path == "/api/chat"]

            def embedded_closed() -> bool:
                backends = httpx.get(base_url + "/ready").json()["backends"]
                return [b["name"] for b in backends] == ["ollama"]

            assert eventually(embedded_closed), httpx.get(base_url + "/ready").json()
        assert "ollama_found" in log_path.read_text()
    finally:
        stop(process)
        nowhere.close()


def test_no_ollama_is_sought_when_the_configuration_disables_it(tmp_path: Path) -> None:
    server = {"ollama": {"enabled": False}, "embedded": {"mode": "auto", "n_ctx": 2048}}
    settings = load_settings(write_config(tmp_path, server), environ={}, env_file=None)

    async def run() -> None:
        service = RouterService(settings)
        await service.start()
        try:
            assert service.fleet.embedded_fallback is True
            assert not service.fleet._tasks, "nothing polls an Ollama the user turned off"
        finally:
            await service.aclose()

    asyncio.run(run())


def test_an_ollama_host_that_comes_up_ends_the_fallback(tmp_path: Path) -> None:
    """No main Ollama at all, one ``ollama_hosts`` machine that is down at start-up."""
    nowhere = free_socket()
    port = nowhere.getsockname()[1]
    host = {
        "name": "gpu2",
        "base_url": f"http://127.0.0.1:{port}",
        "connect_timeout_s": 1,
        "vram_bytes": 16 * 1024**3,
        "ram_bytes": 128 * 1024**3,
    }
    models = yaml.safe_load((REPO / "config" / "models.yaml").read_text())
    for model in models["models"]:
        model["backend"] = "gpu2"
    server = {
        "ollama": {"enabled": False},
        "ollama_hosts": [host],
        "embedded": {"mode": "auto", "n_ctx": 2048},
        "routing": {"poll_s": 0.3, "warm_pinned": False},
    }
    settings = load_settings(write_config(tmp_path, server, models), environ={}, env_file=None)
    emulator = OllamaEmulator(fast_profile(), port=port)

    async def run() -> None:
        service = RouterService(settings)
        await service.start()
        try:
            assert service.fleet.embedded_fallback is True
            nowhere.close()
            # The emulator runs its own loop in a thread: started off this one.
            await asyncio.to_thread(emulator.start)
            for _ in range(100):
                if "embedded" not in service.fleet.backends:
                    break
                await asyncio.sleep(0.1)
            assert service.fleet.embedded_fallback is False
            assert [spec.name for spec in service.fleet.catalog] == CONFIGURED
            assert "gpu2" in service.fleet.notes[0] and "after start-up" in service.fleet.notes[0]
            assert "embedded" not in service.fleet.backends, "the demo model was closed"
            assert "ollama" not in service.fleet.backends, "the main Ollama stays off"
        finally:
            await service.aclose()
            await asyncio.to_thread(emulator.stop)

    asyncio.run(run())
