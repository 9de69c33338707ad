"""The emulator's HTTP app and ``OllamaEmulator``, which serves it from a background thread.

``OllamaEmulator`` owns an event loop in its own thread, so synchronous tests and benchmark
scripts can use it; everything it exposes to other threads is either locked (the Recorder) or
computed on its loop (``in_flight``, ``loaded``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from .chat import GenerationEndpoints, error_response
from .config import (
    CancelledChat,
    EmulatorConfig,
    LoadEvent,
    RecordedRequest,
    Script,
    reference_profile,
)
from .routes import Routes
from .state import BODY, EmulatorContext, Recorder

__all__ = ["OllamaEmulator", "create_app"]

T = TypeVar("T")


def create_app(ctx: EmulatorContext) -> web.Application:
    """The aiohttp application: records every request, answers errors as ``{"error": ...}``."""

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        request[BODY] = parsed
        ctx.recorder.add_request(
            RecordedRequest(
                request.method,
                request.path,
                parsed,
                CIMultiDictProxy(CIMultiDict(request.headers)),
                raw,
            )
        )
        if raw and parsed is None:
            return error_response(400, "invalid character in request body: not valid JSON")
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed:
            return error_response(405, "405 method not allowed")
        except web.HTTPNotFound:
            return error_response(404, "404 page not found")

    app = web.Application(middlewares=[record])
    routes = Routes(ctx)
    generation = GenerationEndpoints(ctx)
    app.router.add_get("/", routes.root)
    app.router.add_get("/api/version", routes.version)
    app.router.add_get("/api/tags", routes.tags)
    app.router.add_get("/api/ps", routes.ps)
    app.router.add_post("/api/show", routes.show)
    app.router.add_post("/api/embed", routes.embed)
    app.router.add_post("/api/embeddings", routes.embed)
    app.router.add_post("/api/chat", generation.chat)
    app.router.add_post("/api/generate", generation.generate)
    return app


class OllamaEmulator:
    """A real Ollama-compatible HTTP server on 127.0.0.1, run from a background thread.

    ``start()`` binds (port 0 = a free port), ``stop()`` shuts down cleanly; also a context
    manager. Scripts queued with ``enqueue`` answer the next generation requests in order.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or reference_profile()
        self.host = host
        self.port = port
        self._recorder = Recorder()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ctx: EmulatorContext | None = None
        self._runner: web.AppRunner | None = None
        self._pending_scripts: list[Script] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> OllamaEmulator:
        """Start the loop thread and bind the server; returns self."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="ollama-emulator", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._astart()).result(timeout=10)
        except BaseException:
            self._halt_loop()
            raise
        return self

    async def _astart(self) -> None:
        ctx = EmulatorContext(self.config, self._recorder)
        ctx.scripts.extend(self._pending_scripts)
        self._pending_scripts.clear()
        ctx.scheduler.start()
        self._ctx = ctx
        runner = web.AppRunner(
            create_app(ctx), handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        self._runner = runner
        try:
            await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
        except BaseException:
            await self._astop()
            raise
        self.port = runner.addresses[0][1]

    def stop(self) -> None:
        """Stop serving: stalled replies end, connections close, the thread exits."""
        if self._thread is None:
            return
        try:
            self._call(self._astop()).result(timeout=10)
        finally:
            self._halt_loop()

    async def _astop(self) -> None:
        if self._ctx is not None:
            self._ctx.shutdown.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._ctx is not None:
            await self._ctx.scheduler.close()
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _halt_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> OllamaEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self._loop is None:
            raise RuntimeError("emulator not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    # -- scripting and inspection --------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        return f"http://{self.host}:{self.port}"

    def enqueue(self, *scripts: Script) -> None:
        """Queue scripted replies for the next generation requests (FIFO)."""
        if self._ctx is None:
            self._pending_scripts.extend(scripts)
        else:
            self._ctx.scripts.extend(scripts)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order, with its body as sent."""
        return self._recorder.snapshot()[0]

    @property
    def loads(self) -> list[LoadEvent]:
        """Every completed load, in order."""
        return self._recorder.snapshot()[1]

    @property
    def unloads(self) -> list[tuple[str, str]]:
        """(model, reason): "keep_alive_expired", "keep_alive_0", "evicted", "num_ctx_change"."""
        return self._recorder.snapshot()[2]

    @property
    def unload_requests(self) -> list[tuple[str, int]]:
        """Each ``keep_alive: 0`` unload request: (model, requests in flight on it then)."""
        return self._recorder.unload_requests()

    @property
    def cancelled(self) -> list[CancelledChat]:
        """Generation requests whose client went away before the final line."""
        return self._recorder.snapshot()[3]

    def clear(self) -> None:
        """Forget recorded requests, loads, unloads and cancellations (not the runners)."""
        self._recorder.clear()

    def in_flight(self, model: str) -> int:
        """Requests holding or waiting on ``model``'s runner."""
        ctx = self._require_ctx()
        return self._call(_on_loop(lambda: ctx.scheduler.in_flight(model))).result(timeout=5)

    def loaded(self) -> list[dict[str, Any]]:
        """What /api/ps would list now."""
        routes = Routes(self._require_ctx())
        return self._call(_on_loop(routes.loaded)).result(timeout=5)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 2.0) -> None:
        """Poll ``predicate`` until true; raise TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(0.005)

    def _require_ctx(self) -> EmulatorContext:
        if self._ctx is None:
            raise RuntimeError("emulator not started")
        return self._ctx


async def _on_loop(fn: Callable[[], T]) -> T:
    return fn()
