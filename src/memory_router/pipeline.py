"""One request's run, from its decision to its record.

The route opens a run (``RouterService.open_chat`` or ``open_completion``), renders its
events, and closes it. The run owns everything in between: the model's queue, making room,
the backend call, retries and fallbacks before the answer's first event, the outcome, and the
one record that feeds the log line, the decision log and the metrics.

Before the answer's first event a failure is recoverable: connection refused or reset, a
502/503 or a busy queue is retried on the same model and host with jittered backoff; then,
or at once when the model is not pulled there or its host is down, the policy's next choice
answers, and the response says so (``x-router-fallback``). After the first event nothing is
retried: the failure reaches the client as an error event.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from .calls import ChatCall, CompletionCall
from .errors import (
    BackendBusy,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ModelNotPulled,
    RouterError,
)
from .events import Event, Finish
from .health import model_key
from .routing.decision import Decision
from .routing.replies import ReplyWatch

if TYPE_CHECKING:
    from .service import RouterService
    from .translate.toolcheck import ToolCheck

__all__ = ["Attempt", "Run"]

log = structlog.get_logger("memory_router.pipeline")
Call = ChatCall | CompletionCall


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try that failed before the answer's first event."""

    model: str
    backend: str
    status: int
    error: str


def _where(error: RouterError) -> str | None:
    """What a failure before the first event says is broken: ``host`` (it cannot be reached,
    or its queue is full), ``model`` (the host answers, the model on it fails), or None (the
    request itself, or the router's own limits: trying elsewhere would not help)."""
    if isinstance(error, BackendUnavailable | BackendBusy):
        return "host"
    if isinstance(error, BackendError | ModelNotPulled):
        return "model"
    return None


def _counts(error: RouterError) -> bool:
    """Whether the failure counts towards a cooldown: a full queue is load, not a fault, and
    a model not pulled costs nothing to ask about again."""
    return not isinstance(error, BackendBusy | ModelNotPulled)


def _header_safe(text: str) -> str:
    flat = text.encode("ascii", "replace").decode()[:300]
    return "".join(c if c.isprintable() else " " for c in flat)


class Run:
    """A request on its way through the router: its decision, attempts, outcome, record."""

    def __init__(
        self,
        service: RouterService,
        decision: Decision,
        call: Callable[[Decision], Call],
        check: ToolCheck | None = None,
    ) -> None:
        self.service = service
        self.decided = decision
        """The decision as made; ``decision`` is the one that serves (another after a
        fallback)."""
        self.decision = decision
        self._call = call
        self._check = check
        self.attempts: list[Attempt] = []
        self.fallback: str | None = None
        """Why the model that answered is not the one decided on."""
        self.finish: Finish | None = None
        self.outcome = "client_gone"
        """``ok``, ``fallback`` (answered by the next choice), ``client_gone`` or
        ``error:<status>``; set as the events end."""
        self.started = time.perf_counter()
        self.client: str | None = None
        """Who sent it (the client's User-Agent), for the dashboard."""
        self._closed = False
        self._ended = False
        self._task: asyncio.Task[Any] | None = None
        self._watch: ReplyWatch | None = None
        if decision.session is not None and decision.task not in (None, "meta"):
            # A routed turn's answer: does it keep its session working (``contested``)?
            self._watch = ReplyWatch(decision.tool_style == "xml")

    def headers(self) -> dict[str, str]:
        decision = self.decision
        out = {"x-router-model": decision.model, "x-router-reason": decision.reason_header()}
        if self.fallback is not None:
            out["x-router-fallback"] = _header_safe(self.fallback)
        return out

    # -- the answer -----------------------------------------------------------------------

    async def events(self) -> AsyncGenerator[Event, None]:
        """The answer's events, from whichever attempt answers."""
        self._task = asyncio.current_task()
        self.service.open_runs.add(self)
        try:
            async for event in self._answer():
                yield event
                self._task = asyncio.current_task()  # a stream's reader may change task
            self.outcome = "fallback" if self.fallback is not None else "ok"
        except RouterError as exc:
            self.outcome = f"error:{exc.status}"
            raise
        except asyncio.CancelledError:
            if not self._ended:
                raise
            # Ended by the shutdown's drain deadline: the client hears why.
            if self._task is not None:
                self._task.uncancel()
            self.outcome = "error:503"
            raise BackendUnavailable(
                "the router is shutting down and ended this request: retry it", retry_after=5
            ) from None
        except Exception:
            self.outcome = "error:500"
            raise

    def end(self) -> None:
        """End the run now (the shutdown's drain deadline): its reader gets a 503 or an
        error event, and the backend's request is closed."""
        if self._task is not None and not self._task.done() and not self._closed:
            self._ended = True
            self._task.cancel()

    async def _answer(self) -> AsyncGenerator[Event, None]:
        failed: dict[str, str] = {}
        again = 0  # retries of the current model and host
        while True:
            decision = self.decision
            async with aclosing(self._attempt(decision)) as stream:
                try:
                    first = await anext(stream)
                except StopAsyncIteration:
                    return
                except RouterError as exc:
                    error = exc
                else:
                    self.service.fleet.health.succeeded(decision.backend)
                    self.service.fleet.health.succeeded(model_key(decision.backend, decision.model))
                    yield first
                    async for event in stream:
                        yield event
                    return
            again = await self._recover(error, decision, failed, again)

    async def _attempt(self, decision: Decision) -> AsyncGenerator[Event, None]:
        """One try: the model's queue, room made, the backend's events."""
        service = self.service
        backend = service.fleet.backend(decision)
        call = self._call(decision)
        monitor = service.fleet.monitor
        admission = monitor.admit(decision) if monitor is not None else None
        check, watch = self._check, self._watch
        try:
            if monitor is not None and decision.evicts:
                await monitor.make_room(decision, admission)
            elif admission is not None:
                await admission.start()
            events = backend.chat(call) if isinstance(call, ChatCall) else backend.complete(call)
            async with aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, Finish):
                        self.finish = event
                        service.learn(decision, event)
                    for out in check.see(event) if check is not None else (event,):
                        if watch is not None and not isinstance(out, Finish):
                            watch.see(out)
                        yield out
                if check is not None:
                    for out in check.flush():
                        yield out
        finally:
            if admission is not None:
                admission.release()

    async def _recover(
        self, error: RouterError, decision: Decision, failed: dict[str, str], again: int
    ) -> int:
        """After a failure before the first event: wait and retry, move to the next choice,
        or raise. Returns the retry count for what runs next."""
        where = _where(error)
        if where is None:
            raise error
        failover = self.service.routing.failover
        health = self.service.fleet.health
        self.attempts.append(Attempt(decision.model, decision.backend, error.status, error.message))
        key = decision.backend if where == "host" else model_key(decision.backend, decision.model)
        cooled = _counts(error) and health.failed(key, error.message)
        if cooled:
            log.warning("cooldown", key=key, error=error.message)
        if isinstance(error, BackendTimeout):
            # It had the whole read timeout to say a word: the client has waited long enough.
            raise error
        left = failover.deadline_s - (time.perf_counter() - self.started)
        retry = (
            again < failover.retries
            and not cooled
            and left > 0
            and not isinstance(error, ModelNotPulled)
        )
        if retry:
            delay = min(random.uniform(0, failover.backoff_s * 2**again), left)
            log.info("retry", model=decision.model, backend=decision.backend, error=error.message,
                     attempt=again + 2, delay_s=round(delay, 3))  # fmt: skip
            self.service.metrics.retried(decision.model, decision.backend)
            await asyncio.sleep(delay)
            return again + 1
        if not failover.fallback or left <= 0:
            raise error
        failed[key] = error.message[:200]
        following = self.service.fallback(decision, failed)
        if following is None:
            raise error
        self.fallback = (
            f"{decision.model} on {decision.backend} failed ({error.status}: {error.message}); "
            f"{following.model} answers"
        )
        log.warning(
            "fallback", failed=decision.model, backend=decision.backend, to=following.model,
            to_backend=following.backend, error=error.message,
        )  # fmt: skip
        self.service.metrics.fell_back(decision.model, following.model)
        self.decision = following
        return 0

    # -- the end --------------------------------------------------------------------------

    def close(self, gone: bool = False) -> None:
        """The response is done (``gone``: the client left first): tell the session what the
        answer did, and record the request once, after the answer is on its way."""
        if self._closed:
            return
        self._closed = True
        self.service.open_runs.discard(self)
        if gone:
            self.outcome = "client_gone"
        seconds = time.perf_counter() - self.started
        decision, watch = self.decision, self._watch
        if watch is not None and decision.session is not None:
            # After an error the client retries. One that left has been stopped by its user,
            # unless it already has a tool to run (a client may stop the stream there).
            working = self.outcome.startswith("error") or watch.keeps_working()
            answer = watch.answer_print() if self.outcome in ("ok", "fallback") else None
            self.service.engine.replied(
                decision.session, working, record=decision.signals, answer=answer
            )
        if self.outcome == "fallback" and decision.session is not None:
            self.service.engine.moved(decision.session, decision)
        self.service.after.add(self.service.record, self, seconds)

    def record(self) -> dict[str, Any]:
        """What the decision log keeps of this request (the caller adds the timing)."""
        decision, finish = self.decision, self.finish
        usage = finish.usage if finish else None
        load_ns = finish.stats.get("load_duration") if finish else None
        out: dict[str, Any] = {
            "session": decision.session,
            "routed": decision.routed,
            "class": decision.task,
            "signals": decision.signals,
            # orjson writes dataclasses itself: ~9x faster than asdict() per record.
            "candidates": list(decision.candidates),
            "model": decision.model,
            "num_ctx": decision.num_ctx,
            "reasons": list(decision.reasons),
            "caused_load": decision.loads,
            "evicted": list(decision.evicts),
            "load_s": round(load_ns / 1e9, 3) if isinstance(load_ns, int | float) else None,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "needed_tokens": decision.needed_tokens,
            "outcome": self.outcome,
        }
        if self.attempts:
            out["attempts"] = list(self.attempts)
        if self.fallback is not None:
            out["fallback"] = {"from": self.decided.model, "reason": self.fallback}
        if (report := self.tool_report) is not None:
            out["tool_calls"] = report
        return out

    @property
    def tool_report(self) -> dict[str, Any] | None:
        """What checking the answer's tool calls found (None: the answer had none)."""
        if self._check is None:
            return None
        report = self._check.report()
        return report if report["checked"] else None
