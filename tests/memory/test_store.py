"""The Chroma store on its own: names, the manifest, replace/delete, queries, fingerprints."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from memory_router.errors import BackendUnavailable
from memory_router.memory.chunking import chunk_file
from memory_router.memory.store import FileState, VectorStore, collection_name
from memory_router.memory.types import Bank, Chunk

VALID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
WS = "/home/dev/projects/harbor"
BANK = Bank(workspace=Path(WS), root=Path(WS) / "memory-bank")


def chunks_of(file: str, text: str, workspace: str = WS) -> list[Chunk]:
    bank = Bank(workspace=Path(workspace), root=Path(workspace) / "memory-bank")
    return chunk_file(bank, file, text, hashlib.sha256(text.encode()).hexdigest(), 400)


def vectors(chunks: list[Chunk], axis: int = 0) -> list[list[float]]:
    # Unit vectors in 4 dimensions: chunk i of a file points a little off ``axis``.
    out = []
    for i, _ in enumerate(chunks):
        vector = [0.0, 0.0, 0.0, 0.0]
        vector[axis] = 1.0
        vector[(axis + 1) % 4] = 0.1 * i
        norm = sum(x * x for x in vector) ** 0.5
        out.append([x / norm for x in vector])
    return out


DOC_A = "# Alpha\nfirst\n\n## One\nuno\n\n## Two\ndos\n"
DOC_B = "# Beta\nsecond\n"


def test_collection_names_are_valid_stable_and_distinct() -> None:
    workspaces = [
        "/home/dev/projects/harbor",
        "/home/dev/projects/harbor/",
        "/home/dev/other/harbor",
        "/" + "/".join(f"very-long-folder-name-{i}" for i in range(40)),
        "/home/zoë/プロジェクト/app",
        "/home/zoë/プロジェクト/アプリ",
        "/tmp/a b/!!!",
        "/tmp/a b/???",
        "/tmp/..x../--y--",
        "C:\\Users\\me\\My Project",
        "/",
        "",
    ]
    names = [collection_name(ws) for ws in workspaces]
    for ws, name in zip(workspaces, names, strict=True):
        assert VALID.match(name), (ws, name)
        assert ".." not in name
        assert name == collection_name(ws)
    assert len(set(names)) == len(names)
    assert names[0] == "mb-projects-harbor-" + hashlib.sha1(WS.encode()).hexdigest()[:12]
    assert names[4].startswith("mb-app-")  # the Japanese part folds away; the hash stays
    assert collection_name("/home/zoë").startswith("mb-home-zoe-")
    assert len(names[3]) == len("mb-") + 40 + 1 + 12
    assert collection_name("/") == "mb-" + hashlib.sha1(b"/").hexdigest()[:12]


def test_replace_manifest_and_delete(store: VectorStore) -> None:
    a, b = chunks_of("memory-bank/a.md", DOC_A), chunks_of("memory-bank/b.md", DOC_B)
    assert store.indexed_files(WS) == {} and store.count(WS) == 0
    store.replace_file(WS, "memory-bank/a.md", a, vectors(a))
    store.replace_file(WS, "memory-bank/b.md", b, vectors(b, axis=2))
    assert store.indexed_files(WS) == {
        "memory-bank/a.md": FileState(a[0].file_hash, 3, 3),
        "memory-bank/b.md": FileState(b[0].file_hash, 1, 1),
    }
    assert store.count(WS) == 4
    assert store.workspaces() == [WS]
    stored = store.stored(WS, "memory-bank/a.md")
    assert [(s.id, s.text, s.chunk_index, s.heading_path) for s in stored] == [
        (c.id, c.text, i, c.heading_path) for i, c in enumerate(a)
    ]
    assert [(s.first_line, s.last_line) for s in stored] == [(1, 2), (4, 5), (7, 8)]

    # A new version replaces the old chunks entirely.
    new_text = DOC_A.replace("dos", "tres")
    a2 = chunks_of("memory-bank/a.md", new_text)
    store.replace_file(WS, "memory-bank/a.md", a2, vectors(a2))
    assert {s.id for s in store.stored(WS, "memory-bank/a.md")} == {c.id for c in a2}
    assert store.indexed_files(WS)["memory-bank/a.md"] == FileState(a2[0].file_hash, 3, 3)

    store.delete_file(WS, "memory-bank/a.md")
    assert list(store.indexed_files(WS)) == ["memory-bank/b.md"]
    assert store.count(WS) == 1
    store.drop(WS)
    assert store.workspaces() == [] and store.count(WS) == 0
    store.drop(WS)  # dropping twice is fine


def test_file_state_spots_half_written_and_mixed_files(store: VectorStore) -> None:
    a = chunks_of("memory-bank/a.md", DOC_A)
    x = chunks_of("memory-bank/x.md", DOC_B)
    store.replace_file(WS, "memory-bank/x.md", x, vectors(x))  # an unrelated, complete file
    # A run killed before the marker (chunk 0) was written: two of three chunks.
    upsert_raw(store, a[1:], indexes=[1, 2])
    state = store.indexed_files(WS)["memory-bank/a.md"]
    assert state == FileState(a[0].file_hash, 3, 2)
    assert not state.is_complete(a[0].file_hash)
    assert store.indexed_files(WS)["memory-bank/x.md"] == FileState(x[0].file_hash, 1, 1)

    # Old-version chunks next to a complete new version: the hashes disagree.
    store.replace_file(WS, "memory-bank/a.md", a, vectors(a))
    old = chunks_of("memory-bank/a.md", "# Old\nversion\n")
    upsert_raw(store, old, indexes=[5])
    state = store.indexed_files(WS)["memory-bank/a.md"]
    assert state.file_hash is None and state.present == 4
    assert not state.is_complete(a[0].file_hash)


def test_an_interrupted_replace_leaves_no_marker(
    store: VectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "\n\n".join(f"# H{i}\nline {i}" for i in range(5))
    chunks = chunks_of("memory-bank/a.md", text)
    store.replace_file(WS, "memory-bank/a.md", chunks, vectors(chunks))
    assert store.indexed_files(WS)["memory-bank/a.md"].is_complete(chunks[0].file_hash)
    new = chunks_of("memory-bank/a.md", text + "\n\n# H5\nline 5\n")
    store._max_batch = 2  # three writes for six chunks: the kill lands in the last
    real_create = store._create
    calls = []

    def create(workspace: str | Path) -> Any:
        collection = real_create(workspace)
        real_upsert = collection.upsert

        def upsert(**kwargs: Any) -> None:
            calls.append([meta["chunk_index"] for meta in kwargs["metadatas"]])
            if len(calls) == 3:
                raise KeyboardInterrupt("killed")
            real_upsert(**kwargs)

        monkeypatch.setattr(collection, "upsert", upsert)
        return collection

    monkeypatch.setattr(store, "_create", create)
    with pytest.raises(KeyboardInterrupt):
        store.replace_file(WS, "memory-bank/a.md", new, vectors(new))
    assert calls == [[1, 2], [3, 4], [5, 0]]  # the marker goes last
    state = store.indexed_files(WS)["memory-bank/a.md"]
    assert state == FileState(new[0].file_hash, 6, 4)
    assert not state.is_complete(new[0].file_hash)


def test_strays_of_an_interrupted_delete_are_still_listed(store: VectorStore) -> None:
    a, b = chunks_of("memory-bank/a.md", DOC_A), chunks_of("memory-bank/b.md", DOC_B)
    store.replace_file(WS, "memory-bank/a.md", a, vectors(a))
    store.replace_file(WS, "memory-bank/b.md", b, vectors(b))
    # A delete that stopped after the marker went: two strays stay behind without one.
    collection = store.client.get_collection(collection_name(WS), embedding_function=None)
    collection.delete(ids=[a[0].id])
    assert store.indexed_files(WS) == {
        "memory-bank/a.md": FileState(a[0].file_hash, 3, 2),
        "memory-bank/b.md": FileState(b[0].file_hash, 1, 1),
    }
    # One that stopped with the marker still there and a chunk gone: the marker's count of
    # three no longer adds up, so the file is read chunk by chunk and found short.
    store.replace_file(WS, "memory-bank/a.md", a, vectors(a))
    collection.delete(ids=[a[2].id])
    state = store.indexed_files(WS)["memory-bank/a.md"]
    assert state == FileState(a[0].file_hash, 3, 2)
    assert not state.is_complete(a[0].file_hash)


def test_query_scores_and_workspace_filter(store: VectorStore) -> None:
    other = "/home/dev/projects/reef"
    a = chunks_of("memory-bank/a.md", DOC_A)
    b = chunks_of("memory-bank/b.md", DOC_B, workspace=other)
    store.replace_file(WS, "memory-bank/a.md", a, vectors(a))
    store.replace_file(other, "memory-bank/b.md", b, vectors(b, axis=2))
    query = [1.0, 0.0, 0.0, 0.0]
    hits = store.query(query, 2, workspace=WS)
    assert [(h.file, h.heading_path, h.first_line, h.last_line) for h in hits] == [
        ("memory-bank/a.md", ("Alpha",), 1, 2),
        ("memory-bank/a.md", ("Alpha", "One"), 4, 5),
    ]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(1 / (1.01**0.5), abs=1e-5)
    assert hits[0].workspace == WS and hits[0].text == a[0].text
    everywhere = store.query([0.0, 0.0, 1.0, 0.0], 2)
    assert [(h.workspace, h.file) for h in everywhere] == [
        (other, "memory-bank/b.md"),
        (WS, "memory-bank/a.md"),
    ]
    assert everywhere[0].score == pytest.approx(1.0, abs=1e-5)
    assert store.query(query, 3, workspace="/nowhere") == []
    assert store.query(query, 0) == []
    assert sorted(store.workspaces()) == sorted([WS, other])


def test_query_skips_collections_of_another_dimension(store: VectorStore) -> None:
    a = chunks_of("memory-bank/a.md", DOC_A)
    store.replace_file(WS, "memory-bank/a.md", a, vectors(a))
    odd = "/home/dev/projects/odd"
    b = chunks_of("memory-bank/b.md", DOC_B, workspace=odd)
    store.replace_file(odd, "memory-bank/b.md", b, [[1.0, 0.0]])
    assert {h.workspace for h in store.query([1.0, 0.0, 0.0, 0.0], 5)} == {WS}
    assert {h.workspace for h in store.query([1.0, 0.0], 5)} == {odd}


def test_heading_with_separator_round_trips(store: VectorStore) -> None:
    text = "# A > B\n## C\nbody\n"
    chunks = chunks_of("memory-bank/a.md", text)
    store.replace_file(WS, "memory-bank/a.md", chunks, vectors(chunks))
    assert store.stored(WS)[0].heading_path == ("A > B", "C")
    assert store.query([1.0, 0.0, 0.0, 0.0], 1)[0].heading_path == ("A > B", "C")


def test_ensure_rebuilds_on_a_new_fingerprint(store: VectorStore) -> None:
    assert store.ensure(WS, "model-1") is False  # new collection: nothing to drop
    a = chunks_of("memory-bank/a.md", DOC_A)
    store.replace_file(WS, "memory-bank/a.md", a, vectors(a))
    assert store.ensure(WS, "model-1") is False
    assert store.count(WS) == 3
    assert store.ensure(WS, "model-2") is True
    assert store.count(WS) == 0
    assert store.ensure(WS, "model-2") is False


def upsert_raw(store: VectorStore, chunks: list[Chunk], indexes: list[int]) -> None:
    # Write chunks straight into the collection, as a killed run would have left them.
    collection = store.client.get_collection(collection_name(WS), embedding_function=None)
    rows: list[Sequence[float] | Sequence[int]] = [*vectors(chunks)]
    collection.upsert(
        ids=[c.id for c in chunks],
        embeddings=rows,
        documents=[c.text for c in chunks],
        metadatas=[
            {
                "file": c.file,
                "file_hash": c.file_hash,
                "chunk_count": c.chunk_count,
                "chunk_index": index,
            }
            for c, index in zip(chunks, indexes, strict=True)
        ],
    )


def test_large_manifest_is_paged(store: VectorStore) -> None:
    text = "\n\n".join(f"# H{i}\nline {i}" for i in range(1203))
    chunks = chunks_of("memory-bank/big.md", text)
    assert len(chunks) == 1203
    store.replace_file(WS, "memory-bank/big.md", chunks, vectors(chunks[:1]) * len(chunks))
    assert store.indexed_files(WS) == {
        "memory-bank/big.md": FileState(chunks[0].file_hash, 1203, 1203)
    }
    assert [s.chunk_index for s in store.stored(WS)] == list(range(1203))


def test_mismatched_embeddings_are_a_bug(store: VectorStore) -> None:
    a = chunks_of("memory-bank/a.md", DOC_A)
    with pytest.raises(ValueError, match="3 chunks but 1 embeddings"):
        store.replace_file(WS, "memory-bank/a.md", a, vectors(a)[:1])
    with pytest.raises(ValueError, match=r"chunks of memory-bank/a\.md given for .*/b\.md"):
        store.replace_file(WS, "memory-bank/b.md", a, vectors(a))


def test_open_unreachable_server_says_what_to_do() -> None:
    with pytest.raises(
        BackendUnavailable, match=r"no Chroma server answers at http://127\.0\.0\.1:9/"
    ):
        VectorStore.open(url="http://127.0.0.1:9/")
