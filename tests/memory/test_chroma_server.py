"""The store against a real Chroma server (``chroma run``), as shared by router replicas."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory_router.memory.embedder import SentenceTransformerEmbedder
from memory_router.memory.indexer import sync_bank
from memory_router.memory.store import VectorStore
from tests.memory.conftest import assert_store_matches_disk, write_bank


def chroma_binary() -> str | None:
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def chroma_url(tmp_path: Path) -> Iterator[str]:
    binary = chroma_binary()
    if binary is None:
        pytest.skip("the `chroma` command (installed with chromadb) is not on this machine")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "chroma.log").open("wb")
    server = subprocess.Popen(
        [
            binary,
            "run",
            "--path",
            str(tmp_path / "server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "chroma.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "chroma run did not answer within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_sync_and_search_through_a_chroma_server(
    chroma_url: str, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    bank = write_bank(tmp_path / "ws")
    store = VectorStore.open(url=chroma_url)
    report = sync_bank(bank, store, embedder, max_bytes=100_000, max_tokens=400)
    assert (report.files_indexed, report.chunks_total) == (6, 24)
    assert assert_store_matches_disk(bank, store) == 24

    # A second client (another router replica) sees the same index, and has nothing to do.
    replica = VectorStore.open(url=chroma_url + "/")
    assert replica.workspaces() == [str(bank.workspace)]
    again = sync_bank(bank, replica, embedder, max_bytes=100_000, max_tokens=400)
    assert (again.files_unchanged, again.files_indexed) == (6, 0)
    hits = replica.query(embedder.embed_query("How many beta testers are there?"), 3)
    assert "memory-bank/progress.md" in [hit.file for hit in hits]
    assert all(hit.workspace == str(bank.workspace) for hit in hits)
    replica.close()
    store.close()
