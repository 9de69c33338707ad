"""Shared fixtures: an Ollama emulator, a router in-process on a real socket, config dirs."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from memory_router.api.app import create_app
from memory_router.settings import Settings, load_settings
from tests.ollama_emulator import OllamaEmulator, fast_profile

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """The user's config and data folders (``locations``) for the session: temporary ones.

    The built-in defaults keep their data (decision log, index) in the user's data folder, and
    a user's own config folder would be read by a router started without a folder: neither
    belongs to whoever runs the tests."""
    base = Path(tempfile.mkdtemp(prefix="memory-router-tests-"))
    saved = {name: os.environ.get(name) for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    os.environ["XDG_CONFIG_HOME"] = str(base / "config")
    os.environ["XDG_DATA_HOME"] = str(base / "data")

    def restore() -> None:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(base, ignore_errors=True)

    config.add_cleanup(restore)


def write_config(
    directory: Path, server: dict[str, Any], models: dict[str, Any] | None = None
) -> Path:
    """A config dir: the given server_config.yaml and the shipped (or given) models.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "server_config.yaml").write_text(yaml.safe_dump(server), encoding="utf-8")
    if models is None:
        shutil.copy(REPO / "config" / "models.yaml", directory / "models.yaml")
    else:
        (directory / "models.yaml").write_text(yaml.safe_dump(models), encoding="utf-8")
    return directory


def free_socket() -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP;
    # without it every small reply waits for the client's delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class RouterThread:
    """The router's real ASGI app served by uvicorn on a loopback socket, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sock = free_socket()
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), log_config=None, lifespan="on", loop="asyncio", ws="none"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self._sock]))

    def start(self) -> RouterThread:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the router did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


@pytest.fixture
def emulator() -> Iterator[OllamaEmulator]:
    """An Ollama emulator with the reference model names, instant loads and tokens."""
    with OllamaEmulator(fast_profile()) as emu:
        yield emu


RouterFactory = Callable[..., RouterThread]


def _merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.fixture
def make_router(tmp_path: Path) -> Iterator[RouterFactory]:
    """Start routers with a server_config built from keyword overrides; stops them after."""
    started: list[RouterThread] = []

    def make(
        ollama_url: str, models: dict[str, Any] | None = None, **sections: Any
    ) -> RouterThread:
        server: dict[str, Any] = {
            "ollama": {"base_url": ollama_url, "connect_timeout_s": 1},
            "embedded": {"mode": "never"},
            "logging": {
                "level": "WARNING",
                "decision_log": {"path": str(tmp_path / f"decisions{len(started)}.jsonl")},
            },
            # The emulated machine's memory (fast_profile), not this one's.
            # Warm-up loads would show up among the requests tests assert on: opt in.
            "routing": {
                "budget": {"vram_bytes": 16 * 1024**3, "ram_bytes": 128 * 1024**3},
                "warm_pinned": False,
            },
        }
        _merge(server, sections)
        directory = write_config(tmp_path / f"config{len(started)}", server, models)
        settings = load_settings(directory, environ={}, env_file=None)
        router = RouterThread(settings).start()
        started.append(router)
        return router

    yield make
    for router in started:
        router.stop()


@pytest.fixture
def router(emulator: OllamaEmulator, make_router: RouterFactory) -> RouterThread:
    """A router in front of the emulator, with the shipped models.yaml."""
    return make_router(emulator.base_url)


@pytest.fixture
def http(router: RouterThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def machines() -> Iterator[tuple[OllamaEmulator, OllamaEmulator]]:
    """Two Ollama hosts: the reference machine (16 GiB VRAM: one big model at a time) twice,
    with loads and tokens sped up."""
    from tests.test_ollama_emulator import quick_reference

    with OllamaEmulator(quick_reference()) as here, OllamaEmulator(quick_reference()) as there:
        yield here, there
