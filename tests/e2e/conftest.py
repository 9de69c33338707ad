"""A real router process on the embedded llama.cpp model, shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_socket, write_config


@dataclass
class RouterProcess:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the router exited with {process.returncode}")
        try:
            if httpx.get(base_url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError("the router did not become ready in time")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_router(root: Path, server: dict[str, Any]) -> RouterProcess:
    """``memory-router serve`` on a free port with ``server`` as its server_config.yaml."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    directory = write_config(root / "config", {**server, "server": {"port": port}})
    log_path = root / "router.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "memory_router", "serve", "--config-dir", str(directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return RouterProcess(f"http://127.0.0.1:{port}", process, log_path)


@contextlib.contextmanager
def without_ollama(root: Path, **sections: Any) -> Iterator[RouterProcess]:
    """A ready router whose Ollama is not running (its port bound, never listening), so it
    serves the embedded model; ``sections`` are the rest of its server_config.yaml."""
    nowhere = free_socket()
    ollama = {"base_url": f"http://127.0.0.1:{nowhere.getsockname()[1]}"}
    router = start_router(root, {"ollama": ollama, **sections})
    try:
        wait_ready(router.base_url, router.process, timeout=180)
        yield router
    finally:
        stop(router.process)
        nowhere.close()


@pytest.fixture(scope="session")
def embedded_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    """``memory-router serve`` with no Ollama reachable: it falls back to the embedded model."""
    root = tmp_path_factory.mktemp("embedded-router")
    embedded = {"mode": "auto", "n_ctx": 32768, "default_max_tokens": 48}
    with without_ollama(root, embedded=embedded) as router:
        yield router
