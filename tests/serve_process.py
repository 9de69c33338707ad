"""``memory-router serve`` as a real process: started, waited for, stopped, its stderr read."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

# Variables that would steer the router under test away from what a test sets up.
_STEERING = (
    "ROUTER_",
    "OLLAMA_",
    "LOG_LEVEL",
    "VECTOR_STORE_PATH",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
)


def router_command() -> list[str]:
    """The installed ``memory-router`` script next to this Python, else ``-m memory_router``."""
    script = Path(sys.executable).with_name("memory-router")
    return [str(script)] if script.exists() else [sys.executable, "-m", "memory_router"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without the router's variables, with the user's config
    and data folders under ``home`` and model downloads off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STEERING)}
    env.update(
        XDG_CONFIG_HOME=str(home / "config-home"),
        XDG_DATA_HOME=str(home / "data-home"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
    )
    env.update(extra)
    return env


class ServeProcess:
    """``memory-router serve ARGS`` in ``cwd``; stderr goes to a file (a pipe could fill)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.port = port
        self.stderr_path = cwd / f"serve-{port}.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*router_command(), "serve", *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout_s: float = 180.0) -> ServeProcess:
        """Wait until ``/health`` answers; fail with the process's stderr if it exits first."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"serve exited with {code} before answering:\n{self.stderr()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer /health:\n{self.stderr()}")
            time.sleep(0.2)

    def stop(self) -> int:
        """Stop it as a service manager would (SIGTERM), and return its exit code (uvicorn
        shuts down gracefully, then dies of the signal it caught: -15)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
