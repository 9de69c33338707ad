"""The model servers: which backends run, which models they serve, what they hold, how
healthy they are.

Start-up probes Ollama (and each ``ollama_hosts`` entry) and, when nothing answers and the
configuration allows it, starts the embedded llama.cpp model and maps every role to it,
saying so loudly; it then keeps asking for Ollama and moves over once it answers. The
residency monitor reads what each host holds; ``health`` counts failures and cools hosts
down. Nothing here decides where a request goes: the policy does, from ``view()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog

from .backends.base import Backend, BackendStatus, HoldsResidency
from .budgets import host_budgets
from .domain import placement
from .errors import BackendUnavailable, RouterError
from .health import Health
from .monitor import ResidencyMonitor, declared_capabilities
from .routing.decision import Decision
from .routing.policy import View
from .routing.residency import Budget
from .settings import ModelSpec, Settings

__all__ = ["Fleet", "Readiness"]

log = structlog.get_logger("memory_router.fleet")


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    backends: list[BackendStatus]
    missing_models: list[str]
    embedded_fallback: bool
    notes: list[str]
    status: str = "ready"
    """``ready``, ``degraded`` (the embedded demo model serves), ``starting`` (the
    classifier is loading) or ``not_ready``."""


class Fleet:
    """The backends, the catalog of models they serve, their residency and their health."""

    def __init__(
        self,
        settings: Settings,
        backends: dict[str, Backend] | None = None,
        on_catalog: Callable[[list[ModelSpec]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.routing = settings.config.routing
        self.backends: dict[str, Backend] = dict(backends or {})
        self.catalog: list[ModelSpec] = settings.models.catalog()
        """Each model once per host that serves it (``ModelsConfig.catalog``)."""
        self.embedded_fallback = False
        self.notes: list[str] = []
        self.monitor: ResidencyMonitor | None = None
        self.health = Health(settings.config.routing.failover)
        """Failures in a row per host and model, and their cooldowns (``health.py``)."""
        self._on_catalog = on_catalog
        self._tasks: set[asyncio.Task[None]] = set()

    def _catalog_is(self, catalog: list[ModelSpec]) -> None:
        self.catalog = catalog
        if self._on_catalog is not None:
            self._on_catalog(list(catalog))

    async def start(self) -> None:
        """Build the backends; fall back to the embedded model when no Ollama answers."""
        from .backends.factory import build_backends

        built = await build_backends(self.settings)
        self.backends.update(built.backends)
        self.catalog = built.catalog
        self.embedded_fallback = built.embedded_fallback
        self.notes = built.notes
        for note in self.notes:
            log.warning("startup", note=note)
        self._catalog_is(built.catalog)
        budgets = self._budgets()
        self.monitor = ResidencyMonitor(
            self.settings.config.routing, self.catalog, self.backends, budgets
        )
        await self.monitor.start()
        config = self.settings.config
        if self.embedded_fallback and (config.ollama.enabled or config.ollama_hosts):
            self._spawn(self._await_ollama())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_ollama(self) -> None:
        """While the embedded fallback serves, ask every ``routing.poll_s`` for Ollama and for
        each ``ollama_hosts`` entry; once one answers, route to the configured models as if it
        had answered at start-up."""
        from .backends.ollama import OllamaBackend

        config = self.settings.config.ollama
        hosts = [b for b in self.backends.values() if isinstance(b, HoldsResidency)]
        while True:
            await asyncio.sleep(self.routing.poll_s)
            main = OllamaBackend(config) if config.enabled else None
            answered = [backend for backend in (main, *hosts) if backend is not None]
            try:
                statuses = [await backend.status() for backend in answered]
            except Exception as exc:  # keep asking: the fallback must not stop looking
                log.warning("ollama_probe_failed", error=repr(exc))
                statuses = []
            answered = [b for b, status in zip(answered, statuses, strict=False) if status.answers]
            if answered:
                break
            if main is not None:
                await main.aclose()
        if main is not None:
            self.backends[main.name] = main  # kept even if silent, as at start-up
        catalog = [s for s in self.settings.models.catalog() if s.backend in self.backends]
        monitor = ResidencyMonitor(self.routing, catalog, self.backends, self._budgets())
        await monitor.start()
        previous, self.monitor = self.monitor, monitor
        self._catalog_is(catalog)
        self.embedded_fallback = False
        where = ", ".join(
            config.base_url if b is main else f"{b.name} ({b.base_url})" for b in answered
        )
        self.notes = [
            f"Ollama answered at {where} after start-up: the router left the embedded demo model "
            f"and routes to the configured models"
        ]
        log.warning("ollama_found", note=self.notes[0])
        if previous is not None:
            await self._retire_embedded(previous)

    async def _retire_embedded(self, previous: ResidencyMonitor) -> None:
        """Close the embedded model once the requests still running on it have finished."""
        from .backends.embedded import EMBEDDED_MODEL

        monitors = [m for m in (previous, self.monitor) if m is not None]
        await asyncio.sleep(1.0)  # a request decided just before the switch gets admitted
        # The counts have no event of their own; this runs once, for seconds at most.
        slot = placement("embedded", EMBEDDED_MODEL)
        while any(m.in_flight.get(slot, 0) for m in monitors):  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        await previous.aclose()
        embedded = self.backends.pop("embedded", None)
        if embedded is not None:
            await embedded.aclose()

    async def read_residency(self) -> str | None:
        """Read Ollama's residency once (no model runs), for ``memory-router route``.

        Returns a note when it could not be read."""
        from .backends.ollama import OllamaBackend

        if not self.settings.config.ollama.enabled:
            return "Ollama is disabled in the configuration: residency not read"
        backend = OllamaBackend(self.settings.config.ollama)
        try:
            status = await backend.status(timeout=2.0)
            if not status.answers:
                return f"residency not read: {status.detail}"
            self.monitor = ResidencyMonitor(
                self.settings.config.routing,
                self.catalog,
                {backend.name: backend},
                self._budgets([backend.name]),
            )
            await self.monitor.start(background=False)
            return None
        finally:
            await backend.aclose()

    def _budgets(self, hosts: list[str] | None = None) -> dict[str, Budget]:
        """The memory budget of each Ollama host (``budgets.host_budgets``)."""
        if hosts is None:
            hosts = [name for name, b in self.backends.items() if b.kind == "ollama"]
        return host_budgets(self.settings, hosts, self.notes)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.monitor is not None:
            await self.monitor.aclose()
        for backend in list(self.backends.values()):
            await backend.aclose()

    # -- what the policy sees ---------------------------------------------------------------

    def spec(self, model: str) -> ModelSpec | None:
        return next((spec for spec in self.catalog if spec.name == model), None)

    def view(self) -> View:
        view = self.monitor.view() if self.monitor is not None else None
        if view is None:
            view = View(capabilities=self.capabilities())
        if not self.health.has_failures():
            return view
        self.probe_due()
        return replace(view, avoid={**view.avoid, **self.health.avoid()})

    def probe_due(self) -> None:
        """Probe each cooled-down host whose time is up (in the background)."""
        for host in self.health.due_probes():
            self._spawn(self._probe(host))

    async def _probe(self, host: str) -> None:
        """A cooled-down host, its time up: one cheap status call before it takes work."""
        backend = self.backends.get(host)
        status = await backend.status() if backend is not None else None
        answers = status is not None and status.answers
        self.health.probed(host, answers, status.detail if status is not None else "gone")
        log.info("probe", host=host, answers=answers)

    def capabilities(self) -> Mapping[str, frozenset[str]]:
        """What each model takes, where known: learned from Ollama once it has been read."""
        if self.monitor is not None:
            return self.monitor.capabilities
        return declared_capabilities(self.catalog)

    def backend(self, decision: Decision) -> Backend:
        backend = self.backends.get(decision.backend)
        if backend is None:
            raise BackendUnavailable(
                f"backend {decision.backend!r} for model {decision.model!r} is not running",
                retry_after=5,
            )
        return backend

    async def readiness(self, starting: bool = False, extra: list[str] | None = None) -> Readiness:
        """Whether a backend answers and every configured model is present (a pool's model:
        on at least one of its hosts). ``starting``: the classifier is still loading;
        ``extra``: notes of the router's own (the classifier's)."""
        # The backends and catalog as they are now: Ollama arriving changes both mid-probe.
        backends, catalog = dict(self.backends), list(self.catalog)
        statuses = [await backend.status() for backend in backends.values()]
        absent: dict[str, list[str]] = {}  # model -> hosts that lack it
        for name, backend in backends.items():
            wanted = [spec.name for spec in catalog if spec.backend == name]
            if not wanted:
                continue
            status = next(s for s in statuses if s.name == name)
            present: set[str] = set()
            if status.answers:
                try:
                    present = {model.name for model in await backend.list_models()}
                except RouterError as exc:
                    log.warning("list_models_failed", backend=name, error=str(exc))
            for model in wanted:
                if model not in present and f"{model}:latest" not in present:
                    absent.setdefault(model, []).append(name)
        hosts = {s.name: sum(1 for c in catalog if c.name == s.name) for s in catalog}
        missing = [m for m, lacking in absent.items() if len(lacking) == hosts[m]]
        notes = list(self.notes)
        notes.extend(
            f"{m} is not available on {', '.join(lacking)}: its pool's other hosts serve it"
            for m, lacking in absent.items()
            if m not in missing
        )
        self.probe_due()
        health = self.health.snapshot()
        notes.extend(
            f"{key} is skipped for {state['cooldown_left_s']:.0f} s after "
            f"{state['failures']} failures in a row (last: {state['last_error']})"
            for key, state in health.items()
            if state["cooling"]
        )
        if self.embedded_fallback:
            # The configured models are what the user wants; none of them answers now.
            missing = [spec.name for spec in self.settings.models.models]
        ready = any(status.answers for status in statuses) and not missing
        notes.extend(extra or [])
        if starting:
            state = "starting"
            notes.append("the classifier's examples are loading: routed requests wait for them")
        elif self.embedded_fallback and any(s.answers for s in statuses):
            state = "degraded"
        else:
            state = "ready" if ready else "not_ready"
        ready = state == "ready"
        return Readiness(ready, statuses, missing, self.embedded_fallback, notes, state)
