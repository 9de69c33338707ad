"""The memory bank through the router: HTTP search and status, the watcher, request banks."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO, RouterFactory
from tests.memory.conftest import write_bank
from tests.ollama_emulator import OllamaEmulator

QUESTION = "how are conflicting offline edits resolved?"


def wait_for(predicate: Any, timeout: float, step: float = 0.1) -> float:
    """Poll until ``predicate()`` is true; return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(step)
    return time.monotonic() - started


def memory_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "vector_store_path": str(tmp_path / "store"),
        "embedder": "sentence-transformers",
        "debounce_ms": 100,
        **extra,
    }


def test_search_status_and_watch(
    tmp_path: Path, emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    workspace = tmp_path / "tidewater"
    shutil.copytree(REPO / "examples" / "tidewater", workspace)
    router = make_router(
        emulator.base_url, memory=memory_config(tmp_path, workspace_roots=[str(workspace)])
    )
    client = httpx.Client(base_url=router.base_url, timeout=60)

    def bank_status() -> dict[str, Any]:
        banks = client.get("/v1/memory/status").json()["banks"]
        return banks[0] if banks else {}

    wait_for(lambda: bank_status().get("chunks", 0) > 0 and bank_status().get("watched"), 60)
    status = client.get("/v1/memory/status").json()
    assert status["embedding_model"].startswith("all-MiniLM-L6-v2")
    assert status["banks"][0]["workspace"] == str(workspace.resolve())
    assert status["banks"][0]["files"] == 6

    hits = client.post("/v1/memory/search", json={"query": QUESTION, "k": 3}).json()["data"]
    assert hits[0]["file"] == "memory-bank/systemPatterns.md"
    assert hits[0]["heading_path"] == ["System Patterns", "Conflict resolution"]
    assert hits[0]["rank"] == 1 and 0 < hits[0]["score"] <= 1
    assert hits[0]["first_line"] < hits[0]["last_line"]

    # An edit is searchable within 2 seconds, without re-embedding the other files.
    time.sleep(0.5)  # let the watcher settle on its inotify watches
    (workspace / "memory-bank" / "progress.md").write_text(
        "# Progress\n\n## Known issues\nThe harbour crane loses its calibration at low tide.\n"
    )

    def crane_found() -> bool:
        data = client.post(
            "/v1/memory/search", json={"query": "crane calibration at low tide", "k": 1}
        ).json()["data"]
        return bool(data) and "crane" in data[0]["text"]

    took = wait_for(crane_found, timeout=2.0, step=0.05)
    print(f"edit searchable after {took:.2f}s")

    bad = client.post("/v1/memory/search", json={"query": "", "k": 3})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "query"
    client.close()


def test_workspace_named_by_a_request_is_indexed_when_allowed(
    tmp_path: Path, emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    allowed = tmp_path / "projects"
    bank = write_bank(allowed / "todo-app")
    outside = write_bank(tmp_path / "elsewhere" / "app")
    router = make_router(
        emulator.base_url, memory=memory_config(tmp_path, allowed_roots=[str(allowed)])
    )
    body = json.loads((REPO / "tests/fixtures/cline/native_turn1.json").read_text())
    for workspace in (bank.workspace, outside.workspace):
        prompt = body["messages"][0]["content"]
        start = prompt.index("Working Directory: ") + len("Working Directory: ")
        end = prompt.index("\n", start)
        body["messages"][0]["content"] = prompt[:start] + str(workspace) + prompt[end:]
        reply = httpx.post(router.base_url + "/v1/chat/completions", json=body, timeout=30)
        assert reply.status_code == 200

    def indexed() -> list[str]:
        status = httpx.get(router.base_url + "/v1/memory/status", timeout=30).json()
        return [b["workspace"] for b in status["banks"] if b["chunks"] > 0]

    wait_for(lambda: indexed() == [str(bank.workspace)], timeout=60, step=0.25)
    time.sleep(0.5)
    assert indexed() == [str(bank.workspace)]  # the one outside the allowed roots stays out
