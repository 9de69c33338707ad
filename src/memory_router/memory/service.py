"""The memory-bank service: which banks are indexed, keeping them fresh, searching them.

Blocking work (embedding, Chroma) runs in worker threads so the event loop keeps serving
chat requests. The store and the embedding model are opened on first use, never at import.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ..errors import InvalidRequest, WorkspaceNotAllowed
from ..settings import MemorySettings
from . import discovery, indexer
from .types import Bank, Embedder, SearchHit, SyncReport

if TYPE_CHECKING:
    from .store import VectorStore
    from .watcher import BankWatcher

__all__ = ["BankStatus", "MemoryService"]

log = structlog.get_logger("memory_router.memory")

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class BankStatus:
    workspace: str
    files: int = 0
    chunks: int = 0
    last_sync: float | None = None
    last_sync_seconds: float | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)


class MemoryService:
    """Owns the vector store, the embedder and the set of known banks."""

    def __init__(self, settings: MemorySettings, ollama_base_url: str) -> None:
        self.settings = settings
        self.ollama_base_url = ollama_base_url
        self.banks: dict[str, Bank] = {}
        self.status_by_bank: dict[str, BankStatus] = {}
        self._store: VectorStore | None = None
        self._embedder: Embedder | None = None
        self._open_lock = threading.Lock()
        self._watcher: BankWatcher | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._observed: set[str] = set()

    # -- lazily opened parts --------------------------------------------------------------

    @property
    def store(self) -> VectorStore:
        with self._open_lock:
            if self._store is None:
                from .store import VectorStore

                if self.settings.chroma_url:
                    self._store = VectorStore.open(url=self.settings.chroma_url)
                else:
                    self._store = VectorStore.open(path=self.settings.vector_store_path)
            return self._store

    @property
    def embedder(self) -> Embedder:
        with self._open_lock:
            if self._embedder is None:
                from .embedder import make_embedder

                self._embedder = make_embedder(self.settings, self.ollama_base_url)
            return self._embedder

    # -- banks ----------------------------------------------------------------------------

    def allowed_roots(self) -> list[Path]:
        return [*self.settings.workspace_roots, *self.settings.allowed_roots]

    def allowed_workspace(self, workspace: str) -> Path:
        """A workspace a request names, resolved (``~``, ``..``, symlinks), when it lies under
        an allowed root; otherwise ``WorkspaceNotAllowed`` naming the roots."""
        roots = _resolved(self.allowed_roots())
        resolved: Path | None = None
        try:
            path = Path(workspace).expanduser()
            if path.is_absolute():
                resolved = path.resolve()
        except (OSError, RuntimeError, ValueError):  # loops, unknown ~user, NUL bytes
            resolved = None
        if resolved is not None and any(resolved.is_relative_to(root) for root in roots):
            return resolved
        named = workspace if len(workspace) <= 200 else workspace[:200] + "..."
        if not roots:
            raise WorkspaceNotAllowed(
                f"workspace {named!r} is not searchable here: no workspace is, since "
                "memory.workspace_roots and memory.allowed_roots are both empty; add the "
                "workspace's folder to memory.allowed_roots to allow it",
                param="workspace",
            )
        raise WorkspaceNotAllowed(
            f"workspace {named!r} is not searchable here: a request may name a workspace (an "
            f"absolute path) under one of the allowed roots ({', '.join(map(str, roots))}); "
            "add its folder to memory.allowed_roots to allow it",
            param="workspace",
        )

    def bank_for(self, path: Path, *, trusted: bool = False) -> Bank:
        """The bank of a workspace (or of a ``memory-bank`` folder given directly).

        ``trusted``: the path comes from the local user (the CLI), not from a request, so
        the allowed roots do not apply.
        """
        try:
            resolved = path.expanduser().resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # loops, unknown ~user, NUL bytes
            raise InvalidRequest(
                f"no memory bank at {str(path)!r}: the path cannot be resolved ({exc})",
                param="workspace",
            ) from None
        if resolved.name == "memory-bank" and resolved.is_dir():
            resolved = resolved.parent
        roots = [resolved] if trusted else self.allowed_roots()
        bank = discovery.find_bank(resolved, roots)
        if bank is None:
            where = "" if trusted else " under an allowed root (memory.allowed_roots)"
            raise InvalidRequest(
                f"no memory bank at {resolved}{where}: expected a folder {resolved}/memory-bank",
                param="workspace",
            )
        return bank

    def sync(self, bank: Bank, progress: Progress | None = None) -> SyncReport:
        """Bring one bank's index in line with its files (blocking)."""
        report = indexer.sync_bank(
            bank,
            self.store,
            self.embedder,
            max_bytes=self.settings.max_file_bytes,
            max_tokens=self.settings.chunk_max_tokens,
            progress=progress,
        )
        self._record(bank, report)
        return report

    def sync_paths(self, bank: Bank, rel_paths: list[str]) -> SyncReport:
        report = indexer.sync_paths(
            bank,
            self.store,
            self.embedder,
            rel_paths,
            max_bytes=self.settings.max_file_bytes,
            max_tokens=self.settings.chunk_max_tokens,
        )
        self._record(bank, report, partial=True)
        return report

    def _record(self, bank: Bank, report: SyncReport, partial: bool = False) -> None:
        key = str(bank.workspace)
        self.banks[key] = bank
        status = self.status_by_bank.setdefault(key, BankStatus(workspace=key))
        status.chunks = self.store.count(key)
        status.files = len(self.store.indexed_files(key))
        status.last_sync = time.time()
        status.last_sync_seconds = round(report.seconds, 3)
        if not partial:
            status.skipped = [{"path": s.path, "reason": s.reason} for s in report.skipped]
        for skipped in report.skipped:
            log.info("memory_skipped", workspace=key, path=skipped.path, reason=skipped.reason)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Index the configured workspaces, then watch them (in the background)."""
        banks: list[Bank] = []
        for root in self.settings.workspace_roots:
            try:
                banks.append(self.bank_for(root))
            except InvalidRequest as exc:
                log.warning("memory_bank_missing", workspace=str(root), reason=exc.message)
        if banks:
            self._spawn(self._initial_sync(banks))

    async def _initial_sync(self, banks: list[Bank]) -> None:
        # Watch first: an edit made while the full sync runs is then re-indexed after it.
        if self.settings.watch:
            await self.watch(banks)
        for bank in banks:
            if str(bank.workspace) in self.status_by_bank:
                continue  # already indexed earlier
            report = await asyncio.to_thread(self.sync, bank)
            log.info(
                "memory_indexed",
                workspace=report.workspace,
                files=report.files_seen,
                chunks=report.chunks_total,
                seconds=round(report.seconds, 2),
            )

    async def watch(self, banks: list[Bank]) -> None:
        """Start watching these banks (replacing any earlier watcher)."""
        from .watcher import BankWatcher

        if self._watcher is not None:
            await self._watcher.stop()

        async def on_change(bank: Bank, rel_paths: list[str]) -> None:
            report = await asyncio.to_thread(self.sync_paths, bank, rel_paths)
            log.info("memory_reindexed", workspace=report.workspace, files=rel_paths)

        self._watcher = BankWatcher(banks, on_change, self.settings.debounce_ms)
        self._watcher.start()

    def observe(self, workspace: str | None) -> None:
        """A request named this working directory: index and watch its bank if allowed.

        Called on the request path, so it costs a set lookup unless the workspace is new.
        """
        if not workspace or workspace in self._observed or not self.settings.enabled:
            return
        self._observed.add(workspace)
        try:
            bank = self.bank_for(Path(workspace))
        except InvalidRequest as exc:
            log.info("memory_bank_not_indexed", workspace=workspace, reason=exc.message)
            return
        if str(bank.workspace) in self.banks:
            return
        self.banks[str(bank.workspace)] = bank
        self._spawn(self._initial_sync([*self._watched(), bank]))

    def _watched(self) -> list[Bank]:
        return list(self._watcher.banks) if self._watcher is not None else []

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._watcher is not None:
            await self._watcher.stop()

    # -- queries --------------------------------------------------------------------------

    def search(
        self,
        query: str,
        workspace: Path | None = None,
        k: int = 5,
        *,
        within: Sequence[Path] | None = None,
    ) -> list[SearchHit]:
        """The ``k`` chunks nearest to the query, in one workspace or across all (blocking).

        ``within``: across only the banks under these roots (a request's search)."""
        if not query.strip():
            raise InvalidRequest("the search query is empty", param="query")
        key = str(workspace.expanduser().resolve()) if workspace is not None else None
        among: list[str] | None = None
        if key is None and within is not None:
            roots = _resolved(within)
            among = [
                name
                for name in self.store.workspaces()
                if any(Path(name).is_relative_to(root) for root in roots)
            ]
            if not among:
                return []
        vector = self.embedder.embed_query(query)
        return self.store.query(vector, k, workspace=key, among=among)

    def status(self) -> dict[str, Any]:
        known = {*self.status_by_bank, *self.store.workspaces()}
        banks = []
        for key in sorted(known):
            status = self.status_by_bank.get(key) or BankStatus(
                workspace=key,
                files=len(self.store.indexed_files(key)),
                chunks=self.store.count(key),
            )
            banks.append(
                {
                    "workspace": status.workspace,
                    "files": status.files,
                    "chunks": status.chunks,
                    "last_sync": status.last_sync,
                    "last_sync_seconds": status.last_sync_seconds,
                    "skipped": status.skipped,
                    "watched": self._watcher is not None
                    and any(str(b.workspace) == key for b in self._watcher.banks),
                }
            )
        embedder = self.embedder
        graph = getattr(embedder, "choice", None)  # the ONNX embedder's measured graph
        return {
            "banks": banks,
            "embedding_model": embedder.name,
            "embedder_graph": graph.as_dict() if graph is not None else None,
            "store": self.settings.chroma_url or str(self.settings.vector_store_path),
        }


def _resolved(roots: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        try:
            out.append(root.expanduser().resolve())
        except (OSError, RuntimeError):  # a loop or an unknown ~user: it allows nothing
            continue
    return out
