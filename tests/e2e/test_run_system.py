"""The newcomer's command: ./scripts/run_system.sh serves and lists the virtual model."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import pytest

from tests.conftest import REPO, free_socket
from tests.e2e.conftest import wait_ready

pytestmark = pytest.mark.e2e


def test_run_system_serves_the_virtual_model(tmp_path: object) -> None:
    nowhere = free_socket()  # no Ollama here: the router must fall back and still serve
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "ROUTER_PORT": str(port),
        "OLLAMA_HOST": f"127.0.0.1:{nowhere.getsockname()[1]}",
    }
    process = subprocess.Popen(
        ["./scripts/run_system.sh"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process, timeout=300)
        models = httpx.get(base_url + "/v1/models").json()["data"]
        assert models[0]["id"] == "cline-memory-router"
        assert models[0]["context_length"] > 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) in (0, -signal.SIGINT)
        nowhere.close()
