"""The router service: which backends are up, which models they serve, and running a request.

Routes call this; it asks the routing policy for a decision (a value), then asks a backend to
run it. Start-up probes Ollama and, when nothing answers and configuration allows it, starts
the embedded llama.cpp model and maps every role to it, saying so loudly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

import structlog

from .after import AfterResponse
from .backends.base import Backend, ChatCall, CompletionCall, Sampling
from .decision_log import DecisionLog
from .domain import TaskClass
from .errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    ModelNotCapable,
    ModelNotFound,
)
from .events import Finish
from .fleet import Fleet, Readiness
from .llm_classifier import LlmClassifier
from .metrics import Metrics
from .pipeline import Run
from .recent import Recent
from .routing.decision import Decision
from .routing.engine import RoutingEngine
from .routing.policy import need_param, what_needs
from .routing.signals import RequestSignals
from .settings import ModelSpec, Settings
from .translate.toolcheck import ToolCheck
from .wire.openai import ChatCompletionRequest, CompletionRequest

__all__ = ["Readiness", "RouterService"]

log = structlog.get_logger("memory_router.service")


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
        self.engine = RoutingEngine(
            settings.models.catalog(), settings.config.routing,
            settings.models.reserved_output_tokens,
        )  # fmt: skip
        self.fleet = Fleet(settings, backends, on_catalog=self._catalog_changed)
        """The backends, their models, residency and health."""
        self.decision_log: DecisionLog | None = None
        self.after = AfterResponse()
        """Records and log lines of answered requests, written in batches."""
        self.metrics = Metrics(self.fleet, lambda: self.classifier)
        self.recent = Recent(500)
        """The last answered requests, compact, for the dashboard."""
        self.classifier: LlmClassifier | None = None
        """The optional LLM classifier; ``start`` sets it up when one is configured."""
        self.open_runs: set[Run] = set()
        """Requests being answered (for the shutdown's drain)."""
        self.draining = False
        self._examples_ready = asyncio.Event()
        self._examples_ready.set()  # until ``examples_pending``: nothing to wait for

    def _catalog_changed(self, catalog: list[ModelSpec]) -> None:
        self.engine.catalog = catalog

    # -- start-up -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the fleet (falling back to the embedded model when no Ollama answers), the
        optional LLM classifier and the decision log."""
        await self.fleet.start()
        llm = self.routing.classifier.llm
        if llm.model is not None:
            self.classifier = LlmClassifier(llm, self.fleet.backends, self.engine)
            log.info("llm_classifier", model=llm.model, backend=llm.backend)
        log_settings = self.settings.config.logging
        if log_settings.decision_log.enabled:
            self.decision_log = DecisionLog(log_settings.decision_log, log_settings.log_prompts)

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
            self.fleet.notes.append(
                f"the classifier's examples did not load ({exc!r}): keywords only"
            )
            return
        finally:
            self._examples_ready.set()
        self.engine.examples = index
        log.info("task_examples", examples=len(index), s=round(time.perf_counter() - started, 2))

    async def aclose(self) -> None:
        self.after.drain()
        if self.decision_log is not None:
            self.decision_log.close()
        await self.fleet.aclose()

    # -- decisions ------------------------------------------------------------------------

    def spec(self, model: str) -> ModelSpec | None:
        return self.fleet.spec(model)

    def _unknown(self, model: str) -> ModelNotFound:
        configured = {spec.name for spec in self.settings.models.models}
        if model in configured and self.fleet.embedded_fallback:
            return ModelNotFound(
                f"model {model!r} lives in Ollama, which did not answer at start-up; the router "
                f"is running the embedded demo model. Start Ollama (the router switches to it "
                f"within {self.routing.poll_s:g} s), or use model {self.virtual_model!r}",
                param="model",
            )
        names = ", ".join([self.virtual_model, *(spec.name for spec in self.fleet.catalog)])
        return ModelNotFound(
            f"model {model!r} is not served here: use one of {names}", param="model"
        )

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
                return self.engine.decide(
                    request, self.fleet.view(), remember=remember, signals=signals
                )
            except (ContextLengthExceeded, ModelNotCapable) as exc:
                return self._escalate(exc)
        spec = self.spec(request.model)
        if spec is None:
            raise self._unknown(request.model)
        if needs := request.needs():
            self._check_capable(spec, needs)
        prompt = self.engine.tokens.prompt_tokens(request)
        output = request.output_limit() or self.engine.reserved_output
        return self.engine.decide_direct(spec, prompt, output, self.fleet.view(), needs)

    def _check_capable(self, spec: ModelSpec, needs: frozenset[str]) -> None:
        """Refuse, with what to do, a request that ``spec`` is known not to take."""
        known = self.fleet.capabilities()
        lacks = needs - known.get(spec.name, needs)
        if not lacks:
            return
        what = what_needs(lacks, " or ")
        able = [s.name for s in self.fleet.catalog if not needs - known.get(s.name, needs)]
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
                request.prompt_text(), request.max_tokens, self.fleet.view(), request.suffix
            )
        spec = self.spec(request.model)
        if spec is None:
            raise self._unknown(request.model)
        if needs := request.needs():
            self._check_capable(spec, needs)
        tokens = self.engine.tokens.text_tokens(request.prompt_text())
        if request.suffix:
            tokens += self.engine.tokens.text_tokens(request.suffix)
        return self.engine.decide_direct(spec, tokens, request.max_tokens or 256, self.fleet.view())

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

    def fallback(self, decision: Decision, failed: Mapping[str, str]) -> Decision | None:
        """The next choice for a decision whose model failed before its first event."""
        return self.engine.fallback(decision, self.fleet.view(), failed)

    def learn(self, decision: Decision, finish: Finish) -> None:
        """What an answer's end teaches: the load time, the model's token count."""
        if self.fleet.monitor is not None:
            self.fleet.monitor.learn_load(
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
        self.recent.add(run, ms)
        if run.tool_report is not None:
            self.metrics.checked_tools(run.tool_report)
            if run.tool_report["invalid"] or run.tool_report["unchecked"]:
                log.warning("tool_calls_unfit", model=decision.model, **run.tool_report)
        if self.decision_log is not None:
            self.decision_log.write({**run.record(), "latency_ms": ms})

    # -- status ---------------------------------------------------------------------------

    async def readiness(self) -> Readiness:
        """The fleet's readiness, and whether the classifier can route yet."""
        extra = [note] if self.classifier is not None and (note := self.classifier.note()) else []
        return await self.fleet.readiness(not self._examples_ready.is_set(), extra)
