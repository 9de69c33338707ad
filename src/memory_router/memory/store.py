"""The vector store: one Chroma collection per workspace. The only module importing chromadb.

Chroma's own metadata is the index manifest: every chunk carries its file, the hash of the
file version it came from and how many chunks that version has, so a sync can tell a
complete file from a half-written one without a side file that could disagree with it.
A file's first chunk (``chunk_index`` 0) is its marker: written after all its other chunks,
its id naming the file, hash and chunk count. A full scan reads the markers' ids alone and
trusts them when their chunk counts add up to the collection's count; otherwise (a killed
run left strays, or a file short of chunks) it reads every chunk's metadata.
Vectors always come from our embedder: collections are made without an embedding function
(Chroma's default would download a model) and use cosine distance.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import unicodedata
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable
from .chunking import marker_state
from .types import Chunk, SearchHit

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

__all__ = ["FileState", "StoredChunk", "VectorStore", "collection_name"]

_PREFIX = "mb-"
_PAGE = 1000  # rows per get() page when reading the manifest back
_DEFAULT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class FileState:
    """What the store holds for one file."""

    file_hash: str | None  # the hash every chunk carries; None when they disagree
    chunk_count: int | None  # the chunk count every chunk carries; None when they disagree
    present: int  # chunks actually stored

    def is_complete(self, file_hash: str) -> bool:
        """True when the store holds exactly the chunks of this file version."""
        return self.file_hash == file_hash and self.chunk_count == self.present


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk as the store holds it (for inspection: status pages, tests)."""

    id: str
    file: str
    text: str
    file_hash: str
    chunk_index: int
    chunk_count: int
    heading_path: tuple[str, ...]
    first_line: int
    last_line: int


def collection_name(workspace: str | Path) -> str:
    """A valid, stable Chroma collection name for a workspace path.

    Chroma allows 3-512 characters of ``[a-zA-Z0-9._-]``, starting and ending with a letter
    or digit. A readable slug of the last two path parts, then a hash of the whole path so
    that distinct workspaces never share a collection.
    """
    text = str(workspace)
    digest = hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    parts = [part for part in PurePath(text).parts if part.strip("/\\")][-2:]
    folded = unicodedata.normalize("NFKD", "-".join(parts)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:40].strip("-")
    return f"{_PREFIX}{slug}-{digest}" if slug else f"{_PREFIX}{digest}"


def _text(meta: Mapping[str, Any], key: str) -> str:
    value = meta.get(key)
    return value if isinstance(value, str) else ""


def _number(meta: Mapping[str, Any], key: str) -> int:
    value = meta.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _chunk_metadata(chunk: Chunk, index: int) -> dict[str, str | int]:
    # Metadata values must be scalars: the heading path is kept twice, joined for people
    # and as JSON for an exact round trip (a heading may itself contain " > ").
    return {
        "workspace": chunk.workspace,
        "file": chunk.file,
        "heading": " > ".join(chunk.heading_path),
        "heading_path": json.dumps(list(chunk.heading_path), ensure_ascii=False),
        "first_line": chunk.first_line,
        "last_line": chunk.last_line,
        "content_hash": chunk.content_hash,
        "file_hash": chunk.file_hash,
        "chunk_count": chunk.chunk_count,
        "chunk_index": index,
        "tokens": chunk.tokens,
    }


def _heading_path(meta: Mapping[str, Any]) -> tuple[str, ...]:
    raw = _text(meta, "heading_path")
    try:
        parts = json.loads(raw) if raw else []
    except json.JSONDecodeError:  # written by something else: fall back to the joined form
        parts = _text(meta, "heading").split(" > ")
    return tuple(str(part) for part in parts if isinstance(part, str))


class VectorStore:
    """Chroma, local (``PersistentClient``) or a server (``HttpClient``), one collection per
    workspace. Safe to share between threads; writers of one workspace take ``write_lock``.
    """

    def __init__(self, client: ClientAPI, where: str) -> None:
        self.client = client
        self.where = where
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._max_batch: int | None = None

    @classmethod
    def open(cls, path: Path | None = None, url: str | None = None) -> VectorStore:
        """A store in a local folder (created if missing) or on a Chroma server at ``url``."""
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if url:
            parts = urllib.parse.urlsplit(url)
            https = parts.scheme == "https"
            try:
                client = chromadb.HttpClient(
                    host=parts.hostname or "127.0.0.1",
                    port=parts.port or (443 if https else 80),
                    ssl=https,
                    settings=settings,
                )
            except ValueError as exc:  # chromadb's "Could not connect to a Chroma server"
                raise BackendUnavailable(
                    f"no Chroma server answers at {url} ({exc}): start one with "
                    "`chroma run --path DIR --port PORT`, or unset memory.chroma_url"
                ) from None
            return cls(client, url)
        if path is None:
            raise TypeError("VectorStore.open needs a path or a url")
        path.mkdir(parents=True, exist_ok=True)
        return cls(chromadb.PersistentClient(path=str(path), settings=settings), str(path))

    def close(self) -> None:
        """Release the client: its Chroma system and, for a server, its HTTP connections."""
        # chromadb's HttpClient (and the admin client inside it) each keep an httpx pool
        # that nothing public closes; ClientAPI does not declare close() either.
        for owner in (self.client, getattr(self.client, "_admin_client", None)):
            session = getattr(getattr(owner, "_server", None), "_session", None)
            if session is not None and callable(getattr(session, "close", None)):
                session.close()
        close = getattr(self.client, "close", None)
        if callable(close):
            close()

    def write_lock(self, workspace: str | Path) -> threading.Lock:
        """The lock that index runs of one workspace hold; searches never take it."""
        with self._guard:
            return self._locks.setdefault(str(workspace), threading.Lock())

    # Collections are looked up on every use (about 0.3 ms locally), never cached: another
    # replica may drop and recreate one on a shared server, leaving a cached handle dead.
    def _get(self, workspace: str | Path) -> Collection | None:
        from chromadb.errors import NotFoundError

        try:
            return self.client.get_collection(collection_name(workspace), embedding_function=None)
        except NotFoundError:
            return None

    def _create(self, workspace: str | Path) -> Collection:
        return self.client.get_or_create_collection(
            collection_name(workspace),
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"workspace": str(workspace)},
        )

    def ensure(self, workspace: str | Path, fingerprint: str) -> bool:
        """Make sure the workspace's collection was built by ``fingerprint`` (embedder and
        chunking settings); drop and recreate it when not. True when it was dropped."""
        collection = self._create(workspace)
        stored = (collection.metadata or {}).get("fingerprint")
        if stored == fingerprint:
            return False
        reset = stored is not None or collection.count() > 0
        if reset:
            self.drop(workspace)
            collection = self._create(workspace)
        collection.modify(metadata={"workspace": str(workspace), "fingerprint": fingerprint})
        return reset

    def _listed(self) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        for collection in self.client.list_collections():
            meta = collection.metadata or {}
            workspace = _text(meta, "workspace")
            if collection.name.startswith(_PREFIX) and workspace:
                found[workspace] = meta
        return found

    def workspaces(self) -> list[str]:
        """The workspaces that have a collection here."""
        return sorted(self._listed())

    def drop(self, workspace: str | Path) -> None:
        """Delete the workspace's whole collection (no error if there is none)."""
        from chromadb.errors import NotFoundError

        with contextlib.suppress(NotFoundError):  # already gone: the outcome we want
            self.client.delete_collection(collection_name(workspace))

    @staticmethod
    def _rows(
        collection: Collection, where: dict[str, Any] | None, documents: bool = False
    ) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        """(id, document, metadata) of every matching chunk, a page at a time."""
        include: Any = ["documents", "metadatas"] if documents else ["metadatas"]
        offset = 0
        while True:
            page = collection.get(where=where, include=include, limit=_PAGE, offset=offset)
            metadatas = page["metadatas"] or []
            texts = page["documents"] or [""] * len(metadatas)
            for chunk_id, text, meta in zip(page["ids"], texts, metadatas, strict=True):
                yield chunk_id, text or "", meta
            if len(page["ids"]) < _PAGE:
                return
            offset += _PAGE

    @staticmethod
    def _states(rows: Iterator[tuple[str, str, Mapping[str, Any]]]) -> dict[str, FileState]:
        hashes: dict[str, set[str]] = {}
        counts: dict[str, set[int]] = {}
        present: dict[str, int] = {}
        for _, _, meta in rows:
            file = _text(meta, "file")
            hashes.setdefault(file, set()).add(_text(meta, "file_hash"))
            counts.setdefault(file, set()).add(_number(meta, "chunk_count"))
            present[file] = present.get(file, 0) + 1
        return {
            file: FileState(
                file_hash=next(iter(hashes[file])) if len(hashes[file]) == 1 else None,
                chunk_count=next(iter(counts[file])) if len(counts[file]) == 1 else None,
                present=present[file],
            )
            for file in present
        }

    @staticmethod
    def _marked_states(collection: Collection) -> dict[str, FileState] | None:
        """Every file's state from its marker's id alone, or None when the markers' chunk
        counts do not add up to the collection's count (strays of a killed run, or ids of
        another format: read every chunk instead).

        A marker is written last, so a marker of hash H and count N means the file's N
        chunks of version H were stored. The count check covers what markers cannot show:
        chunks left behind without one, or chunks gone from under one (a delete that stopped
        halfway): either way the counts no longer add up.
        """
        states: dict[str, FileState] = {}
        offset = 0
        while True:
            page = collection.get(where={"chunk_index": 0}, include=[], limit=_PAGE, offset=offset)
            for chunk_id in page["ids"]:
                marked = marker_state(chunk_id)
                if marked is None or marked[0] in states:
                    return None
                file, file_hash, count = marked
                states[file] = FileState(file_hash, count, count)
            if len(page["ids"]) < _PAGE:
                break
            offset += _PAGE
        if sum(state.present for state in states.values()) != collection.count():
            return None
        return states

    def indexed_files(
        self, workspace: str | Path, files: Sequence[str] | None = None
    ) -> dict[str, FileState]:
        """Every file the store holds chunks of (or just ``files``), with their chunks' state."""
        collection = self._get(workspace)
        if collection is None:
            return {}
        if files is None:
            marked = self._marked_states(collection)
            if marked is not None:
                return marked
            return self._states(self._rows(collection, None))
        if not files:
            return {}
        where = {"file": files[0]} if len(files) == 1 else {"file": {"$in": list(files)}}
        return self._states(self._rows(collection, where))

    def stored(self, workspace: str | Path, file: str | None = None) -> list[StoredChunk]:
        """Every stored chunk of the workspace (or of one file), ordered by file and index."""
        collection = self._get(workspace)
        if collection is None:
            return []
        where = {"file": file} if file is not None else None
        found = [
            StoredChunk(
                id=chunk_id,
                file=_text(meta, "file"),
                text=text,
                file_hash=_text(meta, "file_hash"),
                chunk_index=_number(meta, "chunk_index"),
                chunk_count=_number(meta, "chunk_count"),
                heading_path=_heading_path(meta),
                first_line=_number(meta, "first_line"),
                last_line=_number(meta, "last_line"),
            )
            for chunk_id, text, meta in self._rows(collection, where, documents=True)
        ]
        found.sort(key=lambda chunk: (chunk.file, chunk.chunk_index))
        return found

    def _batch_size(self) -> int:
        if self._max_batch is None:
            reported = self.client.get_max_batch_size()
            self._max_batch = min(reported, _DEFAULT_BATCH) if reported > 0 else _DEFAULT_BATCH
        return self._max_batch

    def replace_file(
        self,
        workspace: str | Path,
        file: str,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]],
    ) -> None:
        """Delete the file's chunks, then write these: all of one file version, the marker
        (chunk 0) last. Interrupted anywhere, the file is left incomplete (no marker, fewer
        chunks than ``chunk_count``, or an old hash), never silently stale.
        """
        self.replace_files(workspace, [(file, chunks, embeddings)])

    def replace_files(
        self,
        workspace: str | Path,
        files: Sequence[tuple[str, Sequence[Chunk], Sequence[Sequence[float]]]],
    ) -> None:
        """``replace_file`` for several files in as few Chroma writes as possible.

        Each write costs tens of milliseconds however small (Chroma commits it to its
        write-ahead log as one transaction), so files go together: their old chunks are
        deleted in one write, then every new chunk is written with the markers last (in the
        last write when there are several). A kill anywhere leaves each file complete,
        without a marker, or short of the chunks its marker counts.
        """
        names: list[str] = []
        rows: list[tuple[Chunk, int, Sequence[float]]] = []
        markers: list[tuple[Chunk, int, Sequence[float]]] = []
        for file, chunks, embeddings in files:
            if len(chunks) != len(embeddings):
                raise ValueError(f"{len(chunks)} chunks but {len(embeddings)} embeddings")
            strays = {chunk.file for chunk in chunks} - {file}
            if strays:
                raise ValueError(f"chunks of {', '.join(sorted(strays))} given for {file}")
            names.append(file)
            for index, (chunk, vector) in enumerate(zip(chunks, embeddings, strict=True)):
                (markers if index == 0 else rows).append((chunk, index, vector))
        if not names:
            return
        collection = self._create(workspace)
        self._delete_files(collection, names)
        if markers:
            self._record_dimension(collection, len(markers[0][2]))
        ordered = rows + markers
        step = self._batch_size()
        for start in range(0, len(ordered), step):
            batch = ordered[start : start + step]
            vectors: list[Sequence[float] | Sequence[int]] = [list(v) for _, _, v in batch]
            collection.upsert(
                ids=[chunk.id for chunk, _, _ in batch],
                embeddings=vectors,
                documents=[chunk.text for chunk, _, _ in batch],
                metadatas=[_chunk_metadata(chunk, index) for chunk, index, _ in batch],
            )

    @staticmethod
    def _record_dimension(collection: Collection, dimension: int) -> None:
        # Lets a search across workspaces skip collections another embedder built, instead
        # of failing on Chroma's dimension check.
        meta = dict(collection.metadata or {})
        if meta.get("dimension") != dimension:
            meta["dimension"] = dimension
            collection.modify(metadata=meta)

    def vectors_of(self, workspace: str | Path, file: str) -> dict[tuple[str, str], list[float]]:
        """The stored vectors of a file's chunks, keyed by (content hash, heading path).

        An edit usually changes one section: the chunks it leaves alone keep their vectors
        instead of being embedded again. The collection's fingerprint (``ensure``) already
        guarantees the vectors came from the current embedder.
        """
        collection = self._get(workspace)
        if collection is None:
            return {}
        got = collection.get(where={"file": file}, include=["metadatas", "embeddings"])
        metadatas = got["metadatas"] or []
        embeddings = got["embeddings"] if got["embeddings"] is not None else []
        return {
            (_text(meta, "content_hash"), _text(meta, "heading_path")): [float(x) for x in vector]
            for meta, vector in zip(metadatas, embeddings, strict=True)
        }

    @staticmethod
    def _delete_files(collection: Collection, files: Sequence[str]) -> None:
        # One write (each costs a commit). Should it stop halfway, a marker left without all
        # its chunks no longer adds up to the collection's count: the next scan reads it all.
        named: dict[str, Any] = (
            {"file": files[0]} if len(files) == 1 else {"file": {"$in": list(files)}}
        )
        collection.delete(where=named)

    def delete_file(self, workspace: str | Path, file: str) -> None:
        """Remove every chunk of one file."""
        collection = self._get(workspace)
        if collection is not None:
            self._delete_files(collection, [file])

    def count(self, workspace: str | Path) -> int:
        """How many chunks the workspace has."""
        collection = self._get(workspace)
        return 0 if collection is None else collection.count()

    def query(
        self,
        embedding: Sequence[float],
        k: int,
        workspace: str | Path | None = None,
        among: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """The ``k`` chunks nearest to ``embedding``, in one workspace or across all of them
        (or across the workspaces ``among`` names).

        Never waits for an index run: readers see the store as it is at that moment.
        """
        if k <= 0:
            return []
        from chromadb.errors import NotFoundError

        if workspace is not None:
            names: list[str | Path] = [workspace]
        else:
            names = sorted(self._listed() if among is None else among)
        hits: list[SearchHit] = []
        vector: list[Sequence[float] | Sequence[int]] = [list(embedding)]
        for name in names:
            collection = self._get(name)
            dimension = (collection.metadata or {}).get("dimension") if collection else None
            if collection is None or (isinstance(dimension, int) and dimension != len(vector[0])):
                continue  # nothing indexed, or built by another embedder: no comparable vectors
            try:
                result = collection.query(
                    query_embeddings=vector,
                    n_results=k,
                    include=["documents", "metadatas", "distances"],
                )
            except NotFoundError:  # dropped (for a rebuild) since it was looked up
                continue
            documents = (result["documents"] or [[]])[0]
            metadatas = (result["metadatas"] or [[]])[0]
            distances = (result["distances"] or [[]])[0]
            for text, meta, distance in zip(documents, metadatas, distances, strict=True):
                hits.append(
                    SearchHit(
                        workspace=_text(meta, "workspace"),
                        file=_text(meta, "file"),
                        heading_path=_heading_path(meta),
                        first_line=_number(meta, "first_line"),
                        last_line=_number(meta, "last_line"),
                        text=text or "",
                        score=1.0 - float(distance),
                    )
                )
        hits.sort(key=lambda hit: hit.score, reverse=True)
        return hits[:k]
