"""Who may reach the memory bank over HTTP: only when it is on, only under the allowed roots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memory_router.memory.embedder import SentenceTransformerEmbedder
from memory_router.memory.service import MemoryService
from memory_router.settings import MemorySettings, load_settings
from tests.conftest import RouterFactory, RouterThread, write_config
from tests.memory.conftest import write_bank
from tests.memory.test_memory_api import memory_config
from tests.ollama_emulator import OllamaEmulator, fast_profile

QUESTION = "which bug made tide predictions an hour off?"


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


def test_disabled_memory_answers_an_error_and_writes_nothing(
    tmp_path: Path, emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    store = tmp_path / "store"
    workspace = write_bank(tmp_path / "projects" / "harborlight").workspace
    router = make_router(
        emulator.base_url,
        memory=memory_config(tmp_path, enabled=False, workspace_roots=[str(workspace)]),
    )
    calls = [
        ("POST", "/v1/memory/search", {"query": QUESTION}),
        ("POST", "/v1/memory/search", {"query": QUESTION, "workspace": str(workspace)}),
        ("GET", "/v1/memory/status", None),
        ("GET", "/v1/memory/banks", None),
        ("POST", "/v1/memory/reindex", {}),
    ]
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        for method, path, body in calls:
            response = client.request(method, path, json=body)
            assert response.status_code == 404, (path, response.text)
            error = error_of(response)
            assert error["code"] == "memory_disabled", path
            assert "memory.enabled" in error["message"], path
        # A chat naming the bank's workspace does not index it either.
        chat = {
            "model": "cline-memory-router",
            "messages": [
                {"role": "system", "content": f"Current Working Directory: {workspace}\n"},
                {"role": "user", "content": "hi"},
            ],
        }
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
    router.stop()
    assert not store.exists()


@pytest.fixture(scope="module")
def roots(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> Iterator[tuple[str, Path, Path]]:
    """A router allowed under tmp/projects, whose store also holds a bank from elsewhere
    (indexed by the CLI, which the roots do not bind); yields (url, inside, outside)."""
    tmp_path = tmp_path_factory.mktemp("roots")
    inside = write_bank(tmp_path / "projects" / "harborlight").workspace
    outside = write_bank(tmp_path / "elsewhere" / "secret").workspace
    (tmp_path / "projects" / "link").symlink_to(outside, target_is_directory=True)
    memory = memory_config(tmp_path, allowed_roots=[str(tmp_path / "projects")])
    cli = MemoryService(MemorySettings.model_validate(memory), "http://127.0.0.1:9")
    cli._embedder = embedder
    for workspace in (inside, outside):
        cli.sync(cli.bank_for(workspace, trusted=True))
    cli.store.close()
    with OllamaEmulator(fast_profile()) as emulator:
        server = {
            "ollama": {"base_url": emulator.base_url, "connect_timeout_s": 1},
            "embedded": {"mode": "never"},
            "logging": {"level": "WARNING", "decision_log": {"enabled": False}},
            "memory": memory,
        }
        settings = load_settings(
            write_config(tmp_path / "config", server), environ={}, env_file=None
        )
        router = RouterThread(settings).start()
        try:
            yield router.base_url, inside, outside
        finally:
            router.stop()


def test_an_allowed_workspace_is_searchable(roots: tuple[str, Path, Path]) -> None:
    url, inside, _ = roots
    body = {"query": QUESTION, "workspace": str(inside), "k": 3}
    response = httpx.post(url + "/v1/memory/search", json=body, timeout=60)
    assert response.status_code == 200, response.text
    hits = response.json()["data"]
    assert hits and {hit["workspace"] for hit in hits} == {str(inside)}


@pytest.mark.parametrize(
    "shape", ["system_dir", "dot_dot", "relative_dot_dot", "symlink_out", "outside_bank"]
)
def test_a_workspace_outside_the_roots_is_403(roots: tuple[str, Path, Path], shape: str) -> None:
    url, inside, outside = roots
    workspace = {
        "system_dir": "/etc",
        "dot_dot": f"{inside}/../../elsewhere/secret",
        "relative_dot_dot": "../../",
        "symlink_out": str(inside.parent / "link"),
        "outside_bank": str(outside),
    }[shape]
    body = {"query": QUESTION, "workspace": workspace, "k": 3}
    response = httpx.post(url + "/v1/memory/search", json=body, timeout=60)
    assert response.status_code == 403, response.text
    error = error_of(response)
    assert error["code"] == "workspace_not_allowed"
    assert error["param"] == "workspace"
    assert str(inside.parent) in error["message"]  # names the allowed root


def test_a_search_across_banks_sees_only_the_allowed_ones(roots: tuple[str, Path, Path]) -> None:
    url, inside, _ = roots

    body = {"query": QUESTION, "k": 20}
    response = httpx.post(url + "/v1/memory/search", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert {hit["workspace"] for hit in response.json()["data"]} == {str(inside)}


@pytest.mark.parametrize("workspace", ["/tmp/a\x00b", "\x00", "/etc/\x00/.."])
def test_a_nul_byte_in_the_workspace_is_400(roots: tuple[str, Path, Path], workspace: str) -> None:
    url, _, _ = roots
    body = {"query": QUESTION, "workspace": workspace}
    response = httpx.post(url + "/v1/memory/search", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "workspace"
    assert "NUL" in error["message"]
