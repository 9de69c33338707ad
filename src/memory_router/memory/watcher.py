"""Watch memory banks and re-index only the files that changed (watchfiles, debounced)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog

from .types import Bank

__all__ = ["BankWatcher"]

log = structlog.get_logger("memory_router.memory")

OnChange = Callable[[Bank, list[str]], Awaitable[None]]


def _bank_of(path: Path, banks: Sequence[Bank]) -> Bank | None:
    for bank in banks:
        if path == bank.root or bank.root in path.parents:
            return bank
    return None


class BankWatcher:
    """One background task watching every bank root; calls ``on_change(bank, rel_paths)``.

    Changes arriving within ``debounce_ms`` of each other are handled as one batch, so an
    editor's save (write, rename, chmod) costs one re-index of that file, not three.
    """

    def __init__(self, banks: Sequence[Bank], on_change: OnChange, debounce_ms: int) -> None:
        self.banks = list(banks)
        self.on_change = on_change
        self.debounce_ms = debounce_ms
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        if self.banks and self._task is None:
            self._task = asyncio.create_task(self._run(), name="memory-bank-watcher")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        from watchfiles import awatch

        roots = [str(bank.root) for bank in self.banks]
        self.ready.set()
        try:
            async for changes in awatch(
                *roots,
                debounce=self.debounce_ms,
                step=50,
                stop_event=self._stop,
                recursive=True,
            ):
                batches: dict[Path, tuple[Bank, set[str]]] = {}
                for _, raw in changes:
                    path = Path(raw)
                    bank = _bank_of(path, self.banks)
                    if bank is None or path.suffix != ".md":
                        continue
                    rel = path.relative_to(bank.workspace).as_posix()
                    batches.setdefault(bank.workspace, (bank, set()))[1].add(rel)
                for bank, paths in batches.values():
                    try:
                        await self.on_change(bank, sorted(paths))
                    except Exception:  # one bad batch must not stop the watcher for good
                        log.exception("reindex_failed", workspace=str(bank.workspace))
        except FileNotFoundError as exc:
            log.warning("watch_stopped", reason=str(exc))
