"""The router service: which backends are up, which models they serve, and running a request.

Routes call this; it asks the routing policy for a decision (a value), then asks a backend to
run it. Start-up probes Ollama and, when nothing answers and configuration allows it, starts
the embedded llama.cpp model and maps every role to it, saying so loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from .after import AfterResponse
from .backends.base import Backend, BackendStatus, ChatCall, CompletionCall, Sampling
from .budgets import host_budgets
from .classifier import LlmClassifier
from .decision_log import DecisionLog
from .domain import TASK_CLASSES, TaskClass, placement
from .errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    ModelNotCapable,
    ModelNotFound,
    RouterError,
)
from .events import Finish
from .health import Health
from .metrics import Metrics
from .pipeline import Run
from .residency import ResidencyMonitor, declared_capabilities
from .routing.decision import Decision
from .routing.engine import RoutingEngine
from .routing.policy import View, need_param, what_needs
from .routing.residency import Budget
from .routing.signals import RequestSignals
from .settings import ModelSpec, Settings
from .translate.toolcheck import ToolCheck
from .wire.openai import ChatCompletionRequest, CompletionRequest

__all__ = ["Readiness", "RouterService"]

log = structlog.get_logger("memory_router.service")


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


EXAMPLES_WAIT_S = 120.0
"""Longest a routed request waits for the classifier's examples at start-up (the first
start on a machine also measures the embedder's graphs: tens of seconds)."""


def _sampling(request: ChatCompletionRequest | CompletionRequest, limit: int | None) -> Sampling:
    return Sampling(
        max_tokens=limit,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_list(),
        seed=request.seed,
        frequency_penalty=request.frequency_penalty,
        presence_penalty=request.presence_penalty,
    )


def _think(request: ChatCompletionRequest, spec: ModelSpec | None) -> bool | str | None:
    if spec is not None and spec.think is None:
        return None  # not a thinking model: Ollama would reject the field
    extra = (request.model_extra or {}).get("think")
    if isinstance(extra, bool | str):
        return extra
    if request.reasoning_effort is not None:
        return request.reasoning_effort not in ("none", "minimal")
    return spec.think if spec is not None else None


class RouterService:
    """Owns the backends and the catalog of models; runs requests through them."""

    def __init__(self, settings: Settings, backends: dict[str, Backend] | None = None) -> None:
        self.settings = settings
        self.virtual_model = settings.models.virtual_model
        self.routing = settings.config.routing
        self.backends: dict[str, Backend] = dict(backends or {})
        self.catalog: list[ModelSpec] = settings.models.catalog()
        self.embedded_fallback = False
        self.notes: list[str] = []
        self.engine = RoutingEngine(
            self.catalog, settings.config.routing, settings.models.reserved_output_tokens
        )
        self.monitor: ResidencyMonitor | None = None
        self.decision_log: DecisionLog | None = None
        self.after = AfterResponse()
        """Records and log lines of answered requests, written in batches."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.metrics = Metrics(self)
        self.classifier: LlmClassifier | None = None
        """The optional LLM classifier; ``start`` sets it up when one is configured."""
        self.open_runs: set[Run] = set()
        """Requests being answered (for the shutdown's drain)."""
        self.draining = False
        self.health = Health(settings.config.routing.failover)
        """Failures in a row per host and model, and their cooldowns (``health.py``)."""
        self._examples_ready = asyncio.Event()
        self._examples_ready.set()  # until ``examples_pending``: nothing to wait for

    # -- start-up -------------------------------------------------------------------------

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
        self.engine.catalog = list(self.catalog)
        llm = self.routing.classifier.llm
        if llm.model is not None:
            self.classifier = LlmClassifier(llm, self.backends, self.engine)
            log.info("llm_classifier", model=llm.model, backend=llm.backend)
        budgets = self._budgets()
        self.monitor = ResidencyMonitor(
            self.settings.config.routing, self.catalog, self.backends, budgets
        )
        await self.monitor.start()
        log_settings = self.settings.config.logging
        if log_settings.decision_log.enabled:
            self.decision_log = DecisionLog(log_settings.decision_log, log_settings.log_prompts)
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
        hosts = [b for b in self.backends.values() if isinstance(b, OllamaBackend)]
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
        self.catalog = catalog
        self.engine.catalog = list(catalog)
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

    def examples_pending(self) -> None:
        """The classifier's examples are about to load: routed requests wait for them."""
        self._examples_ready.clear()

    async def routing_ready(self) -> None:
        """Wait until the classifier can route (its examples loaded, or failed to)."""
        if self._examples_ready.is_set():
            return
        try:
            await asyncio.wait_for(self._examples_ready.wait(), EXAMPLES_WAIT_S)
        except TimeoutError:
            log.warning("routing_without_examples", waited_s=EXAMPLES_WAIT_S)

    async def load_examples(
        self,
        examples: dict[TaskClass, list[str]],
        embedder: Callable[[], Callable[[Sequence[str]], list[list[float]]]],
    ) -> None:
        """Embed the labelled task examples (in a thread) for the classifier's example vote."""
        from .routing.engine import ExampleIndex

        started = time.perf_counter()
        try:
            index = await asyncio.to_thread(lambda: ExampleIndex(examples, embedder()))
        except Exception as exc:  # the embedder is optional for routing: say so and go on
            log.warning("task_examples_failed", error=repr(exc))
            self.notes.append(f"the classifier's examples did not load ({exc!r}): keywords only")
            return
        finally:
            self._examples_ready.set()
        self.engine.examples = index
        log.info("task_examples", examples=len(index), s=round(time.perf_counter() - started, 2))

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
        self.after.drain()
        if self.monitor is not None:
            await self.monitor.aclose()
        if self.decision_log is not None:
            self.decision_log.close()
        for backend in list(self.backends.values()):
            await backend.aclose()

    # -- decisions ------------------------------------------------------------------------

    def spec(self, model: str) -> ModelSpec | None:
        return next((spec for spec in self.catalog if spec.name == model), None)

    def _unknown(self, model: str) -> ModelNotFound:
        configured = {spec.name for spec in self.settings.models.models}
        if model in configured and self.embedded_fallback:
            return ModelNotFound(
                f"model {model!r} lives in Ollama, which did not answer at start-up; the router "
                f"is running the embedded demo model. Start Ollama (the router switches to it "
                f"within {self.routing.poll_s:g} s), or use model {self.virtual_model!r}",
                param="model",
            )
        names = ", ".join([self.virtual_model, *(spec.name for spec in self.catalog)])
        return ModelNotFound(
            f"model {model!r} is not served here: use one of {names}", param="model"
        )

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

    def decide_chat(
        self,
        request: ChatCompletionRequest,
        *,
        remember: bool = True,
        signals: RequestSignals | None = None,
    ) -> Decision:
        """The routing decision for a chat request; calls no model.

        ``signals``: the request's, when the LLM classifier has read them already."""
        if request.model == self.virtual_model:
            try:
                return self.engine.decide(request, self.view(), remember=remember, signals=signals)
            except (ContextLengthExceeded, ModelNotCapable) as exc:
                return self._escalate(exc)
        spec = self.spec(request.model)
        if spec is None:
            raise self._unknown(request.model)
        if needs := request.needs():
            self._check_capable(spec, needs)
        prompt = self.engine.tokens.prompt_tokens(request)
        output = request.output_limit() or self.engine.reserved_output
        return self.engine.decide_direct(spec, prompt, output, self.view(), needs)

    def _check_capable(self, spec: ModelSpec, needs: frozenset[str]) -> None:
        """Refuse, with what to do, a request that ``spec`` is known not to take."""
        known = self.capabilities()
        lacks = needs - known.get(spec.name, needs)
        if not lacks:
            return
        what = what_needs(lacks, " or ")
        able = [s.name for s in self.catalog if not needs - known.get(s.name, needs)]
        todo = (
            f"use {', '.join(able)} or {self.virtual_model}, which picks one that does"
            if able
            else "no configured model does: add one to config/models.yaml, or remove them"
        )
        raise ModelNotCapable(
            f"model {spec.name!r} does not take {what} (it lacks {', '.join(sorted(lacks))}): "
            f"{todo}",
            param=need_param(lacks),
        )

    def _escalate(self, exc: ContextLengthExceeded | ModelNotCapable) -> Decision:
        escalation = self.settings.config.routing.escalation
        if escalation.backend is None or escalation.model is None:
            raise exc
        return Decision(
            model=escalation.model,
            backend=escalation.backend,
            num_ctx=None,
            keep_alive=None,
            task=None,
            reasons=(
                exc.reason,
                f"escalated to {escalation.model} on {escalation.backend} (configured escalation)",
            ),
        )

    def decide_completion(self, request: CompletionRequest) -> Decision:
        if request.model == self.virtual_model:
            return self.engine.decide_completion(
                request.prompt_text(), request.max_tokens, self.view(), request.suffix
            )
        spec = self.spec(request.model)
        if spec is None:
            raise self._unknown(request.model)
        if needs := request.needs():
            self._check_capable(spec, needs)
        tokens = self.engine.tokens.text_tokens(request.prompt_text())
        if request.suffix:
            tokens += self.engine.tokens.text_tokens(request.suffix)
        return self.engine.decide_direct(spec, tokens, request.max_tokens or 256, self.view())

    # -- running --------------------------------------------------------------------------

    def begin_drain(self, drain_s: float) -> None:
        """SIGTERM: take no new requests; end those still running after ``drain_s``."""
        if self.draining:
            return
        self.draining = True
        log.warning("draining", running=len(self.open_runs), drain_s=drain_s)
        asyncio.get_running_loop().call_later(drain_s, self._end_runs)

    def _end_runs(self) -> None:
        if self.open_runs:
            log.warning("drain_deadline", ending=len(self.open_runs))
        for run in list(self.open_runs):
            run.end()

    def _refuse_when_draining(self) -> None:
        if self.draining:
            raise BackendUnavailable(
                "the router is shutting down: retry in a moment", retry_after=5
            )

    async def open_chat(self, request: ChatCompletionRequest) -> Run:
        """Decide a chat request and open its run (no model is called until it is read)."""
        self._refuse_when_draining()
        signals = None
        if request.model == self.virtual_model:
            await self.routing_ready()
            if self.classifier is not None:
                signals = await self.classifier.prepare(request)
        decision = self.decide_chat(request, signals=signals)
        limit = request.output_limit()

        def call(decision: Decision) -> ChatCall:
            spec = self.spec(decision.model)
            return ChatCall(
                model=decision.model,
                messages=request.messages,
                stream=request.stream,
                sampling=_sampling(request, limit),
                tools=request.tools,
                tool_choice=request.tool_choice,
                parallel_tool_calls=request.parallel_tool_calls,
                response_format=request.response_format,
                think=_think(request, spec),
                num_ctx=decision.num_ctx,
                keep_alive=decision.keep_alive,
            )

        return Run(self, decision, call, ToolCheck.for_request(request.tools))

    def open_completion(self, request: CompletionRequest) -> Run:
        """Decide a raw completion and open its run."""
        self._refuse_when_draining()
        decision = self.decide_completion(request)

        def call(decision: Decision) -> CompletionCall:
            return CompletionCall(
                model=decision.model,
                prompt=request.prompt_text(),
                stream=request.stream,
                sampling=_sampling(request, request.max_tokens),
                num_ctx=decision.num_ctx,
                keep_alive=decision.keep_alive,
                suffix=request.suffix,
            )

        return Run(self, decision, call)

    def backend(self, decision: Decision) -> Backend:
        backend = self.backends.get(decision.backend)
        if backend is None:
            raise BackendUnavailable(
                f"backend {decision.backend!r} for model {decision.model!r} is not running",
                retry_after=5,
            )
        return backend

    def fallback(self, decision: Decision, failed: Mapping[str, str]) -> Decision | None:
        """The next choice for a decision whose model failed before its first event."""
        return self.engine.fallback(decision, self.view(), failed)

    def learn(self, decision: Decision, finish: Finish) -> None:
        """What an answer's end teaches: the load time, the model's token count."""
        if self.monitor is not None:
            self.monitor.learn_load(
                decision.model, finish.stats.get("load_duration"), decision.loads
            )
        estimated = decision.prompt_tokens
        if isinstance(estimated, int) and finish.usage is not None:
            self.engine.tokens.observe(decision.model, estimated, finish.usage.prompt_tokens)

    def record(self, run: Run, seconds: float) -> None:
        """The request's one record: its log line, the metrics, the decision log."""
        decision, finish = run.decision, run.finish
        usage = finish.usage if finish else None
        ms = round(seconds * 1000, 1)
        log.info(
            "request",
            model=decision.model,
            task=decision.task,
            routed=decision.routed,
            outcome=run.outcome,
            fallback_from=run.decided.model if run.fallback is not None else None,
            finish=finish.reason if finish else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            load_ns=finish.stats.get("load_duration") if finish else None,
            ms=ms,
        )
        self.metrics.observe(decision, finish, run.outcome, seconds)
        if run.tool_report is not None:
            self.metrics.checked_tools(run.tool_report)
            if run.tool_report["invalid"] or run.tool_report["unchecked"]:
                log.warning("tool_calls_unfit", model=decision.model, **run.tool_report)
        if self.decision_log is not None:
            self.decision_log.write({**run.record(), "latency_ms": ms})

    # -- status ---------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The OpenAI model list: the virtual model first, then every concrete one."""
        sizes = [spec.num_ctx for spec in self.catalog]
        items = [
            {
                "id": self.virtual_model,
                "object": "model",
                "created": 0,
                "owned_by": "cline-memory-router",
                # The window a client should use: a conversation within the smallest num_ctx
                # can go to any model the router chooses for its task; a longer one only to
                # the models whose context holds it (max_context_length is the largest).
                "context_length": min(sizes, default=0),
                "max_context_length": max(sizes, default=0),
                "description": "Routes each request to the best local model for the task. "
                "Set your client's context window to context_length.",
            }
        ]
        known = self.capabilities()
        listed: set[str] = set()
        for spec in self.catalog:
            if spec.name in listed:
                continue  # a pool's other hosts: one model
            listed.add(spec.name)
            item = {
                "id": spec.name,
                "object": "model",
                "created": 0,
                "owned_by": spec.backend,
                "context_length": spec.num_ctx,
                "max_context_length": spec.context_window,
                "role": spec.role,
                "task_fit": {task: spec.task_fit[task] for task in TASK_CLASSES},
            }
            if spec.name in known:  # as Ollama reports them, or as models.yaml states them
                item["capabilities"] = sorted(known[spec.name])
            items.append(item)
        return items

    async def readiness(self) -> Readiness:
        """Whether a backend answers and every configured model is present (a pool's model:
        on at least one of its hosts)."""
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
        if self.classifier is not None and (note := self.classifier.note()):
            notes.append(note)
        if not self._examples_ready.is_set():
            state = "starting"
            notes.append("the classifier's examples are loading: routed requests wait for them")
        elif self.embedded_fallback and any(s.answers for s in statuses):
            state = "degraded"
        else:
            state = "ready" if ready else "not_ready"
        ready = state == "ready"
        return Readiness(ready, statuses, missing, self.embedded_fallback, notes, state)
