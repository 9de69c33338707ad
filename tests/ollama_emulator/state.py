"""The emulator's scheduler: which runners are resident, where, until when.

Modelled on Ollama's ``server/sched.go``. Scheduling decisions are made one request at a time
(FIFO, like Ollama's pending queue); a load itself runs outside that queue so other requests
proceed. Evictions take the loaded runner with the shortest keep_alive (ties by name), idle
ones first; a runner with requests in flight is never unloaded: the request waits for it to
drain. Everything here runs on the emulator's event loop; ``Recorder`` is the only part read
from other threads, and it locks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .config import FOREVER, CancelledChat, EmulatorConfig, LoadEvent, RecordedRequest, Script

__all__ = ["BODY", "EmulatorContext", "NoFitError", "Recorder", "Runner", "Scheduler"]

BODY: web.RequestKey[Any] = web.RequestKey("ollama_emulator_body")
"""The parsed JSON body of a request (None when empty or not JSON), set by the middleware."""


class NoFitError(Exception):
    """The model cannot be loaded even with nothing else resident."""


class Recorder:
    """Thread-safe log of what happened: requests, loads, unloads, cancelled chats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._loads: list[LoadEvent] = []
        self._unloads: list[tuple[str, str]] = []
        self._cancelled: list[CancelledChat] = []
        self._unload_requests: list[tuple[str, int]] = []

    def add_unload_request(self, model: str, in_flight: int) -> None:
        """Record an unload request (keep_alive 0, no prompt) and the model's in-flight count."""
        with self._lock:
            self._unload_requests.append((model, in_flight))

    def unload_requests(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._unload_requests)

    def add_request(self, item: RecordedRequest) -> None:
        """Record one HTTP request."""
        with self._lock:
            self._requests.append(item)

    def add_load(self, item: LoadEvent) -> None:
        """Record a finished load."""
        with self._lock:
            self._loads.append(item)

    def add_unload(self, model: str, reason: str) -> None:
        """Record an unload and why."""
        with self._lock:
            self._unloads.append((model, reason))

    def add_cancelled(self, item: CancelledChat) -> None:
        """Record a generation whose client went away."""
        with self._lock:
            self._cancelled.append(item)

    def snapshot(
        self,
    ) -> tuple[list[RecordedRequest], list[LoadEvent], list[tuple[str, str]], list[CancelledChat]]:
        """Copies of the four logs, taken together."""
        with self._lock:
            return (
                list(self._requests),
                list(self._loads),
                list(self._unloads),
                list(self._cancelled),
            )

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._requests.clear()
            self._loads.clear()
            self._unloads.clear()
            self._cancelled.clear()
            self._unload_requests.clear()


@dataclass(eq=False)
class Runner:
    """One loaded (or loading) model at one context size."""

    model: str
    num_ctx: int
    size: int
    size_vram: int
    keep_alive: float
    """Session duration in seconds (``inf`` = forever), the last request's value."""
    slots: asyncio.Semaphore
    refcount: int = 0
    expires_at: float | None = None
    """Loop-clock deadline, set when the runner goes idle; None while busy or forever."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: bool = False
    unload_when_idle: bool = False
    cpu: bool = False
    """Loaded with ``num_gpu: 0``: nothing on the GPU."""

    @property
    def loading(self) -> bool:
        """True until the simulated load has finished."""
        return not self.ready.is_set()

    def expires_in(self, now: float) -> float:
        """Seconds until this runner expires as reported by /api/ps (``inf`` = forever)."""
        if self.keep_alive == FOREVER:
            return FOREVER
        if self.expires_at is None:
            return self.keep_alive
        return max(self.expires_at - now, 0.0)


@dataclass(frozen=True)
class Lease:
    """A request's hold on a runner, returned by ``Scheduler.acquire``."""

    runner: Runner
    loaded: bool
    """True when this request loaded the runner."""


class Scheduler:
    """Ollama's memory model and runner lifecycle for one emulated machine."""

    def __init__(self, config: EmulatorConfig, recorder: Recorder) -> None:
        self.config = config
        self.recorder = recorder
        self.runners: dict[str, Runner] = {}
        self._queue = asyncio.Lock()
        self._changed = asyncio.Event()
        self._expiry_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background task that unloads runners whose keep_alive ran out."""
        self._expiry_task = asyncio.get_running_loop().create_task(self._expiry_loop())

    async def close(self) -> None:
        """Stop the expiry task."""
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
            self._expiry_task = None

    def _notify(self) -> None:
        """Wake everything waiting for a change of runner state."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, within: float | None = None) -> None:
        """Wait until the runner state changes (or ``within`` seconds pass)."""
        changed = self._changed  # bind now: _notify replaces the event
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await changed.wait()

    async def _expiry_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.expire_due()
            deadlines = [r.expires_at for r in self.runners.values() if r.expires_at is not None]
            timeout = max(min(deadlines) - loop.time(), 0.0) if deadlines else None
            await self._wait_change(timeout)

    # -- memory --------------------------------------------------------------------------

    def free(self) -> tuple[int, int]:
        """Free VRAM and free RAM in bytes, given what is resident."""
        vram = sum(r.size_vram for r in self.runners.values())
        ram = sum(r.size - r.size_vram for r in self.runners.values())
        return self.config.vram_bytes - vram, self.config.ram_bytes - ram

    def _place(self, size: int, cpu: bool = False) -> int | None:
        """Bytes of ``size`` that go to VRAM if it can be loaded now, else None.

        ``cpu`` (``num_gpu: 0``): Ollama offers the load no GPU at all (``server/sched.go``),
        and with no layers asked for the GPU its fit check looks at system memory only
        (``llm/server.go``, ``verifyLayout``), so the model loads beside others in RAM."""
        free_vram, free_ram = self.free()
        if cpu:
            return 0 if size <= free_ram else None
        if self.runners and self.config.strict_gpu_fit:
            return size if size <= free_vram else None
        on_gpu = max(min(size, free_vram), 0)
        return on_gpu if size - on_gpu <= free_ram else None

    def _victim(self) -> Runner | None:
        """The runner Ollama would unload next: idle ones first, shortest keep_alive, name."""
        ordered = sorted(self.runners.values(), key=lambda r: (r.keep_alive, r.model))
        for runner in ordered:
            if runner.refcount == 0:
                return runner
        return None

    # -- runner lifecycle ----------------------------------------------------------------

    def expire_due(self) -> None:
        """Unload idle runners whose keep_alive has run out (Ollama never lists them)."""
        now = asyncio.get_running_loop().time()
        for runner in list(self.runners.values()):
            if runner.refcount == 0 and runner.expires_at is not None and runner.expires_at <= now:
                self._unload(runner, "keep_alive_expired")

    def _unload(self, runner: Runner, reason: str) -> None:
        if self.runners.get(runner.model) is runner:
            del self.runners[runner.model]
            self.recorder.add_unload(runner.model, reason)
            self._notify()

    def in_flight(self, model: str) -> int:
        """Requests holding or queued on the model's runner."""
        runner = self.runners.get(model)
        return runner.refcount if runner else 0

    async def acquire(
        self, model: str, num_ctx: int, keep_alive: float, cpu: bool = False
    ) -> Lease:
        """Get a ready runner for ``model`` at ``num_ctx``, loading (and evicting) as needed.

        Raises NoFitError when the model cannot fit even on an empty machine."""
        while True:
            runner, load_info = await self._schedule(model, num_ctx, keep_alive, cpu)
            if load_info is not None:
                await self._load(runner, *load_info)
                return Lease(runner, loaded=True)
            try:
                await runner.ready.wait()
            except BaseException:
                self.release(runner)
                raise
            if not runner.failed:
                return Lease(runner, loaded=False)
            runner.refcount -= 1  # the load was aborted: start over

    async def _schedule(
        self, model: str, num_ctx: int, keep_alive: float, cpu: bool = False
    ) -> tuple[Runner, tuple[str, list[str]] | None]:
        """Decide, one request at a time, which runner serves; reserve it (refcount + 1)."""
        spec = self.config.models[model]
        size = spec.footprint(num_ctx, self.config.num_parallel)
        async with self._queue:
            evicted: list[str] = []
            reason = "cold"
            while True:
                self.expire_due()
                current = self.runners.get(model)
                if current is not None and current.num_ctx == num_ctx and current.cpu == cpu:
                    current.refcount += 1
                    current.keep_alive = keep_alive
                    current.expires_at = None
                    current.unload_when_idle = False
                    return current, None
                victim: Runner | None
                if current is not None:  # Ollama reloads for a new num_ctx or num_gpu
                    victim = current
                    reason = "num_ctx_change" if current.num_ctx != num_ctx else "num_gpu_change"
                elif len(self.runners) >= self.config.max_loaded_models:
                    victim = self._victim()
                else:
                    on_gpu = self._place(size, cpu)
                    if on_gpu is not None:
                        runner = self._reserve(model, num_ctx, size, on_gpu, keep_alive)
                        runner.cpu = cpu
                        return runner, (
                            reason,
                            evicted,
                        )
                    if not self.runners:
                        raise NoFitError(_no_fit_message(size, self.config))
                    victim = self._victim()
                if victim is None or victim.refcount > 0:
                    await self._wait_change()  # never unload a busy runner: wait for it to drain
                    continue
                if victim.model != model:
                    evicted.append(victim.model)
                self._unload(victim, "evicted" if victim.model != model else reason)

    def _reserve(
        self, model: str, num_ctx: int, size: int, on_gpu: int, keep_alive: float
    ) -> Runner:
        runner = Runner(
            model=model,
            num_ctx=num_ctx,
            size=size,
            size_vram=on_gpu,
            keep_alive=keep_alive,
            slots=asyncio.Semaphore(self.config.num_parallel),
            refcount=1,
        )
        self.runners[model] = runner
        self._notify()
        return runner

    async def _load(self, runner: Runner, reason: str, evicted: list[str]) -> None:
        """Simulate the load; if the loading request goes away, abort it like Ollama."""
        spec = self.config.models[runner.model]
        started = time.perf_counter()
        try:
            await asyncio.sleep(spec.weights_bytes / 1e9 * self.config.load_seconds_per_gb)
        except BaseException:
            runner.failed = True
            runner.refcount -= 1
            if self.runners.get(runner.model) is runner:
                del self.runners[runner.model]  # an aborted load leaves nothing resident
                self._notify()
            runner.ready.set()
            raise
        runner.ready.set()
        self.recorder.add_load(
            LoadEvent(
                model=runner.model,
                num_ctx=runner.num_ctx,
                reason=reason,
                duration_s=time.perf_counter() - started,
                evicted=evicted,
                size=runner.size,
                size_vram=runner.size_vram,
            )
        )

    def release(self, runner: Runner) -> None:
        """A request is done with ``runner``: start its keep_alive clock or unload it."""
        runner.refcount -= 1
        if runner.refcount > 0 or self.runners.get(runner.model) is not runner:
            return
        if runner.keep_alive == 0 or runner.unload_when_idle:
            self._unload(runner, "keep_alive_0")
            return
        if runner.keep_alive != FOREVER:
            runner.expires_at = asyncio.get_running_loop().time() + runner.keep_alive
        self._notify()

    def unload(self, model: str) -> None:
        """Unload ``model`` now, or as soon as its in-flight requests finish (keep_alive 0)."""
        runner = self.runners.get(model)
        if runner is None:
            return
        if runner.refcount == 0:
            self._unload(runner, "keep_alive_0")
        else:
            runner.keep_alive = 0
            runner.unload_when_idle = True


def _no_fit_message(size: int, config: EmulatorConfig) -> str:
    total = config.vram_bytes + config.ram_bytes
    return (
        f"model requires more system memory ({size / 1024**3:.1f} GiB) "
        f"than is available ({total / 1024**3:.1f} GiB)"
    )


class EmulatorContext:
    """Everything the request handlers share; created on the emulator's event loop."""

    def __init__(self, config: EmulatorConfig, recorder: Recorder) -> None:
        self.config = config
        self.recorder = recorder
        self.scheduler = Scheduler(config, recorder)
        self.scripts: collections.deque[Script] = collections.deque()
        """Scripted replies, FIFO; deque appends/pops are atomic, so other threads may add."""
        self.shutdown = asyncio.Event()
        """Set when the emulator stops: stalled replies give up."""
        self.active = 0
        """Generation requests waiting for or holding a runner (compared with max_queue)."""
        self.tool_call_seq = 0
