"""Embedding the next group while the store writes this one (``memory.ahead``).

A large run with the ONNX embedder embeds in a child process: the store must end up exactly
as an in-line run leaves it (same ids, same vectors), the child must be gone afterwards, and a
child that dies mid-run must cost nothing but speed. The real embedder, the real store.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory_router.memory import ahead, indexer
from memory_router.memory.chunking import chunk_file
from memory_router.memory.discovery import bank_files
from memory_router.memory.onnx_embedder import OnnxEmbedder
from memory_router.memory.store import VectorStore
from memory_router.memory.types import Bank
from tests.memory.conftest import LIMITS, assert_store_matches_disk, write_bank
from tests.ollama_emulator import OllamaEmulator


@pytest.fixture(scope="module")
def onnx() -> OnnxEmbedder:
    embedder = OnnxEmbedder()
    embedder.embed_query("load once")
    return embedder


@pytest.fixture
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexer, "_GROUP_CHUNKS", 4)  # many groups from the small bank


class Recorder:
    """Every child process started, kept so a test can look at it; ``kill_after`` kills the
    child right after that many messages went to it (the first is its embedder's spec)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kill_after: int | None = None) -> None:
        self.children: list[Any] = []
        self.killed = False
        recorder = self

        class Recorded(ahead._Child):
            def __init__(self, factory: type, spec: dict[str, Any]) -> None:
                self.sent = 0
                super().__init__(factory, spec)
                recorder.children.append(self)

            def send(self, message: object) -> None:
                super().send(message)
                self.sent += 1
                if self.sent == kill_after:  # a request is on its way: the answer never comes
                    self.process.kill()
                    self.process.wait()
                    recorder.killed = True

        monkeypatch.setattr(ahead, "_Child", Recorded)


def vectors(store: VectorStore, bank: Bank) -> dict[str, list[float]]:
    collection = store._get(str(bank.workspace))
    assert collection is not None
    got = collection.get(include=["embeddings"])
    embeddings = got["embeddings"]
    assert embeddings is not None
    return {i: list(map(float, v)) for i, v in zip(got["ids"], embeddings, strict=True)}


def index(bank: Bank, store: VectorStore, embedder: Any, **kwargs: Any) -> int:
    report = indexer.sync_bank(bank, store, embedder, **LIMITS, **kwargs)
    return report.chunks_total


def test_a_large_run_embeds_in_a_child_with_the_same_vectors(
    tmp_path: Path, onnx: OnnxEmbedder, small_groups: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = write_bank(tmp_path / "ws")
    inline = VectorStore.open(path=tmp_path / "inline")
    monkeypatch.setattr(ahead, "BULK_CHUNKS", 10**9)
    total = index(bank, inline, onnx)
    assert total > 3 * indexer._GROUP_CHUNKS  # several groups: the pipeline has work to do

    recorder = Recorder(monkeypatch)
    monkeypatch.setattr(ahead, "BULK_CHUNKS", 1)
    child = VectorStore.open(path=tmp_path / "child")
    assert index(bank, child, onnx) == total
    assert len(recorder.children) == 1
    assert recorder.children[0].process.poll() == 0  # it exited when the run ended
    assert_store_matches_disk(bank, child, **LIMITS)
    expected, got = vectors(inline, bank), vectors(child, bank)
    assert got.keys() == expected.keys()
    for chunk_id, vector in expected.items():
        np.testing.assert_array_equal(np.asarray(got[chunk_id]), np.asarray(vector))


def test_a_child_that_dies_mid_run_costs_only_speed(
    tmp_path: Path, onnx: OnnxEmbedder, small_groups: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = write_bank(tmp_path / "ws")
    recorder = Recorder(monkeypatch, kill_after=3)  # the spec, group 1, group 2: then killed
    monkeypatch.setattr(ahead, "BULK_CHUNKS", 1)
    store = VectorStore.open(path=tmp_path / "store")
    index(bank, store, onnx)
    assert recorder.killed
    assert recorder.children[0].sent == 3  # nothing more was sent to the dead child
    assert_store_matches_disk(bank, store, **LIMITS)
    # The vectors are still the model's: a question finds its file.
    question = onnx.embed_query("What is the maximum app size?")
    hits = store.query(question, 3, workspace=str(bank.workspace))
    assert hits[0].file.endswith("techContext.md")


def test_an_interrupted_run_stops_its_child_at_once(
    tmp_path: Path, onnx: OnnxEmbedder, small_groups: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = write_bank(tmp_path / "ws")
    recorder = Recorder(monkeypatch)
    monkeypatch.setattr(ahead, "BULK_CHUNKS", 1)
    store = VectorStore.open(path=tmp_path / "store")

    def stop(done: int, _total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt  # Ctrl-C while the next group is being embedded

    with pytest.raises(KeyboardInterrupt):
        index(bank, store, onnx, progress=stop)
    # Killed, not waited for: its answer was still coming, and nobody would read it.
    assert recorder.children[0].process.returncode == -signal.SIGKILL
    index(bank, store, onnx)  # the next run finishes the job
    assert_store_matches_disk(bank, store, **LIMITS)


def test_a_small_run_starts_no_child(
    tmp_path: Path, onnx: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = write_bank(tmp_path / "ws")
    recorder = Recorder(monkeypatch)
    store = VectorStore.open(path=tmp_path / "store")
    assert index(bank, store, onnx) < ahead.BULK_CHUNKS
    assert recorder.children == []
    assert_store_matches_disk(bank, store, **LIMITS)


class ElsewhereEmbedder:
    """Vectors that come from another process (as Ollama's would); records the caller."""

    name = "elsewhere"
    dimension = 8
    runs_elsewhere = True

    def __init__(self) -> None:
        self.threads: list[str] = []

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        import threading

        self.threads.append(threading.current_thread().name)
        return [[float(len(text)), *([1.0] * 7)] for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_an_embedder_that_runs_elsewhere_is_awaited_from_a_thread(
    tmp_path: Path, small_groups: None
) -> None:
    bank = write_bank(tmp_path / "ws")
    store = VectorStore.open(path=tmp_path / "store")
    embedder = ElsewhereEmbedder()
    index(bank, store, embedder)
    assert embedder.threads and all(name.startswith("embed-ahead") for name in embedder.threads)
    assert_store_matches_disk(bank, store, **LIMITS)
    files, _ = bank_files(bank, LIMITS["max_bytes"])
    chunks = {
        chunk.id: chunk
        for file in files
        for chunk in chunk_file(bank, file.rel_path, file.text, file.sha256, LIMITS["max_tokens"])
    }
    for chunk_id, vector in vectors(store, bank).items():  # each vector is its own chunk's
        assert vector[0] == pytest.approx(len(indexer.embedding_text(chunks[chunk_id])), rel=1e-5)


def test_ollama_embeddings_are_fetched_from_a_thread(
    tmp_path: Path, small_groups: None, emulator: OllamaEmulator
) -> None:
    from memory_router.memory.embedder import OllamaEmbedder

    assert OllamaEmbedder.runs_elsewhere
    bank = write_bank(tmp_path / "ws")
    store = VectorStore.open(path=tmp_path / "store")
    index(bank, store, OllamaEmbedder(emulator.base_url, "qwen3:30b-a3b"))
    assert_store_matches_disk(bank, store, **LIMITS)
    assert sum(r.path == "/api/embed" for r in emulator.requests) > 3  # one per group or more
