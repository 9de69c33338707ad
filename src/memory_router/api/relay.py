"""Turn a decision's event stream into the HTTP response, streamed or whole, and log it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any, Protocol

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response

from .. import sse
from ..errors import RouterError
from ..events import Event, Finish
from ..pipeline import Run
from .streaming import ClientGone, Primed, SSEResponse, prime, run_until_disconnect

__all__ = ["new_id", "relay"]

log = structlog.get_logger("memory_router.api")


class StreamEncoder(Protocol):
    model: str

    def start(self) -> bytes | None: ...
    def encode(self, event: Event) -> list[bytes]: ...
    def error(self, error: RouterError) -> list[bytes]: ...


class Collector(Protocol):
    finish: Finish | None

    def add(self, event: Event) -> None: ...
    def response(self, response_id: str, model: str) -> dict[str, Any]: ...


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


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
    body = _sse(primed, encoder, run, keepalive_s)
    return SSEResponse(body, headers=run.headers(), on_close=lambda gone: run.close(gone))


async def _collect(events: AsyncGenerator[Event, None], collector: Collector) -> None:
    async with aclosing(events) as stream:
        async for event in stream:
            collector.add(event)


async def _sse(
    primed: Primed, encoder_for: Callable[[str], StreamEncoder], run: Run, keepalive_s: float
) -> AsyncGenerator[bytes, None]:
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
            if run.fallback is not None and run.decision.model != encoder.model:
                # The headers named the model decided on; the answer comes from another.
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
