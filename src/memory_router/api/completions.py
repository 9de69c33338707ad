"""``POST /v1/chat/completions`` and ``POST /v1/completions``: parse, run, render.

These two are the hot path, so they are plain Starlette endpoints inside the FastAPI app:
FastAPI's per-request dependency resolution costs about as much as everything else the router
does for a request (see docs/benchmarks.md). The middleware and error handlers still apply.
Each endpoint makes one call (``RouterService.open_chat`` or ``open_completion``) and renders
the run it gets, whole or streamed. Two rules shape the rendering:

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
import secrets
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from typing import Any, Protocol, TypeVar

import structlog
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .. import sse
from ..errors import RouterError
from ..events import Event, Finish
from ..pipeline import Run
from ..service import RouterService
from ..translate.openai_out import (
    ChatCollector,
    ChatStreamEncoder,
    CompletionCollector,
    CompletionStreamEncoder,
)
from ..wire.openai import ChatCompletionRequest, CompletionRequest, parse_request
from .deps import JSONBytes, check_api_key, read_json

__all__ = [
    "ClientGone",
    "Primed",
    "SSEResponse",
    "new_id",
    "prime",
    "relay",
    "routes",
    "run_until_disconnect",
]

log = structlog.get_logger("memory_router.api")
T = TypeVar("T")


class StreamEncoder(Protocol):
    model: str

    def start(self) -> bytes | None: ...
    def encode(self, event: Event) -> list[bytes]: ...
    def error(self, error: RouterError) -> list[bytes]: ...


class Collector(Protocol):
    finish: Finish | None

    def add(self, event: Event) -> None: ...
    def response(self, response_id: str, model: str) -> dict[str, Any]: ...


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


async def relay(
    request: Request,
    run: Run,
    *,
    stream: bool,
    encoder: Callable[[str], StreamEncoder],
    collector: Collector,
    response_id: str,
    grace_s: float,
    keepalive_s: float,
) -> Response:
    """Answer a request from its run's events, and close the run (its record) once the
    answer is done.

    A stream waits up to ``grace_s`` for its first event before the headers go out (errors
    and fallbacks until then are told in the status and headers), then sends a keepalive
    comment every ``keepalive_s`` while a model is still loading (``routing.first_event_grace_s``
    and ``routing.keepalive_s``). ``encoder`` builds the stream's encoder for the model that
    answers."""
    if not stream:
        try:
            await run_until_disconnect(request, _collect(run.events(), collector))
        except ClientGone:
            run.close(gone=True)
            return Response(status_code=499)
        finally:
            run.close()  # after an error too: it is recorded, then rendered by the caller
        answer = collector.response(response_id, run.decision.model)
        return JSONBytes(answer, headers=run.headers())
    try:
        primed = await prime(run.events(), grace_s)
    except BaseException:
        run.close()
        raise
    headers = run.headers()
    body = _sse(primed, encoder, run, keepalive_s, told="x-router-fallback" in headers)
    return SSEResponse(body, headers=headers, on_close=lambda gone: run.close(gone))


async def _collect(events: AsyncGenerator[Event, None], collector: Collector) -> None:
    async with aclosing(events) as stream:
        async for event in stream:
            collector.add(event)


async def _sse(
    primed: Primed,
    encoder_for: Callable[[str], StreamEncoder],
    run: Run,
    keepalive_s: float,
    told: bool,
) -> AsyncGenerator[bytes, None]:
    """``told``: the headers already said the answer comes from a fallback."""
    encoder = encoder_for(run.decision.model)
    try:
        first = encoder.start()
        if first is not None:
            yield first
        # The first event (with keepalives while a model loads), then the rest straight from
        # the backend: one generator layer fewer per chunk on the hot path.
        async for first_event in primed.first_event(keepalive_s):
            if first_event is None:
                yield sse.comment("waiting for the model to load")
                continue
            if run.fallback is not None and not told:
                # The headers named the model (or host) decided on; another one answers.
                yield sse.comment(f"fallback: {run.fallback}")
            for chunk in encoder.encode(first_event):
                yield chunk
            async for event in primed.events:
                for chunk in encoder.encode(event):
                    yield chunk
    except RouterError as exc:
        # Headers are out: the failure travels as an error event, then the stream ends.
        log.warning("stream_failed", status=exc.status, error=exc.message)
        for chunk in encoder.error(exc):
            yield chunk
    except Exception:
        # Our own bug, after the headers: log it whole and tell the client plainly.
        run.outcome = "error:500"
        log.exception("stream_crashed")
        for chunk in encoder.error(RouterError("internal error in the router: see its log")):
            yield chunk
    finally:
        await primed.aclose()


# -- streaming: the first event, keepalives, a client that leaves --------------------


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


# -- the endpoints ------------------------------------------------------------------------


async def chat_completions(request: Request) -> Response:
    await check_api_key(request)
    service: RouterService = request.app.state.service
    chat = parse_request(ChatCompletionRequest, await read_json(request))
    run = await service.open_chat(chat)
    run.client = request.headers.get("user-agent", "")[:80] or None
    request.app.state.memory.observe(run.decision.workspace)
    response_id = new_id("chatcmpl")
    return await relay(
        request,
        run,
        stream=chat.stream,
        encoder=lambda model: ChatStreamEncoder(response_id, model, chat.include_usage),
        collector=ChatCollector(),
        response_id=response_id,
        grace_s=service.routing.first_event_grace_s,
        keepalive_s=service.routing.keepalive_s,
    )


async def completions(request: Request) -> Response:
    await check_api_key(request)
    service: RouterService = request.app.state.service
    completion = parse_request(CompletionRequest, await read_json(request))
    run = service.open_completion(completion)
    run.client = request.headers.get("user-agent", "")[:80] or None
    response_id = new_id("cmpl")
    return await relay(
        request,
        run,
        stream=completion.stream,
        encoder=lambda model: CompletionStreamEncoder(response_id, model, completion.include_usage),
        collector=CompletionCollector(),
        response_id=response_id,
        grace_s=service.routing.first_event_grace_s,
        keepalive_s=service.routing.keepalive_s,
    )


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
]
