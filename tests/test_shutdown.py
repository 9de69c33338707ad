"""SIGTERM drains: no new requests, running streams finish within ``server.drain_s``, and
those still running then end with an error event; nothing hangs, nothing is cut silently."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_config
from tests.ollama_emulator import OllamaEmulator, Script
from tests.serve_process import ServeProcess, clean_env, free_port
from tests.test_ollama_emulator import quick_reference

FAST = "qwen3:30b-a3b"


def config(directory: Path, ollama: str, drain_s: float) -> Path:
    return write_config(
        directory,
        {
            "server": {"drain_s": drain_s},
            "ollama": {"base_url": ollama, "connect_timeout_s": 1},
            "embedded": {"mode": "never"},
            "memory": {"enabled": False},
            "routing": {
                "classifier": {"embedding": False},
                "warm_pinned": False,
                "queue": {"max_running_per_model": 2},  # both run at once
            },
            "logging": {"decision_log": {"path": str(directory / "decisions.jsonl")}},
        },
    )


class Reader(threading.Thread):
    """One streamed chat request, read to its end in a thread."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.lines: list[str] = []
        self.started = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        body = {"model": FAST, "stream": True, "messages": [{"role": "user", "content": "go"}]}
        try:
            with httpx.stream(
                "POST", self.base_url + "/v1/chat/completions", json=body, timeout=30
            ) as response:
                for line in response.iter_lines():
                    self.lines.append(line)
                    if line.startswith("data: {"):
                        self.started.set()
        except Exception as exc:  # the test reads it: a cut connection must not pass
            self.error = exc
        finally:
            self.started.set()

    def last(self) -> str:
        return [x for x in self.lines if x][-1]

    def data(self) -> list[Any]:
        return [json.loads(x[6:]) for x in self.lines if x.startswith("data: {")]

    def text(self) -> str:
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in self.data() if c.get("choices")
        )


@pytest.mark.slow
def test_sigterm_lets_short_streams_finish_and_ends_long_ones_with_an_error_event(
    tmp_path: Path,
) -> None:
    long_text = " ".join(f"w{i}" for i in range(400))  # ~0.02 s a word: 8 s
    short_text = "one two three four five six"
    machine = quick_reference()
    machine.num_parallel = 2
    with OllamaEmulator(machine) as emulator:
        emulator.enqueue(
            Script(content=long_text, token_delay_s=0.02),
            Script(content=short_text, token_delay_s=0.1),
        )
        port = free_port()
        directory = config(tmp_path / "config", emulator.base_url, drain_s=2.0)
        args = ["--config-dir", str(directory), "--port", str(port)]
        with ServeProcess(args, tmp_path, clean_env(tmp_path), port) as served:
            served.wait_ready()
            long_one, short_one = Reader(served.base_url), Reader(served.base_url)
            long_one.start()
            assert long_one.started.wait(10)
            short_one.start()
            assert short_one.started.wait(10)
            signalled = time.monotonic()
            served.process.send_signal(15)
            time.sleep(0.5)
            with pytest.raises(httpx.TransportError):  # no longer accepting
                httpx.post(served.base_url + "/v1/chat/completions", json={}, timeout=5)
            short_one.join(20)
            long_one.join(20)
            code = served.process.wait(20)
            took = time.monotonic() - signalled
        assert short_one.error is None and long_one.error is None
        # The short answer finished whole, inside the drain.
        assert short_one.text().split() == short_text.split()
        assert short_one.last() == "data: [DONE]"
        assert not any("error" in chunk for chunk in short_one.data())
        # The long one was ended at the deadline, with an error event saying why.
        words = long_one.text().split()
        assert 0 < len(words) < 400
        error = long_one.data()[-1]["error"]
        assert "shutting down" in error["message"]
        assert long_one.last() == "data: [DONE]"
        # Ollama was told: the generation was cancelled, not left running.
        assert emulator.cancelled
        assert code in (0, -15)
        assert took < 2.0 + 6
        stderr = served.stderr()
        assert "draining" in stderr and "drain_deadline" in stderr
