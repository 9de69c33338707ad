"""The real Cline CLI (cline@3.0.65) carrying a task through the router, turn after turn.

The embedded model is a 270M base model: it answers in text, never with a tool call. In
``--yolo`` mode Cline then re-prompts it ("this run is not complete until you call ...") turn
after turn, which is exactly the traffic we want to carry: each turn resends the whole
conversation with Cline's native tools, streamed, with usage. Cline ignores ``--timeout`` in
that mode, so the test counts finished turns and ends Cline's process group with SIGINT.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import RouterProcess

pytestmark = pytest.mark.e2e

TURNS = 2
DEADLINE_S = 420

MEMORY_BANK = {
    "projectbrief.md": "# Project brief\n\nA todo app for teams, with offline sync.\n",
    "productContext.md": "# Product context\n\nTeams lose track of chores; this fixes it.\n",
    "activeContext.md": "# Active context\n\nWorking on conflict resolution for sync.\n",
    "systemPatterns.md": "# System patterns\n\nEvent sourcing; CRDTs for lists.\n",
    "techContext.md": "# Tech context\n\nTypeScript, SQLite, Node 20.\n",
    "progress.md": "# Progress\n\nLists done; sync in progress.\n",
}


def cline_binary() -> str:
    local = REPO / ".tools" / "cline" / "node_modules" / ".bin" / "cline"
    found = str(local) if local.exists() else shutil.which("cline")
    if found is None:
        pytest.fail("the Cline CLI is not installed: run ./scripts/setup.sh --dev (needs npm)")
    return found


def workspace(root: Path) -> Path:
    ws = root / "todo-app"
    (ws / "memory-bank").mkdir(parents=True)
    for name, text in MEMORY_BANK.items():
        (ws / "memory-bank" / name).write_text(text, encoding="utf-8")
    (ws / ".clinerules").mkdir()
    (ws / ".clinerules" / "memory-bank.md").write_text(
        "Read ALL memory bank files at the start of every task.\n", encoding="utf-8"
    )
    return ws


def cline_env(state: Path) -> dict[str, str]:
    settings = state / "settings" / "global-settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"telemetryOptOut": True, "autoUpdateEnabled": False}))
    # Loopback only: no telemetry, no feature-flag fetches, no update checks.
    return {
        **os.environ,
        "CI": "true",
        "NO_COLOR": "1",
        "CLINE_NO_AUTO_UPDATE": "1",
        "E2E_TEST": "true",
        "CLINE_GLOBAL_SETTINGS_PATH": str(settings),
    }


def signed_in(state: Path, base_url: str) -> tuple[str, list[str], dict[str, str]]:
    """The Cline CLI set up (``cline auth``) to use the router at ``base_url``, its state in
    ``state``: its binary, the arguments naming that state, and its environment."""
    cline = cline_binary()
    env = cline_env(state)
    common = ["--data-dir", str(state), "--config", str(state / "config")]
    subprocess.run(
        [cline, "auth", "-p", "openai-compatible", "-k", "any-key", "-m", "cline-memory-router",
         "-b", base_url + "/v1", *common],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True, timeout=120,
    )  # fmt: skip
    return cline, common, env


def test_cline_carries_turns_through_the_router(
    embedded_router: RouterProcess, tmp_path: Path
) -> None:
    ws = workspace(tmp_path)
    cline, common, env = signed_in(tmp_path / "cline-state", embedded_router.base_url)
    log_before = len(embedded_router.log().splitlines())

    stderr_path = tmp_path / "cline.stderr"
    with stderr_path.open("w") as stderr_file:
        process = subprocess.Popen(
            [cline, *common, "-c", str(ws), "--json", "--yolo",
             "follow your custom instructions and summarise the project"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file,
            text=True, start_new_session=True,
        )  # fmt: skip
    watchdog = threading.Timer(DEADLINE_S, lambda: os.killpg(process.pid, signal.SIGINT))
    watchdog.start()
    events: list[dict[str, Any]] = []
    turns = 0
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            events.append(event)
            inner = event.get("event") or {}
            if event.get("type") == "agent_event" and inner.get("type") == "iteration_end":
                turns += 1
            if event.get("type") in ("error", "run_result") or turns >= TURNS:
                break
    finally:
        watchdog.cancel()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()
    # Cline prints fatal errors as JSON on stderr too.
    stderr_json = [line for line in stderr_path.read_text().splitlines() if line.startswith('{"')]

    fatal = [
        e for e in events
        if e.get("type") == "error"
        or (e.get("event", {}).get("type") == "error" and not e["event"].get("recoverable"))
        or (e.get("type") == "run_result" and e.get("finishReason") == "error")
    ]  # fmt: skip
    assert not fatal, f"Cline reported an error: {fatal}"
    assert not stderr_json, f"Cline printed errors: {stderr_json}"
    assert turns >= TURNS, f"only {turns} turns finished: {events[-3:]}"

    # The router served every one of those turns to the end.
    served = [
        json.loads(line)
        for line in embedded_router.log().splitlines()[log_before:]
        if line.startswith("{") and '"event":"request"' in line.replace(" ", "")
    ]
    finished = [r for r in served if r["outcome"] == "ok" and r["finish"] in ("stop", "length")]
    assert len(finished) >= TURNS, served
    assert all(r["model"] == "embedded/gemma-3-270m" for r in finished)
    # Each turn resent a Cline-sized conversation (system prompt plus its tools).
    assert all(r["prompt_tokens"] > 1000 for r in finished)
