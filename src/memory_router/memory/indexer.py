"""Bring a workspace's vector index in line with its memory-bank files.

No side manifest: the chunks' own metadata in the store says which file version they came
from and how many chunks that version has. A file is up to date when the store holds exactly
``chunk_count`` chunks, all carrying the hash of the bytes on disk; anything else (changed,
half-written by a killed run, duplicated) is deleted and written again, and files that are
gone or now skipped lose their chunks. Whatever point a run is killed at, the next run
leaves the store matching the disk exactly. A full scan costs one stored row per file, not
per chunk, unless a killed run left strays (see ``VectorStore.indexed_files``).

Index runs of one workspace are serialised by the store's ``write_lock``; searches never
take it, so they answer from whatever is stored while a run goes on.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import structlog

from . import ahead, discovery
from .chunking import chunk_file
from .discovery import BankFile
from .store import FileState, VectorStore
from .types import Bank, Chunk, Embedder, Skipped, SyncReport

__all__ = ["CHUNKER_VERSION", "embedding_text", "fingerprint", "sync_bank", "sync_paths"]

log = structlog.get_logger("memory_router.memory")

Progress = Callable[[int, int], None]

# Bump when chunk_file, embedding_text or the store's write order change what is stored for
# the same bytes: the collection fingerprint changes and every bank is rebuilt once.
# 2: each file's marker chunk is written last, its id names the file (VectorStore.replace_files).
CHUNKER_VERSION = "2"
# Chunks embedded and written together: each Chroma write has a fixed cost of tens of
# milliseconds, so big enough to spread it, small enough that files land in the store (and
# progress moves) every few seconds.
_GROUP_CHUNKS = 256


@dataclass(slots=True)
class _Job:
    file: BankFile
    chunks: list[Chunk]
    replaced: int  # chunks of this file in the store before the write


def fingerprint(embedder: Embedder, max_tokens: int) -> str:
    """What a collection's vectors depend on besides the files themselves."""
    return f"{embedder.name}|chunker={CHUNKER_VERSION}|max_tokens={max_tokens}"


def embedding_text(chunk: Chunk) -> str:
    """The text embedded for a chunk: its nearest heading, then the chunk itself.

    Headings are short summaries ("Known Issues", "Current Focus") that questions echo;
    repeating the nearest one weighs it more in the pooled vector, and puts it back into
    pieces cut from the middle of a long section. The file name and the outer headings
    were tried too: they add words shared by every chunk of a file and matched worse.
    """
    if not chunk.heading_path:
        return chunk.text
    return f"{chunk.heading_path[-1]}\n{chunk.text}"


def _vectors(
    store: VectorStore, embedding: ahead.Ahead, workspace: str, group: Sequence[_Job]
) -> Callable[[], list[list[float]]]:
    """Start on the vectors of every chunk of the group: stored ones are reused where a
    chunk is unchanged, the rest are embedded (perhaps elsewhere, while the caller writes).
    The returned function waits for them."""
    chunks = [chunk for job in group for chunk in job.chunks]
    known: dict[tuple[str, str], list[float]] = {}
    for job in group:
        if job.replaced:
            known.update(store.vectors_of(workspace, job.file.rel_path))
    keys = [
        (chunk.content_hash, json.dumps(list(chunk.heading_path), ensure_ascii=False))
        for chunk in chunks
    ]
    missing = [index for index, key in enumerate(keys) if key not in known]
    texts = [embedding_text(chunks[index]) for index in missing]
    # Similar lengths together waste less padding in a batched model.
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    pending = embedding.submit([texts[index] for index in order])

    def result() -> list[list[float]]:
        vectors = [known.get(key, []) for key in keys]
        for position, vector in zip(order, pending(), strict=True):
            vectors[missing[position]] = vector
        return vectors

    return result


@dataclass(frozen=True, slots=True)
class _Stale:
    file: BankFile
    replaced: int  # chunks of this file in the store now


def _plan(files: Iterable[BankFile], indexed: dict[str, FileState]) -> tuple[list[_Stale], int]:
    """The files that must be (re)written, and how many are already up to date."""
    stale: list[_Stale] = []
    unchanged = 0
    for file in files:
        state = indexed.get(file.rel_path)
        if state is not None and state.is_complete(file.sha256):
            unchanged += 1
        else:
            stale.append(_Stale(file, state.present if state else 0))
    return stale, unchanged


def _groups(
    bank: Bank, stale: Iterable[_Stale], max_tokens: int, blank: Callable[[], None]
) -> Iterator[list[_Job]]:
    """Files chunked as they are needed, in groups of up to about _GROUP_CHUNKS chunks (a
    big file is a group alone). A new blank file has nothing to write: ``blank()`` is told."""
    group: list[_Job] = []
    size = 0
    for item in stale:
        chunks = chunk_file(bank, item.file.rel_path, item.file.text, item.file.sha256, max_tokens)
        if not chunks and not item.replaced:
            blank()
            continue
        if group and size + len(chunks) > _GROUP_CHUNKS:
            yield group
            group, size = [], 0
        group.append(_Job(item.file, chunks, item.replaced))
        size += len(chunks)
    if group:
        yield group


def _write(
    store: VectorStore,
    embedder: Embedder,
    bank: Bank,
    stale: list[_Stale],
    report: SyncReport,
    progress: Progress | None,
    total: int,
    max_tokens: int,
) -> None:
    workspace = str(bank.workspace)
    done = total - len(stale)

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def blank() -> None:
        report.files_unchanged += 1
        advance()

    groups = _groups(bank, stale, max_tokens, blank)
    # Chunk only as far ahead as it takes to know whether the run is big enough for an
    # embedding child; the rest is chunked group by group while the embedder works.
    ready: list[list[_Job]] = []
    seen = 0
    for chunked in groups:
        ready.append(chunked)
        seen += sum(len(job.chunks) for job in chunked)
        if seen >= ahead.BULK_CHUNKS:
            break
    if not ready:
        return
    with ahead.embed_ahead(embedder, seen) as embedding:
        pending = _vectors(store, embedding, workspace, ready[0])
        # Groups are embedded and written in one go each (markers last), so a kill loses at
        # most the group in flight. Each pair brings the next group chunked while this one
        # is embedded; it is embedded while this one is written, where the embedder allows.
        for group, following in itertools.pairwise(itertools.chain(ready, groups, [None])):
            assert group is not None  # only the last "following" is None
            vectors = pending()
            if following is not None:
                pending = _vectors(store, embedding, workspace, following)
            _store(store, workspace, group, vectors, report, advance)


def _store(
    store: VectorStore,
    workspace: str,
    group: list[_Job],
    vectors: list[list[float]],
    report: SyncReport,
    advance: Callable[[], None],
) -> None:
    writes = []
    offset = 0
    for job in group:
        count = len(job.chunks)
        writes.append((job.file.rel_path, job.chunks, vectors[offset : offset + count]))
        offset += count
    store.replace_files(workspace, writes)
    for job in group:
        report.files_indexed += 1
        report.chunks_added += len(job.chunks)
        report.chunks_deleted += job.replaced
        log.debug(
            "memory_file_indexed", workspace=workspace, file=job.file.rel_path,
            chunks=len(job.chunks),
        )  # fmt: skip
        advance()


def _delete(
    store: VectorStore, workspace: str, file: str, state: FileState, report: SyncReport
) -> None:
    store.delete_file(workspace, file)
    report.files_deleted += 1
    report.chunks_deleted += state.present


def sync_bank(
    bank: Bank,
    store: VectorStore,
    embedder: Embedder,
    *,
    max_bytes: int,
    max_tokens: int,
    progress: Progress | None = None,
) -> SyncReport:
    """Index a whole bank: write new and changed files, drop chunks of removed ones.

    ``progress(done, total)`` is called once before any write (``done`` counting unchanged
    files) and after every file written.
    """
    started = time.perf_counter()
    workspace = str(bank.workspace)
    with store.write_lock(workspace):
        store.ensure(workspace, fingerprint(embedder, max_tokens))
        report = _sync_all_locked(bank, store, embedder, max_bytes, max_tokens, progress)
    report.seconds = time.perf_counter() - started
    return report


def _sync_all_locked(
    bank: Bank,
    store: VectorStore,
    embedder: Embedder,
    max_bytes: int,
    max_tokens: int,
    progress: Progress | None,
) -> SyncReport:
    workspace = str(bank.workspace)
    report = SyncReport(workspace=workspace)
    files, report.skipped = discovery.bank_files(bank, max_bytes)
    report.files_seen = len(files)
    indexed = store.indexed_files(workspace)
    on_disk = {file.rel_path for file in files}
    for file, state in sorted(indexed.items()):
        if file not in on_disk:
            _delete(store, workspace, file, state, report)
    stale, report.files_unchanged = _plan(files, indexed)
    if progress is not None:
        progress(report.files_unchanged, len(files))
    _write(store, embedder, bank, stale, report, progress, len(files), max_tokens)
    report.chunks_total = store.count(workspace)
    return report


def _relative(bank: Bank, raw: str) -> str:
    path = Path(raw)
    if path.is_absolute():
        try:
            return path.relative_to(bank.workspace).as_posix()
        except ValueError:
            return raw  # outside the workspace: read_bank_file will refuse it
    return PurePosixPath(raw.removeprefix("./")).as_posix()


def _is_file_event(bank: Bank, rel: str) -> bool:
    """A path that names a bank file (existing or deleted), not a folder."""
    return rel.endswith(".md") and not (bank.workspace / rel).is_dir()


def _targets(bank: Bank, rel_paths: Sequence[str], indexed: dict[str, FileState]) -> list[str]:
    targets: set[str] = set()
    for raw in rel_paths:
        rel = _relative(bank, raw)
        targets.add(rel)
        # A folder event (created, moved or deleted as a whole) covers the files under it.
        prefix = rel.rstrip("/") + "/"
        targets.update(file for file in indexed if file.startswith(prefix))
        if (bank.workspace / rel).is_dir():
            targets.update(p for p in discovery.bank_paths(bank) if p.startswith(prefix))
    return sorted(targets)


def sync_paths(
    bank: Bank,
    store: VectorStore,
    embedder: Embedder,
    rel_paths: Sequence[str],
    *,
    max_bytes: int,
    max_tokens: int,
    progress: Progress | None = None,
) -> SyncReport:
    """Index only the given paths (relative to the workspace), as a file watcher reports
    them: changed files are rewritten, removed or now unreadable ones lose their chunks."""
    started = time.perf_counter()
    workspace = str(bank.workspace)
    with store.write_lock(workspace):
        if store.ensure(workspace, fingerprint(embedder, max_tokens)):
            # The collection was rebuilt for new settings: only a full run can refill it.
            report = _sync_all_locked(bank, store, embedder, max_bytes, max_tokens, progress)
        else:
            report = SyncReport(workspace=workspace)
            named = [_relative(bank, raw) for raw in rel_paths]
            if all(_is_file_event(bank, rel) for rel in named):
                # Files only (the usual watcher event): read just their chunks' state, not the
                # whole collection's.
                indexed = store.indexed_files(workspace, named)
            else:
                indexed = store.indexed_files(workspace)
            files: list[BankFile] = []
            for rel in _targets(bank, rel_paths, indexed):
                found = discovery.read_bank_file(bank, rel, max_bytes)
                if isinstance(found, BankFile):
                    files.append(found)
                    continue
                if isinstance(found, Skipped):
                    report.skipped.append(found)
                if rel in indexed:
                    _delete(store, workspace, rel, indexed[rel], report)
            report.files_seen = len(files)
            stale, report.files_unchanged = _plan(files, indexed)
            _write(store, embedder, bank, stale, report, progress, len(files), max_tokens)
            report.chunks_total = store.count(workspace)
    report.seconds = time.perf_counter() - started
    return report
