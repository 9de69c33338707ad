"""What each Ollama host holds, kept current; admission, eviction and warm-up.

The routing policy is pure; this is the state it reads and the actions its decisions imply:

- a ``Snapshot`` per Ollama backend from ``/api/ps`` (polled, and refreshed after requests),
  with the router's own in-flight counts and last-use times;
- a ``Profile`` per model: weights from ``/api/tags``, KV-cache bytes per token from
  ``/api/show``, corrected by the sizes ``/api/ps`` reports once loaded; load time from the
  ``load_duration`` Ollama reports, with size over disk bandwidth as the prior;
- admission: past a model's queue limit a request gets 429 with ``Retry-After``;
- eviction: a decision's victims are unloaded (``keep_alive: 0``) only once their in-flight
  requests have finished, never while they run;
- warm-up: pinned models are loaded at start-up when they fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from .backends.base import Backend, HoldsResidency
from .domain import placement
from .errors import RateLimited, RouterError
from .routing.decision import Decision
from .routing.policy import View
from .routing.residency import Budget, Profile, Resident, Snapshot, kv_bytes_from_show, plan
from .settings import ModelSpec, RoutingSettings

__all__ = ["Admission", "ResidencyMonitor", "declared_capabilities"]

log = structlog.get_logger("memory_router.monitor")

_LOAD_LEARN = 0.5  # weight of a new load_duration against the running estimate
_DRAIN_TIMEOUT_S = 600.0
_REFRESH_MIN_S = 1.0


def _pinned_now(expires_at: str | None) -> bool:
    """Whether ``/api/ps`` shows a model loaded with a negative keep_alive (by anyone):
    Ollama gives it an expiry centuries ahead."""
    year = (expires_at or "")[:4]
    return year.isdigit() and int(year) >= 2200


def _pinned(spec: ModelSpec) -> bool:
    value = spec.keep_alive
    try:
        return float(value) < 0
    except (TypeError, ValueError):
        return isinstance(value, str) and value.startswith("-")


@dataclass(slots=True)
class _Host:
    backend: HoldsResidency
    budget: Budget
    strict_gpu_fit: bool
    loaded: tuple[Resident, ...] = ()
    pending: dict[str, Resident] = field(default_factory=dict)
    """Loads admitted but not yet listed by /api/ps: kept across refreshes until they are."""
    known: bool = False
    profiled: bool = False
    """Its models' sizes and capabilities have been read (``/api/tags`` answered)."""
    profiled_at: float = 0.0
    evicting: asyncio.Lock = field(default_factory=asyncio.Lock)
    absent: set[str] = field(default_factory=set)
    """Configured models its ``/api/tags`` did not list (not pulled there)."""


class Admission:
    """A request's place on a model: running once started, released exactly once."""

    def __init__(self, monitor: ResidencyMonitor, model: str, slot: str, changes: bool) -> None:
        self._monitor = monitor
        self.model = model
        self.slot = slot
        self._changes = changes
        self._started = 0.0
        self._done = False

    async def start(self) -> None:
        """Wait for one of the model's ``max_running_per_model`` places, then count as
        running on the backend (room has been made)."""
        if not self._started and not self._done:
            await self._monitor._turn(self.slot)
            self._started = time.monotonic()

    def try_start(self) -> bool:
        """Count as running now if one of the model's places is free; else False."""
        if not self._started and not self._done and self._monitor._free(self.slot):
            self._monitor._count_running(self.slot, +1)
            self._started = time.monotonic()
        return bool(self._started)

    def release(self) -> None:
        if not self._done:
            self._done = True
            if self._started:
                self._monitor._count_running(self.slot, -1)
                self._monitor._learn_duration(self.model, time.monotonic() - self._started)
            self._monitor._release(self.slot, self._changes)


def declared_capabilities(catalog: list[ModelSpec]) -> dict[str, frozenset[str]]:
    """The capabilities ``models.yaml`` states, per model that states them."""
    return {
        spec.name: frozenset(spec.capabilities) for spec in catalog if spec.capabilities is not None
    }


class ResidencyMonitor:
    """Per-host residency, per-model profiles and in-flight counts."""

    def __init__(
        self,
        settings: RoutingSettings,
        catalog: list[ModelSpec],
        backends: Mapping[str, Backend],
        budgets: Mapping[str, Budget],
        clock: Any = time.monotonic,
    ) -> None:
        self.settings = settings
        self.catalog = {spec.name: spec for spec in catalog}
        self.placements = list(catalog)
        """Each model once per host that serves it (a pool's members)."""
        self.hosts: dict[str, _Host] = {}
        for name, backend in backends.items():
            if isinstance(backend, HoldsResidency) and name in budgets:
                budget = budgets[name]
                self.hosts[name] = _Host(backend, budget, strict_gpu_fit=budget.vram_bytes > 0)
        self.profiles: dict[str, Profile] = {}
        self.capabilities: dict[str, frozenset[str]] = declared_capabilities(catalog)
        """What each model takes: as configured, else as ``/api/show`` says."""
        self.in_flight: dict[str, int] = {}
        """Requests admitted per model on a host (``placement``): running, or waiting for
        room to be made."""
        self.request_s: dict[str, float] = {}
        """A running average of how long a request takes on each model."""
        self.running: dict[str, int] = {}
        """Requests running on each model on its host (``placement``). Evictions wait for
        these only: two
        requests each waiting for the other's model to be unloaded must not deadlock."""
        self.last_used: dict[str, float] = {}
        """When each model on a host (``placement``) was last used through the router."""
        self._sizes: dict[str, dict[int, int]] = {}  # model -> {num_ctx: size from /api/ps}
        self._changed = asyncio.Event()
        self._clock = clock
        self._refresh_task: asyncio.Task[None] | None = None
        self._refreshed_at = -_REFRESH_MIN_S
        self._poller: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- start-up ---------------------------------------------------------------------------

    async def start(self, background: bool = True) -> None:
        """Read profiles and residency; then (``background``) poll and warm pinned models."""
        for name, host in self.hosts.items():
            await self._read_profiles(name, host)
        await self.refresh()
        if not background:
            return
        self._poller = asyncio.create_task(self._poll())
        if self.settings.warm_pinned:
            self._spawn(self._warm())

    async def _read_profiles(self, name: str, host: _Host) -> None:
        try:
            sizes = {model.name: model.size_bytes for model in await host.backend.list_models()}
        except RouterError as exc:
            log.warning("residency_tags_failed", backend=name, error=exc.message)
            return
        host.profiled, host.profiled_at = True, self._clock()
        host.absent = set()
        for spec in self.placements:
            if spec.backend != name:
                continue  # another host's
            weights = sizes.get(spec.name) or sizes.get(f"{spec.name}:latest")
            if not weights:
                host.absent.add(spec.name)  # not pulled here: /ready says so
                continue
            if spec.name in self.profiles:
                continue  # known already (and perhaps corrected since)
            try:
                show = await host.backend.show(spec.name)
            except RouterError as exc:
                log.warning("residency_show_failed", model=spec.name, error=exc.message)
                show = {}
            capabilities = show.get("capabilities")
            # None or empty (an Ollama too old to say): nothing known, nothing held against it.
            if spec.capabilities is None and isinstance(capabilities, list) and capabilities:
                self.capabilities[spec.name] = frozenset(str(c) for c in capabilities)
            kv = kv_bytes_from_show(show.get("model_info") or {}) or 0
            self.profiles[spec.name] = Profile(
                model=spec.name,
                weights_bytes=int(weights),
                kv_bytes_per_token=kv,
                load_s=int(weights) / self.settings.budget.disk_bytes_per_s,
            )

    async def aclose(self) -> None:
        tasks = [t for t in (self._poller, self._refresh_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- residency ------------------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_s)
            await self.refresh()

    async def refresh(self) -> None:
        """Read ``/api/ps`` of every host; learn footprints from what is loaded."""
        for name, host in self.hosts.items():
            try:
                loaded = await host.backend.loaded_models()
            except RouterError as exc:
                host.known = False
                log.debug("residency_ps_failed", backend=name, error=exc.message)
                continue
            residents = []
            for item in loaded:
                model = (
                    item.name if item.name in self.catalog else item.name.removesuffix(":latest")
                )
                num_ctx = item.context_length or 0
                residents.append(
                    Resident(
                        model=model,
                        num_ctx=num_ctx,
                        size=item.size_bytes,
                        size_vram=item.size_vram_bytes,
                        pinned=_pinned_now(item.expires_at)
                        or (model in self.catalog and _pinned(self.catalog[model])),
                        warm=model in self.catalog and self.catalog[model].warm,
                        expires_at=item.expires_at,
                    )
                )
                if num_ctx and model in self.profiles:
                    self._learn_size(model, num_ctx, item.size_bytes)
            listed = {r.model for r in residents}
            for model in [
                m for m in host.pending if m in listed or not self.in_flight.get(placement(name, m))
            ]:
                del host.pending[model]  # listed now, or its requests are over
            residents += [r for m, r in host.pending.items() if m not in listed]
            host.loaded = tuple(residents)
            host.known = True
            if self._profiles_due(name, host, listed):
                await self._read_profiles(name, host)

    def _profiles_due(self, name: str, host: _Host, listed: set[str]) -> bool:
        """Read a host's sizes again: it was down when they were read, a model it lists has
        none, or (every four polls at most) a model of its was not pulled then."""
        if not host.profiled or any(m in self.catalog and m not in self.profiles for m in listed):
            return True
        missing = any(
            spec.backend == name and spec.name not in self.profiles
            for spec in self.catalog.values()
        )
        return missing and self._clock() - host.profiled_at >= 4 * self.settings.poll_s

    def refresh_soon(self, changed: bool = False) -> None:
        """Schedule one refresh after a request ends: coalesced, and at most once a second
        unless the request changed what is loaded."""
        now = self._clock()
        if not changed and now - self._refreshed_at < _REFRESH_MIN_S:
            return
        if self._refresh_task is None or self._refresh_task.done():
            self._refreshed_at = now
            self._refresh_task = asyncio.create_task(self.refresh())

    def _learn_size(self, model: str, num_ctx: int, size: int) -> None:
        seen = self._sizes.setdefault(model, {})
        if seen.get(num_ctx) == size:
            return
        seen[num_ctx] = size
        profile = self.profiles[model]
        if len(seen) >= 2:  # two context sizes: solve for KV bytes per token and overhead
            (c1, s1), (c2, s2) = sorted(seen.items())[-2:]
            kv = max((s2 - s1) // max(c2 - c1, 1), 0)
        else:
            kv = profile.kv_bytes_per_token
        overhead = size - profile.weights_bytes - kv * num_ctx
        if overhead < 0:  # the KV estimate was too high for what Ollama reports
            kv = max((size - profile.weights_bytes) // num_ctx, 0)
            overhead = size - profile.weights_bytes - kv * num_ctx
        self.profiles[model] = replace(
            profile, kv_bytes_per_token=kv, overhead_bytes=overhead, measured=True
        )

    def learn_load(self, model: str, load_duration_ns: Any, expected: bool) -> None:
        """Learn a model's load time from the ``load_duration`` of a request that loaded it."""
        profile = self.profiles.get(model)
        if profile is None or not isinstance(load_duration_ns, int | float):
            return
        seconds = load_duration_ns / 1e9
        if not expected and seconds < 1.0:
            return  # no load happened: Ollama reports a few ms of bookkeeping
        first = not profile.measured or profile.load_s == 0
        load_s = seconds if first else profile.load_s + _LOAD_LEARN * (seconds - profile.load_s)
        self.profiles[model] = replace(profile, load_s=load_s, measured=True)

    def view(self) -> View:
        """What the policy sees now."""
        now = self._clock()
        snapshots: dict[str, Snapshot] = {}
        for name, host in self.hosts.items():
            # Built field by field: dataclasses.replace costs several times more, per request.
            residents = tuple(
                Resident(
                    r.model,
                    r.num_ctx,
                    r.size,
                    r.size_vram,
                    in_flight=self.in_flight.get(placement(name, r.model), 0),
                    idle_s=now - used
                    if (used := self.last_used.get(placement(name, r.model)))
                    else r.idle_s,
                    pinned=r.pinned,
                    warm=r.warm,
                    expires_at=r.expires_at,
                )
                for r in host.loaded
            )
            snapshots[name] = Snapshot(
                budget=host.budget,
                resident=residents,
                strict_gpu_fit=host.strict_gpu_fit,
                known=host.known,
            )
        idle: dict[str, float] = {}  # per model: its most recent use on any host
        for key, at in self.last_used.items():
            model = key.partition("/")[2]
            idle[model] = min(idle.get(model, math.inf), now - at)
        # Half a request each on average still to run, per request running.
        busy: dict[str, float] = {}
        for key, count in self.running.items():
            model = key.partition("/")[2]
            if count and model in self.request_s:
                busy[model] = max(busy.get(model, 0.0), count * self.request_s[model] / 2)
        # A model not pulled on a host is tried there only when nothing else can serve it
        # (then Ollama's 404 tells the user to pull it).
        absent = {
            placement(name, model): f"not pulled on {name}"
            for name, host in self.hosts.items()
            for model in host.absent
        }
        return View(
            snapshots=snapshots,
            profiles=dict(self.profiles),
            idle_s=idle,
            busy_s=busy,
            capabilities=self.capabilities,
            avoid=absent,
        )

    # -- admission and eviction -----------------------------------------------------------

    def admit(self, decision: Decision) -> Admission:
        """Take a place on the decided model, or raise 429 when its queue is full."""
        queue = self.settings.queue
        limit = queue.max_running_per_model + queue.max_waiting_per_model
        slot = placement(decision.backend, decision.model)
        current = self.in_flight.get(slot, 0)
        if current >= limit:
            raise RateLimited(
                f"model {decision.model!r} already has {current} requests running or waiting "
                f"(limit {limit}); retry shortly",
                retry_after=queue.retry_after_s,
            )
        self.in_flight[slot] = current + 1
        self.last_used[slot] = self._clock()
        host = self.hosts.get(decision.backend)
        profile = self.profiles.get(decision.model)
        if decision.loads and host is not None and profile is not None and decision.num_ctx:
            # Until /api/ps shows it, assume the load happens as planned, so the next
            # decision does not plan against a stale picture.
            size = profile.footprint(decision.num_ctx)
            staying = [r for r in host.loaded if r.model not in decision.evicts]
            staying = [r for r in staying if r.model != decision.model]
            vram_free = max(host.budget.vram_bytes - sum(r.size_vram for r in staying), 0)
            expected = Resident(decision.model, decision.num_ctx, size, min(size, vram_free))
            host.loaded = (*staying, expected)
            host.pending[decision.model] = expected
            for victim in decision.evicts:
                host.pending.pop(victim, None)
        return Admission(self, decision.model, slot, decision.loads or bool(decision.evicts))

    def _learn_duration(self, model: str, seconds: float) -> None:
        current = self.request_s.get(model)
        self.request_s[model] = seconds if current is None else current + 0.2 * (seconds - current)

    async def _turn(self, slot: str) -> None:
        """Wait until fewer than ``max_running_per_model`` requests run on ``slot`` (a model
        on a host), then count this one as running. The others admitted wait here, in the
        router's queue."""
        while not self._free(slot):
            await self._changed.wait()
        self._count_running(slot, +1)

    def _free(self, slot: str) -> bool:
        return self.running.get(slot, 0) < self.settings.queue.max_running_per_model

    def _count_running(self, slot: str, delta: int) -> None:
        self.running[slot] = max(self.running.get(slot, 0) + delta, 0)
        self._changed.set()
        self._changed = asyncio.Event()

    def _release(self, slot: str, changed: bool) -> None:
        self.in_flight[slot] = max(self.in_flight.get(slot, 1) - 1, 0)
        self.last_used[slot] = self._clock()
        self.refresh_soon(changed)

    async def make_room(self, decision: Decision, admission: Admission | None = None) -> None:
        """Unload the decision's victims, each once the requests running on it have finished.

        Requests admitted to a victim but still waiting for room themselves do not count: they
        will wait in turn for this request's model. Room is made one request at a time per
        host, and the request counts as running (``admission``) before the next one looks."""
        host = self.hosts.get(decision.backend)
        if host is None:
            if admission is not None:
                await admission.start()
            return
        async with host.evicting:
            await self._evict(host, decision)
            # Counted as running before the next request looks, when a place is free.
            if admission is None or admission.try_start():
                return
        await admission.start()

    async def _evict(self, host: _Host, decision: Decision) -> None:
        for victim in decision.evicts:
            if victim == decision.model:
                continue
            try:
                async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                    while self.running.get(placement(decision.backend, victim), 0) > 0:
                        await self._changed.wait()
            except TimeoutError:
                log.warning("evict_gave_up", model=victim, reason="still busy")
                continue
            log.info("evict", model=victim, for_model=decision.model)
            try:
                await host.backend.unload(victim)
            except RouterError as exc:
                log.warning("evict_failed", model=victim, error=exc.message)
            host.loaded = tuple(r for r in host.loaded if r.model != victim)

    async def _warm(self) -> None:
        for spec in self.placements:
            host = self.hosts.get(spec.backend)
            profile = self.profiles.get(spec.name)
            if host is None or profile is None or not (_pinned(spec) or spec.warm):
                continue
            snapshot = self.view().snapshots[spec.backend]
            if snapshot.find(spec.name) is not None:
                continue
            load = plan(snapshot, profile, spec.num_ctx)
            if not load.fits or load.evicts:
                log.info("warm_skipped", model=spec.name, reason="does not fit beside others")
                continue
            log.info("warm", model=spec.name, num_ctx=spec.num_ctx)
            started = time.perf_counter()
            try:
                reply = await host.backend.load(spec.name, spec.num_ctx, spec.keep_alive)
            except RouterError as exc:
                log.warning("warm_failed", model=spec.name, error=exc.message)
                continue
            self.learn_load(spec.name, reply.get("load_duration"), expected=True)
            log.info("warmed", model=spec.name, s=round(time.perf_counter() - started, 2))
            await self.refresh()
