"""Work that follows a response (its decision record, its log line), done in batches.

Each request's record and log line is small, but written one request at a time, between the
upstream's and the clients' turns on the CPU, its code and data run cold: under
``bench/overhead.py``'s load they cost several times what they cost in a loop. Queued and run
together every ``delay_s`` in one callback of the event loop, they run warm, and none of it
is on a request's path (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["AfterResponse"]

log = structlog.get_logger("memory_router.after")
_Call = tuple[contextvars.Context, Callable[..., None], tuple[Any, ...]]


class AfterResponse:
    """A queue of calls the event loop runs together, ``delay_s`` after the first is added.

    Each call runs in the context it was added in (as ``loop.call_soon`` would run it), so a
    log line keeps its own request's id."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self._pending: list[_Call] = []
        self._handle: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, call: Callable[..., None], *args: Any) -> None:
        """Run ``call(*args)`` with the next batch; at once when no event loop runs here."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # at shut-down, outside the loop: nothing to batch with
            self._run(call, args)
            return
        self._pending.append((contextvars.copy_context(), call, args))
        if self._handle is None:
            self._handle = loop.call_later(self.delay_s, self.drain)

    def drain(self) -> None:
        """Run everything queued now, in the order it was added."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        pending, self._pending = self._pending, []
        for context, call, args in pending:
            context.run(self._run, call, args)

    @staticmethod
    def _run(call: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            call(*args)
        except Exception:  # one bad record must not cost the others theirs
            log.exception("after_response_failed", call=getattr(call, "__qualname__", repr(call)))
