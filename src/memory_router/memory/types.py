"""Plain data shared by the memory-bank modules: chunks, hits, reports, the embedder seam."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["Bank", "Chunk", "Embedder", "SearchHit", "Skipped", "SyncReport"]


@dataclass(frozen=True, slots=True)
class Bank:
    """A workspace whose ``memory-bank/`` folder is indexed."""

    workspace: Path  # absolute, resolved
    root: Path  # workspace / "memory-bank"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One heading-bounded piece of a memory-bank file, ready to embed."""

    id: str  # deterministic: same file content -> same ids (idempotent upserts)
    workspace: str  # absolute workspace path
    file: str  # path relative to the workspace, e.g. "memory-bank/progress.md"
    heading_path: tuple[str, ...]  # e.g. ("Progress", "What works")
    first_line: int  # 1-based, inclusive
    last_line: int  # 1-based, inclusive
    text: str
    content_hash: str  # sha256 of ``text``
    file_hash: str  # sha256 of the whole file's bytes
    chunk_count: int  # chunks this file version has (lets a sync spot a half-written file)
    tokens: int


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A chunk that matched a query; ``score`` is cosine similarity (higher is better)."""

    workspace: str
    file: str
    heading_path: tuple[str, ...]
    first_line: int
    last_line: int
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class Skipped:
    """An input left out of the index, and why (logged, never fatal)."""

    path: str
    reason: str


@dataclass(slots=True)
class SyncReport:
    """What one sync of a bank did."""

    workspace: str
    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0


class Embedder(Protocol):
    """Text to vectors. Implementations load their model lazily, on first use."""

    dimension: int

    @property
    def name(self) -> str:
        """The model and how it runs; it keys the index, so vectors of two names never mix."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings for chunks to store (L2-normalised)."""
        ...

    def embed_query(self, text: str) -> list[float]:
        """The embedding of one search query (L2-normalised)."""
        ...
