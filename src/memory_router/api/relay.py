"""Turn a decision's event stream into the HTTP response, streamed or whole, and log it."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Protocol

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response

from .. import sse
from ..after import AfterResponse
from ..errors import RouterError
from ..events import Event, Finish
from ..routing.decision import Decision
from .streaming import ClientGone, Primed, SSEResponse, prime, run_until_disconnect

__all__ = ["decision_headers", "relay"]

log = structlog.get_logger("memory_router.api")


class StreamEncoder(Protocol):
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


def decision_headers(decision: Decision) -> dict[str, str]:
    return {"x-router-model": decision.model, "x-router-reason": decision.reason_header()}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def _log_done(
    after: AfterResponse,
    decision: Decision,
    started: float,
    finish: Finish | None,
    outcome: str,
) -> None:
    """Log the request's line once the answer is on its way (timed up to now)."""
    ms = round((time.perf_counter() - started) * 1000, 1)
    after.add(_log_line, decision, ms, finish, outcome)


def _log_line(decision: Decision, ms: float, finish: Finish | None, outcome: str) -> None:
    usage = finish.usage if finish else None
    log.info(
        "request",
        model=decision.model,
        task=decision.task,
        routed=decision.routed,
        outcome=outcome,
        finish=finish.reason if finish else None,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        load_ns=finish.stats.get("load_duration") if finish else None,
        ms=ms,
    )


async def relay(
    request: Request,
    events: AsyncGenerator[Event, None],
    decision: Decision,
    *,
    stream: bool,
    after: AfterResponse,
    encoder: StreamEncoder,
    collector: Collector,
    response_id: str,
    grace_s: float,
    keepalive_s: float,
) -> Response:
    """Answer a request from its event stream.

    A stream waits up to ``grace_s`` for its first event before the headers go out (errors
    until then get a real status), then sends a keepalive comment every ``keepalive_s`` while
    a model is still loading (``routing.first_event_grace_s`` and ``routing.keepalive_s``)."""
    started = time.perf_counter()
    headers = decision_headers(decision)
    if not stream:
        try:
            await run_until_disconnect(request, _collect(events, collector))
        except ClientGone:
            _log_done(after, decision, started, None, "client_gone")
            return Response(status_code=499)
        _log_done(after, decision, started, collector.finish, "ok")
        return JSONBytes(collector.response(response_id, decision.model), headers=headers)

    primed = await prime(events, grace_s)
    state: dict[str, Any] = {"finish": None, "outcome": "ok"}

    def on_close(disconnected: bool) -> None:
        if disconnected:
            state["outcome"] = "client_gone"
        _log_done(after, decision, started, state["finish"], state["outcome"])

    body = _sse(primed, encoder, state, keepalive_s)
    return SSEResponse(body, headers=headers, on_close=on_close)


async def _collect(events: AsyncGenerator[Event, None], collector: Collector) -> None:
    async with aclosing(events) as stream:
        async for event in stream:
            collector.add(event)


async def _sse(
    primed: Primed, encoder: StreamEncoder, state: dict[str, Any], keepalive_s: float
) -> AsyncGenerator[bytes, None]:
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
            if isinstance(first_event, Finish):
                state["finish"] = first_event
            for chunk in encoder.encode(first_event):
                yield chunk
            async for event in primed.events:
                if isinstance(event, Finish):
                    state["finish"] = event
                for chunk in encoder.encode(event):
                    yield chunk
    except RouterError as exc:
        # Headers are out: the failure travels as an error event, then the stream ends.
        state["outcome"] = f"error:{exc.status}"
        log.warning("stream_failed", status=exc.status, error=exc.message)
        for chunk in encoder.error(exc):
            yield chunk
    except Exception:
        # Our own bug, after the headers: log it whole and tell the client plainly.
        state["outcome"] = "error:500"
        log.exception("stream_crashed")
        for chunk in encoder.error(RouterError("internal error in the router: see its log")):
            yield chunk
    finally:
        await primed.aclose()
