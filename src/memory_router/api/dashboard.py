"""The live dashboard: ``GET /dashboard`` (one offline HTML page), ``GET /dashboard/state``
(JSON) and ``GET /dashboard/events`` (server-sent events: ``state`` now and every 2 s, and a
``decision`` as each request is recorded).

The state is read from what the router holds already: the residency monitor's view, the
health's cooldowns, the service's ring of recent decisions (``recent.py``). Backends and the
memory bank's status are asked at most every ``SLOW_EVERY_S``, however many pages are open.
With ``server.api_keys`` set, the state and the events need the key (the page asks for it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import asdict
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response, StreamingResponse

from ..memory.service import MemoryService
from ..service import RouterService
from .deps import Authorized, JSONBytes

__all__ = ["router"]

router = APIRouter()

STATE_EVERY_S = 2.0
"""How often the event stream sends the whole state."""
SLOW_EVERY_S = 5.0
"""How often backends and the memory bank's status are asked (shared by every page)."""
RECENT_ROWS = 50


class _Cached:
    """A value fetched at most every ``every_s``, in the background; readers wait for a
    fresh one up to ``wait_s`` and otherwise take the last."""

    def __init__(self, fetch: Callable[[], Awaitable[dict[str, Any]]], every_s: float) -> None:
        self._fetch = fetch
        self._every_s = every_s
        self._at = -every_s
        self._value: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    async def get(self, wait_s: float = 1.0) -> dict[str, Any] | None:
        if self._task is None and time.monotonic() - self._at >= self._every_s:
            self._task = asyncio.create_task(self._refresh())
        if self._task is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), wait_s)
        return self._value

    async def _refresh(self) -> None:
        try:
            self._value = await self._fetch()
        except Exception as exc:  # shown on the page; the next refresh tries again
            self._value = {"error": repr(exc)}
        finally:
            self._at = time.monotonic()
            self._task = None


class _Dashboard:
    """The per-application caches of what is slow to ask."""

    def __init__(self, service: RouterService, memory: MemoryService, enabled: bool) -> None:
        self.service = service
        self.memory = memory
        self.memory_enabled = enabled
        self.readiness = _Cached(self._readiness, SLOW_EVERY_S)
        self.memory_status = _Cached(self._memory_status, SLOW_EVERY_S)

    async def _readiness(self) -> dict[str, Any]:
        readiness = await self.service.readiness()
        return {
            "status": readiness.status,
            "backends": [asdict(status) for status in readiness.backends],
            "missing_models": readiness.missing_models,
            "notes": readiness.notes,
        }

    async def _memory_status(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.memory.status)


def _dashboard(app: FastAPI) -> _Dashboard:
    dashboard: _Dashboard | None = getattr(app.state, "dashboard", None)
    if dashboard is None:
        service: RouterService = app.state.service
        memory: MemoryService = app.state.memory
        enabled = service.settings.config.memory.enabled
        dashboard = app.state.dashboard = _Dashboard(service, memory, enabled)
    return dashboard


def _residency(service: RouterService) -> dict[str, Any]:
    monitor = service.fleet.monitor
    if monitor is None:
        return {}
    out: dict[str, Any] = {}
    for name, snapshot in monitor.view().snapshots.items():
        budget = snapshot.budget
        out[name] = {
            "budget": {
                "vram_bytes": budget.vram_bytes,
                "ram_bytes": budget.ram_bytes,
                "reserve_bytes": budget.reserve_bytes,
                "total_bytes": budget.total,
            },
            "known": snapshot.known,
            "resident": [
                {
                    "model": r.model,
                    "num_ctx": r.num_ctx,
                    "size": r.size,
                    "size_vram": r.size_vram,
                    "in_flight": r.in_flight,
                    "pinned": r.pinned,
                    "warm": r.warm,
                    "expires_at": r.expires_at,
                }
                for r in snapshot.resident
            ],
        }
    return out


def _loading(service: RouterService) -> list[dict[str, Any]]:
    """Requests whose decision loads a model and that have not finished yet."""
    now = time.perf_counter()
    return [
        {
            "model": run.decision.model,
            "backend": run.decision.backend,
            "for_s": round(now - run.started, 1),
        }
        for run in list(service.open_runs)
        if run.decision.loads and run.finish is None
    ]


def _hosts(service: RouterService, readiness: dict[str, Any] | None) -> list[dict[str, Any]]:
    known = {b["name"]: b for b in (readiness or {}).get("backends", [])}
    health = service.fleet.health.snapshot()
    hosts = []
    for name, backend in list(service.fleet.backends.items()):
        status = known.get(name, {})
        cooling = [
            {"key": key, **state}
            for key, state in health.items()
            if state["cooling"] and (key == name or key.startswith(name + "/"))
        ]
        hosts.append(
            {
                "name": name,
                "kind": status.get("kind") or getattr(backend, "kind", "?"),
                "answers": status.get("answers"),
                "version": status.get("version"),
                "detail": status.get("detail", ""),
                "cooling": cooling,
            }
        )
    return hosts


async def state_of(app: FastAPI) -> dict[str, Any]:
    """Everything the page shows, now."""
    dashboard = _dashboard(app)
    service = dashboard.service
    readiness = await dashboard.readiness.get()
    memory: dict[str, Any] = {"enabled": dashboard.memory_enabled}
    if dashboard.memory_enabled:
        memory.update(await dashboard.memory_status.get() or {"pending": True})
    return {
        "t": round(time.time(), 3),
        "status": (readiness or {}).get("status"),
        "notes": (readiness or {}).get("notes", []),
        "missing_models": (readiness or {}).get("missing_models", []),
        "embedded_fallback": service.fleet.embedded_fallback,
        "draining": service.draining,
        "residency": _residency(service),
        "loading": _loading(service),
        "hosts": _hosts(service, readiness),
        "recent": service.recent.last(RECENT_ROWS),
        "per_minute": service.recent.per_minute(),
        "memory": memory,
    }


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@router.get("/dashboard", include_in_schema=False)
async def page() -> Response:
    """The page itself: no key needed (it holds no data; it asks for the key)."""
    html = resources.files("memory_router").joinpath("static/dashboard.html").read_bytes()
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
    )


@router.get("/dashboard/state", dependencies=[Authorized])
async def state(request: Request) -> Response:
    return JSONBytes(await state_of(request.app), headers={"cache-control": "no-store"})


@router.get("/dashboard/events", dependencies=[Authorized])
async def events(request: Request) -> Response:
    """``state`` now and every 2 s; ``decision`` as each request is recorded."""
    app = request.app
    service: RouterService = app.state.service

    async def stream() -> AsyncIterator[bytes]:
        queue = service.recent.subscribe()
        try:
            yield _event("state", await state_of(app))
            due = time.monotonic() + STATE_EVERY_S
            while not service.draining:
                try:
                    row = await asyncio.wait_for(queue.get(), max(due - time.monotonic(), 0))
                except TimeoutError:
                    yield _event("state", await state_of(app))
                    due = time.monotonic() + STATE_EVERY_S
                else:
                    yield _event("decision", row)
        finally:
            service.recent.unsubscribe(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
