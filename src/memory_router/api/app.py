"""``create_app(settings)``: the application, its error handlers and middleware."""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import Token
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidRequest, ModelNotFound, RouterError
from ..memory.service import MemoryService
from ..service import RouterService
from ..settings import Settings
from . import completions, dashboard, embeddings, memory, ops
from .deps import JSONBytes

__all__ = ["create_app"]

log = structlog.get_logger("memory_router.api")
Endpoint = Callable[[Request], Awaitable[Response]]


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("latin-1")[:64] or secrets.token_hex(8)
    return secrets.token_hex(8)


def _bind(request_id: str) -> Mapping[str, Token[Any]]:
    """Bind the request id to this request's log lines; reset with the returned tokens.

    (Not ``bound_contextvars``: it copies the whole context to save and restore other keys,
    on every request; each request runs in a task of its own.)"""
    return structlog.contextvars.bind_contextvars(request_id=request_id)


def _with_id(send: Send, request_id: str, scope: Scope) -> Send:
    raw_id = request_id.encode()

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-request-id", raw_id)]
            if message["status"] >= 400:  # every error answer, wherever it was made
                scope["app"].state.service.metrics.error(message["status"])
        await send(message)

    return send_with_id


class RequestIdMiddleware:
    """Give every request an id (or keep the client's), bind it to logs, echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        bound = _bind(request_id)
        try:
            await self.app(scope, receive, _with_id(send, request_id, scope))
        finally:
            structlog.contextvars.reset_contextvars(**bound)


class HotPath:
    """The completion endpoints straight from the server, everything else through FastAPI.

    FastAPI's middleware stack (error, telemetry, body-limit and exception layers, route
    matching) cost about a tenth of the router's CPU on a non-streamed request. A POST to a
    hot route gets the same request id, error envelopes and logging here; any other request,
    and every request when CORS is configured, goes through the whole stack.
    """

    def __init__(self, app: FastAPI, hot: dict[str, Endpoint]) -> None:
        self.app = app
        self._hot = hot

    @property
    def state(self) -> Any:
        """The application's state (its service, its memory), as on the app itself."""
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._hot.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        request_id = _request_id(scope)
        bound = _bind(request_id)
        try:
            try:
                response = await endpoint(Request(scope, receive))
            except RouterError as exc:
                response = await _router_error(None, exc)
            except Exception as exc:
                response = await _unexpected(None, exc)
            await response(scope, receive, _with_id(send, request_id, scope))
        finally:
            structlog.contextvars.reset_contextvars(**bound)


def _render(error: RouterError) -> Response:
    return JSONBytes(error.to_body(), status_code=error.status, headers=error.headers())


async def _router_error(_: Request | None, exc: Exception) -> Response:
    assert isinstance(exc, RouterError)
    if exc.status >= 500:
        log.warning("request_failed", status=exc.status, error=exc.message)
    return _render(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _render(ModelNotFound(f"no such endpoint: {request.url.path}", code="not_found"))
    error = RouterError(str(exc.detail))
    error.status = exc.status_code
    error.type = "invalid_request_error"
    return _render(error)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(part) for part in first["loc"]) or None
    return _render(InvalidRequest(f"invalid value for {param}: {first['msg']}", param=param))


async def _unexpected(_: Request | None, exc: Exception) -> Response:
    log.exception("internal_error", error=repr(exc))
    return _render(RouterError("internal error in the router: see its log for the traceback"))


def create_app(settings: Settings, service: RouterService | None = None) -> FastAPI | HotPath:
    """Build the application. With ``service`` given, its start-up is the caller's job."""
    owned = service is None
    router_service = service or RouterService(settings)
    memory_service = MemoryService(settings.config.memory, settings.config.ollama.base_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            await router_service.start()
        if settings.config.memory.enabled:
            await memory_service.start()
        examples: asyncio.Task[None] | None = None
        if settings.config.routing.classifier.embedding and settings.task_examples:
            # The example vote needs the embedder: load it in the background. Routed requests
            # wait for it (``RouterService.routing_ready``), so a request is never classified
            # one way at start-up and another way a second later; /ready says "starting".
            router_service.examples_pending()
            examples = asyncio.create_task(
                router_service.load_examples(
                    settings.task_examples, lambda: memory_service.embedder.embed_documents
                )
            )
        # What start-up built (modules, settings, tables, the examples' index: ~84,000
        # objects) lives as long as the process. Frozen, a full collection no longer walks
        # it: under bench/overhead.py's load one took 70-140 ms, stalling every request in
        # flight, in runs without the freeze.
        gc.collect()  # garbage first, or it would be frozen with the rest and never freed
        gc.freeze()
        if examples is not None:
            examples.add_done_callback(lambda _: gc.freeze())
        try:
            yield
        finally:
            gc.unfreeze()  # collectable again (a process that runs routers one after another)
            if examples is not None:
                examples.cancel()
            await memory_service.aclose()
            if owned:
                await router_service.aclose()

    app = FastAPI(
        title="Cline Memory Router",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        # No OpenTelemetry here: skip FastAPI's per-request check for a configured provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = router_service
    app.state.memory = memory_service
    app.state.api_keys = [
        key.get_secret_value().encode() for key in settings.config.server.api_keys
    ]
    app.state.max_body_bytes = settings.config.server.max_body_bytes
    app.add_exception_handler(RouterError, _router_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    if settings.config.server.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.config.server.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(RequestIdMiddleware)
    app.router.routes.extend(completions.routes)
    app.include_router(ops.router)
    # Off: every /v1/memory/* answers memory_disabled, and nothing opens the store.
    app.include_router(memory.router if settings.config.memory.enabled else memory.disabled_router)
    app.include_router(embeddings.router)
    app.include_router(dashboard.router)
    if settings.config.server.cors_origins:
        return app
    return HotPath(app, {route.path: route.endpoint for route in completions.routes})
