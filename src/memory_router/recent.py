"""The last few hundred routing decisions, compact, for the dashboard (``api/dashboard.py``).

``RouterService.record`` adds one row per answered request (after the response, in the
event loop). The buffer keeps the newest ``size`` rows, per-minute counts of requests and
load seconds by model for the last hour, and hands each new row to the dashboard's
subscribers through bounded queues: a slow subscriber loses rows, the request path never
waits.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from .domain import TASK_CLASSES

if TYPE_CHECKING:
    from .pipeline import Run

__all__ = ["MINUTES", "Recent", "row_of"]

MINUTES = 60
"""How many minutes of per-model counts the buffer keeps (the dashboard's chart)."""

QUEUE_SIZE = 256
"""Rows a subscriber may fall behind by before it loses the newest ones."""


def _scores(signals: dict[str, Any]) -> dict[str, float] | None:
    """The class scores the classifier gave (display only), rounded; None without any."""
    raw = signals.get("class_scores")
    if not isinstance(raw, dict):
        return None
    scores = {
        name: round(float(value), 3)
        for name, value in raw.items()
        if name in TASK_CLASSES and isinstance(value, int | float)
    }
    return scores or None


def row_of(run: Run, ms: float) -> dict[str, Any]:
    """One request's compact row: what the dashboard's table shows."""
    decision, finish = run.decision, run.finish
    usage = finish.usage if finish else None
    load_ns = finish.stats.get("load_duration") if finish else None
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return {
        "t": round(time.time(), 3),
        "request_id": request_id if isinstance(request_id, str) else None,
        "routed": decision.routed,
        "client": run.client,
        "tool_style": decision.tool_style or decision.signals.get("tool_style"),
        "class": decision.task,
        "class_via": decision.signals.get("class_via"),
        "scores": _scores(decision.signals),
        "model": decision.model,
        "backend": decision.backend,
        "num_ctx": decision.num_ctx,
        "reason": decision.reasons[0] if decision.reasons else "",
        "caused_load": decision.loads,
        "load_s": round(load_ns / 1e9, 3) if isinstance(load_ns, int | float) else None,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "latency_ms": ms,
        "outcome": run.outcome,
        "fallback_from": run.decided.model if run.fallback is not None else None,
        "fallback": run.fallback,
    }


class Recent:
    """A ring buffer of decision rows, per-minute counts, and subscribers to new rows."""

    def __init__(self, size: int = 500, clock: Callable[[], float] = time.time) -> None:
        self.rows: deque[dict[str, Any]] = deque(maxlen=size)
        self._clock = clock
        self._minutes: dict[int, dict[str, list[float]]] = {}
        """minute (epoch seconds // 60) -> model -> [requests, load seconds]"""
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped = 0
        """Rows a full subscriber queue lost."""

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, run: Run, ms: float) -> None:
        """Record an answered request (``RouterService.record``)."""
        self.append(row_of(run, ms))

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        minute = int(row.get("t", self._clock()) // 60)
        counts = self._minutes.setdefault(minute, {}).setdefault(str(row["model"]), [0, 0.0])
        counts[0] += 1
        load_s = row.get("load_s")
        if row.get("caused_load") and isinstance(load_s, int | float):
            counts[1] += load_s
        self._prune(minute)
        for queue in self._subscribers:
            try:
                queue.put_nowait(row)
            except asyncio.QueueFull:
                self.dropped += 1

    def _prune(self, minute: int) -> None:
        """Forget the minutes before the hour that ends at ``minute``."""
        oldest = minute - MINUTES + 1
        for key in [key for key in self._minutes if key < oldest]:
            del self._minutes[key]

    def last(self, count: int) -> list[dict[str, Any]]:
        """The newest ``count`` rows, newest first."""
        rows = list(self.rows)[-count:] if count > 0 else []
        rows.reverse()
        return rows

    def per_minute(self) -> dict[str, Any]:
        """The last hour, minute by minute (oldest first): requests and load seconds by model."""
        now = int(self._clock() // 60)
        minutes = list(range(now - MINUTES + 1, now + 1))
        self._prune(now)
        models = sorted({model for counts in self._minutes.values() for model in counts})
        series: dict[str, dict[str, list[float]]] = {}
        for model in models:
            requests: list[float] = []
            loads: list[float] = []
            for minute in minutes:
                counts = self._minutes.get(minute, {}).get(model, [0, 0.0])
                requests.append(counts[0])
                loads.append(round(counts[1], 3))
            series[model] = {"requests": requests, "load_s": loads}
        return {"start": minutes[0] * 60, "step_s": 60, "models": series}

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue that receives every new row until ``unsubscribe``."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)
