"""A real Cline task is one session to the router, from its first answer on.

The real Cline CLI (cline@3.0.65, ``--yolo``) talks to the router in front of the Ollama
emulator, which answers with scripted tool calls: read the memory bank, run a command, submit.
The router makes each call's id (the emulator, as Ollama before 0.12, sends none); Cline sends
the answers back in every later request, and the router keys the task by the first of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RouterFactory
from tests.e2e.test_cline_cli import MEMORY_BANK, signed_in, workspace
from tests.ollama_emulator import OllamaEmulator, Script

pytestmark = pytest.mark.e2e

DEADLINE_S = 180


def decisions(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The decision log's records once it holds ``count`` (it is written in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.1)


def test_a_cline_task_keeps_one_session_from_its_first_answer(
    emulator: OllamaEmulator, make_router: RouterFactory, tmp_path: Path
) -> None:
    router = make_router(emulator.base_url)
    ws = workspace(tmp_path)
    bank = [{"path": str(ws / "memory-bank" / name)} for name in MEMORY_BANK]
    emulator.enqueue(
        Script(
            content="I'll start by reading the memory bank.",
            tool_calls=[{"name": "read_files", "arguments": {"files": bank}}],
        ),
        Script(
            content="Let me see what else is in the project.",
            tool_calls=[{"name": "run_commands", "arguments": {"commands": ["ls memory-bank"]}}],
        ),
        Script(
            tool_calls=[
                {
                    "name": "submit_and_exit",
                    "arguments": {
                        "summary": "A todo app for teams with offline sync; sync is in progress.",
                        "verified": True,
                    },
                }
            ]
        ),
    )
    cline, common, env = signed_in(tmp_path / "cline-state", router.base_url)
    process = subprocess.Popen(
        [cline, *common, "-c", str(ws), "--json", "--yolo",
         "follow your custom instructions and summarise the project"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True,
    )  # fmt: skip
    results: list[dict[str, Any]] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + DEADLINE_S
        for line in process.stdout:
            if line.startswith("{") and json.loads(line).get("type") == "run_result":
                results.append(json.loads(line))
                break
            if time.monotonic() > deadline:
                break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()
    assert results, "Cline did not finish the task"

    chats = [r.json for r in emulator.requests if r.path == "/api/chat" and r.json.get("messages")]
    assert len(chats) == 3, [len(c["messages"]) for c in chats]  # three answers, no more
    records = decisions(router.settings.config.logging.decision_log.path, 3)
    assert [r["outcome"] for r in records] == ["ok", "ok", "ok"]
    first, second, third = (r["session"] for r in records)
    # The first request has no answer yet; from the first answer on, one key.
    assert second != first and third == second
    assert records[1]["signals"]["sticky"] == records[0]["model"]  # the first one's choice
    assert all("contested" not in r["signals"] for r in records)  # never alongside itself
