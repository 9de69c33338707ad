"""Searches answer while an index run of the same workspace is in progress."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from memory_router.memory import indexer
from memory_router.memory.embedder import SentenceTransformerEmbedder
from memory_router.memory.indexer import sync_bank
from memory_router.memory.store import VectorStore
from memory_router.memory.types import Chunk, SyncReport
from tests.memory.conftest import write_bank


class SlowStore(VectorStore):
    """Takes its time over every write, as a big bank on a slow disk would."""

    def replace_files(
        self,
        workspace: str | Path,
        files: Sequence[tuple[str, Sequence[Chunk], Sequence[Sequence[float]]]],
    ) -> None:
        time.sleep(0.12)
        super().replace_files(workspace, files)


def test_search_while_a_long_sync_runs(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer, "_GROUP_CHUNKS", 2)  # two files a write, as in a big bank
    texts = {
        f"harbor{n:02d}.md": f"# Harbor {n}\n\nBerth {n} has shore power and a fuel dock.\n"
        for n in range(20)
    }
    bank = write_bank(tmp_path / "ws", texts)
    plain = VectorStore.open(path=tmp_path / "store")
    slow = SlowStore(plain.client, plain.where)
    first_file = threading.Event()
    reports: list[SyncReport] = []

    def progress(done: int, total: int) -> None:
        if done >= 1:
            first_file.set()

    def run() -> None:
        reports.append(
            sync_bank(bank, slow, embedder, max_bytes=100_000, max_tokens=400, progress=progress)
        )

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert first_file.wait(timeout=60)
        assert slow.write_lock(str(bank.workspace)).locked()  # the run holds its lock
        started = time.perf_counter()
        hits = plain.query(
            embedder.embed_query("Which berth has a fuel dock?"), 3, str(bank.workspace)
        )
        took = time.perf_counter() - started
        assert worker.is_alive(), "the search waited for the whole index run"
        assert took < 2.0
        assert hits and all(hit.file.startswith("memory-bank/harbor") for hit in hits)
        assert all("fuel dock" in hit.text for hit in hits)
    finally:
        worker.join(timeout=60)
        plain.close()
    assert reports[0].files_indexed == 20 and reports[0].chunks_total == 20


def test_a_query_cuts_in_between_document_batches(embedder: SentenceTransformerEmbedder) -> None:
    texts = [f"Tide table entry number {i} for the harbor entrance." for i in range(480)]
    done = threading.Event()

    def embed_all() -> None:
        assert len(embedder.embed_documents(texts)) == 480
        done.set()

    worker = threading.Thread(target=embed_all)
    worker.start()
    try:
        time.sleep(0.3)  # the worker is now inside its 15 model batches
        vector = embedder.embed_query("harbor entrance tides")
        assert not done.is_set(), "the query waited for every document batch"
        assert len(vector) == 384
    finally:
        worker.join(timeout=120)
    assert done.is_set()
