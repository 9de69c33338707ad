"""Relaying a backend's events to a client, and stopping the backend when the client leaves.

Two rules shape this module:

- An error that happens before the first byte gets a real HTTP status. So the first event is
  awaited before the response starts, for a short grace period; a model that is still loading
  after that gets the headers and SSE comment keepalives while the client waits.
- A client that disconnects makes the router close the upstream request at once, even while
  the upstream is silent. So a listener watches for ``http.disconnect`` alongside the stream
  and cancels it; closing the event iterator closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from typing import Any, TypeVar

import structlog
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import RouterError
from ..events import Event

__all__ = ["ClientGone", "Primed", "SSEResponse", "prime", "run_until_disconnect"]

log = structlog.get_logger("memory_router.api")
T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before a non-streamed answer was ready."""


class Primed:
    """An event stream whose first event has been awaited (or is still on its way)."""

    def __init__(self, events: AsyncGenerator[Event, None], first: asyncio.Task[Event]) -> None:
        self.events = events
        self.first = first

    async def aclose(self) -> None:
        if not self.first.done():
            self.first.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, RouterError):
                await self.first
        await self.events.aclose()

    async def first_event(self, keepalive_s: float) -> AsyncGenerator[Event | None, None]:
        """Yield ``None`` every ``keepalive_s`` while the first event is pending, then it.

        The rest of the stream is read from ``events`` directly (one generator layer fewer
        per chunk on the hot path)."""
        while not self.first.done():
            done, _ = await asyncio.wait({self.first}, timeout=keepalive_s)
            if not done:
                yield None
        try:
            yield self.first.result()
        except StopAsyncIteration:
            return


async def prime(events: AsyncGenerator[Event, None], grace_s: float) -> Primed:
    """Start the stream and wait up to ``grace_s`` for its first event.

    A ``RouterError`` raised before then propagates, so the caller can answer with a status.
    """
    first: asyncio.Task[Event] = asyncio.ensure_future(anext(events))
    primed = Primed(events, first)
    try:
        await asyncio.wait({first}, timeout=grace_s)
        if first.done() and first.exception() is not None:
            exc = first.exception()
            if isinstance(exc, RouterError):
                raise exc
    except BaseException:
        await primed.aclose()
        raise
    return primed


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response that cancels its body when the client disconnects.

    Starlette's own streaming response notices a disconnect only when it next writes (under
    ASGI spec 2.4), which never happens while the upstream is silent.
    """

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        headers: dict[str, str],
        on_close: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(body, headers=headers, media_type="text/event-stream")
        self.generator = body
        self.on_close = on_close
        self.raw_headers.append((b"cache-control", b"no-cache"))
        self.raw_headers.append((b"x-accel-buffering", b"no"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pump = asyncio.create_task(self._pump(send))
        listen = asyncio.create_task(_wait_for_disconnect(receive))
        done, _ = await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        disconnected = listen in done and not pump.done()
        for task in (pump, listen):
            if not task.done():
                task.cancel()
        results = await asyncio.gather(pump, listen, return_exceptions=True)
        if self.on_close is not None:
            self.on_close(disconnected)
        error = results[0]
        if isinstance(error, BaseException) and not isinstance(
            error, asyncio.CancelledError | OSError
        ):
            raise error

    async def _pump(self, send: Send) -> None:
        async with aclosing(self.generator) as body:
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def run_until_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` in this task; cancel it (closing its upstream) if the client disconnects.

    One watcher task per request, not two tasks and a wait: this is on every non-streamed
    request's path.
    """
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _wait_for_disconnect(request.receive)
        gone = True
        current.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            raise ClientGone() from None
        raise
    finally:
        watcher.cancel()
