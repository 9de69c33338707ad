"""Incremental sync: unchanged files cost nothing, changes replace chunks, removals delete."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memory_router.memory import ahead, indexer
from memory_router.memory.chunking import chunk_file
from memory_router.memory.discovery import read_bank_file
from memory_router.memory.indexer import embedding_text, sync_bank, sync_paths
from memory_router.memory.store import FileState, VectorStore, collection_name
from memory_router.memory.types import Bank, Chunk, Skipped, SyncReport
from tests.memory.conftest import BANK_FILES, LIMITS, CountingEmbedder, assert_store_matches_disk


def texts_of(bank: Bank, *names: str, max_tokens: int = 400) -> list[str]:
    """The embedding texts of these files' chunks, sorted (embedding order is by length)."""
    out = []
    for name in names:
        found = read_bank_file(bank, f"memory-bank/{name}", 100_000)
        assert not isinstance(found, Skipped) and found is not None
        chunks = chunk_file(bank, found.rel_path, found.text, found.sha256, max_tokens)
        out += [embedding_text(chunk) for chunk in chunks]
    return sorted(out)


def test_first_sync_then_nothing_to_do(
    bank: Bank, store: VectorStore, counting: CountingEmbedder
) -> None:
    progress: list[tuple[int, int]] = []
    report = sync_bank(bank, store, counting, progress=lambda *p: progress.append(p), **LIMITS)
    ws = str(bank.workspace)
    assert (report.workspace, report.files_seen, report.files_indexed) == (ws, 6, 6)
    assert (report.files_unchanged, report.files_deleted, report.skipped) == (0, 0, [])
    assert (report.chunks_added, report.chunks_deleted, report.chunks_total) == (24, 0, 24)
    assert progress == [(i, 6) for i in range(7)]
    assert sorted(counting.documents) == texts_of(bank, *BANK_FILES)
    assert counting.calls == 1  # 24 chunks: one embedding group
    assert assert_store_matches_disk(bank, store) == 24

    counting.documents.clear()
    progress.clear()
    again = sync_bank(bank, store, counting, progress=lambda *p: progress.append(p), **LIMITS)
    assert counting.documents == [] and counting.calls == 1  # no new embedding call
    assert (again.files_seen, again.files_unchanged, again.files_indexed) == (6, 6, 0)
    assert (again.chunks_added, again.chunks_deleted, again.chunks_total) == (0, 0, 24)
    assert progress == [(6, 6)]


def test_changed_deleted_and_newly_skipped_files(
    bank: Bank, store: VectorStore, counting: CountingEmbedder
) -> None:
    sync_bank(bank, store, counting, **LIMITS)
    ws = str(bank.workspace)
    old_ids = {s.id for s in store.stored(ws, "memory-bank/progress.md")}
    counting.documents.clear()

    extra = "\n## Release Notes\n\nThe 0.9.3 beta adds a tide table printout.\n"
    (bank.root / "progress.md").write_text(BANK_FILES["progress.md"] + extra, encoding="utf-8")
    (bank.root / "activeContext.md").unlink()
    (bank.root / "techContext.md").write_bytes(b"\x00\x01binary now")
    report = sync_bank(bank, store, counting, **LIMITS)

    # Only the section that changed is embedded again; the file's other chunks keep their
    # stored vectors (keyed by content and heading path).
    assert counting.documents == [
        "Release Notes\n## Release Notes\n\nThe 0.9.3 beta adds a tide table printout."
    ]
    assert (report.files_seen, report.files_indexed, report.files_unchanged) == (4, 1, 3)
    assert report.files_deleted == 2
    assert report.skipped == [Skipped("memory-bank/techContext.md", "binary (contains NUL bytes)")]
    assert (report.chunks_added, report.chunks_deleted, report.chunks_total) == (5, 12, 17)
    new_ids = {s.id for s in store.stored(ws, "memory-bank/progress.md")}
    assert len(new_ids) == 5 and new_ids.isdisjoint(old_ids)
    assert set(store.indexed_files(ws)) == {
        "memory-bank/progress.md",
        "memory-bank/productContext.md",
        "memory-bank/projectbrief.md",
        "memory-bank/systemPatterns.md",
    }
    assert assert_store_matches_disk(bank, store) == 17
    # And every vector, reused or new, is the embedding of its chunk's text.
    file = read_bank_file(bank, "memory-bank/progress.md", LIMITS["max_bytes"])
    assert file is not None and not isinstance(file, Skipped)
    chunks = chunk_file(bank, file.rel_path, file.text, file.sha256, LIMITS["max_tokens"])
    vectors = store.vectors_of(ws, "memory-bank/progress.md")
    fresh = counting.embed_documents([embedding_text(chunk) for chunk in chunks])
    for chunk, expected in zip(chunks, fresh, strict=True):
        key = (chunk.content_hash, json.dumps(list(chunk.heading_path), ensure_ascii=False))
        got = vectors[key]
        assert sum(a * b for a, b in zip(got, expected, strict=True)) > 0.999


def test_half_written_file_is_rewritten(
    bank: Bank, store: VectorStore, counting: CountingEmbedder
) -> None:
    sync_bank(bank, store, counting, **LIMITS)
    ws = str(bank.workspace)
    victim = store.stored(ws, "memory-bank/systemPatterns.md")[2]
    raw = store.client.get_collection(collection_name(ws), embedding_function=None)
    raw.delete(ids=[victim.id])
    state = store.indexed_files(ws)["memory-bank/systemPatterns.md"]
    assert state == FileState(victim.file_hash, 4, 3)
    counting.documents.clear()
    report = sync_bank(bank, store, counting, **LIMITS)
    # The file is rewritten whole; only the lost chunk needs embedding again.
    assert counting.documents == [f"{victim.heading_path[-1]}\n{victim.text}"]
    assert (report.files_indexed, report.chunks_deleted, report.chunks_added) == (1, 3, 4)
    assert assert_store_matches_disk(bank, store) == 24


def test_empty_file_costs_nothing(
    bank: Bank, store: VectorStore, counting: CountingEmbedder
) -> None:
    (bank.root / "empty.md").write_text("", encoding="utf-8")
    (bank.root / "blank.md").write_text("\n  \n", encoding="utf-8")
    progress: list[tuple[int, int]] = []
    first = sync_bank(bank, store, counting, progress=lambda *p: progress.append(p), **LIMITS)
    assert (first.files_seen, first.files_indexed, first.files_unchanged) == (8, 6, 2)
    assert progress == [(i, 8) for i in range(9)]  # blank files count as done too
    counting.documents.clear()
    second = sync_bank(bank, store, counting, **LIMITS)
    assert (second.files_indexed, second.files_unchanged, counting.documents) == (0, 8, [])
    # A file emptied after indexing loses its chunks.
    (bank.root / "progress.md").write_text("", encoding="utf-8")
    calls = counting.calls
    third = sync_bank(bank, store, counting, **LIMITS)
    assert (third.files_indexed, third.chunks_deleted, third.chunks_total) == (1, 4, 20)
    assert counting.documents == [] and counting.calls == calls
    assert assert_store_matches_disk(bank, store) == 20


def test_files_are_chunked_group_by_group_while_earlier_groups_are_written(
    bank: Bank, store: VectorStore, counting: CountingEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunking a big bank takes seconds: the first group is written long before the last
    # file is chunked (only enough is chunked up front to tell a bulk run from a small one).
    events: list[str] = []
    real_chunk, real_replace = indexer.chunk_file, store.replace_files

    def chunk_file(_bank: Bank, rel_path: str, *args: Any) -> list[Chunk]:
        events.append(f"chunk {rel_path}")
        return real_chunk(_bank, rel_path, *args)

    def replace_files(workspace: str, writes: Any) -> None:
        events.append("write " + " ".join(rel for rel, _, _ in writes))
        real_replace(workspace, writes)

    monkeypatch.setattr(indexer, "chunk_file", chunk_file)
    monkeypatch.setattr(store, "replace_files", replace_files)
    monkeypatch.setattr(indexer, "_GROUP_CHUNKS", 4)
    monkeypatch.setattr(ahead, "BULK_CHUNKS", 8)
    report = sync_bank(bank, store, counting, **LIMITS)
    assert report.files_indexed == 6 and assert_store_matches_disk(bank, store) == 24
    first_write = next(i for i, e in enumerate(events) if e.startswith("write"))
    last_chunk = max(i for i, e in enumerate(events) if e.startswith("chunk"))
    assert first_write < last_chunk, events
    assert sum(e.startswith("chunk") for e in events) == 6  # each file chunked once


def test_new_settings_rebuild_the_index(
    bank: Bank, store: VectorStore, counting: CountingEmbedder
) -> None:
    sync_bank(bank, store, counting, **LIMITS)
    counting.documents.clear()
    report = sync_bank(bank, store, counting, max_bytes=100_000, max_tokens=40)
    assert report.files_indexed == 6 and report.files_unchanged == 0
    assert sorted(counting.documents) == texts_of(bank, *BANK_FILES, max_tokens=40)
    total = assert_store_matches_disk(bank, store, max_tokens=40)
    assert total > 24 and report.chunks_total == total
    # A watcher event under new settings cannot patch one file into a rebuilt collection:
    # it refills the whole bank.
    partial = sync_paths(
        bank, store, counting, ["memory-bank/progress.md"], max_bytes=100_000, max_tokens=400
    )
    assert (partial.files_seen, partial.files_indexed, partial.chunks_total) == (6, 6, 24)
    assert assert_store_matches_disk(bank, store) == 24


def test_sync_paths_touches_only_the_given_files(
    bank: Bank, store: VectorStore, counting: CountingEmbedder
) -> None:
    sync_bank(bank, store, counting, **LIMITS)
    ws = str(bank.workspace)
    counting.documents.clear()
    (bank.root / "progress.md").write_text("# Progress\n\nAll done.\n", encoding="utf-8")
    (bank.root / "activeContext.md").unlink()
    (bank.root / "productContext.md").write_text("# Product\n\nChanged.\n", encoding="utf-8")
    report = sync_paths(
        bank,
        store,
        counting,
        ["memory-bank/progress.md", str(bank.root / "activeContext.md")],
        **LIMITS,
    )
    assert counting.documents == ["Progress\n# Progress\n\nAll done."]
    assert report == SyncReport(
        workspace=ws,
        files_seen=1,
        files_indexed=1,
        files_deleted=1,
        chunks_added=1,
        chunks_deleted=8,
        chunks_total=17,
        seconds=report.seconds,
    )
    # The unlisted change waits for its own event (or a full sync).
    product = store.indexed_files(ws)["memory-bank/productContext.md"]
    assert product.present == 4
    assert not product.is_complete(read_sha(bank, "productContext.md"))
    sync_bank(bank, store, counting, **LIMITS)
    assert assert_store_matches_disk(bank, store) == 14

    counting.documents.clear()
    unchanged = sync_paths(bank, store, counting, ["memory-bank/projectbrief.md"], **LIMITS)
    assert (unchanged.files_unchanged, unchanged.files_indexed, counting.documents) == (1, 0, [])


def test_sync_paths_with_folders(
    bank: Bank, store: VectorStore, counting: CountingEmbedder
) -> None:
    sync_bank(bank, store, counting, **LIMITS)
    features = bank.root / "features"
    features.mkdir()
    (features / "search.md").write_text("# Search\n\nStation search by name.\n", encoding="utf-8")
    (features / "export.md").write_text("# Export\n\nGPX and KML.\n", encoding="utf-8")
    added = sync_paths(bank, store, counting, ["memory-bank/features"], **LIMITS)
    assert (added.files_seen, added.files_indexed, added.chunks_added) == (2, 2, 2)
    assert assert_store_matches_disk(bank, store) == 26
    shutil.rmtree(features)
    removed = sync_paths(bank, store, counting, ["memory-bank/features"], **LIMITS)
    assert (removed.files_deleted, removed.chunks_deleted, removed.chunks_total) == (2, 2, 24)
    assert assert_store_matches_disk(bank, store) == 24


def read_sha(bank: Bank, name: str) -> str:
    found = read_bank_file(bank, f"memory-bank/{name}", 100_000)
    assert found is not None and not isinstance(found, Skipped)
    return found.sha256


def test_importing_the_memory_part_loads_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import memory_router.memory.indexer, memory_router.memory.store\n"
        "import memory_router.memory.embedder, memory_router.memory.chunking\n"
        "import memory_router.memory.discovery, memory_router.tokens\n"
        "heavy = ['torch', 'chromadb', 'sentence_transformers', 'transformers', 'tiktoken',\n"
        "         'langchain_text_splitters', 'numpy', 'onnxruntime']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "[]"


def test_indexed_files_of_named_files_match_the_full_listing(
    bank: Bank, store: VectorStore, counting: CountingEmbedder
) -> None:
    sync_bank(bank, store, counting, **LIMITS)
    ws = str(bank.workspace)
    everything = store.indexed_files(ws)
    named = ["memory-bank/progress.md", "memory-bank/techContext.md", "memory-bank/gone.md"]
    assert store.indexed_files(ws, named) == {f: everything[f] for f in named[:2]}
    assert store.indexed_files(ws, named[:1]) == {named[0]: everything[named[0]]}
    assert store.indexed_files(ws, []) == {}
