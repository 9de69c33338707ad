"""The optional LLM classifier: a small local model asked for a request's task class.

Off by default (``routing.classifier.llm.model``). When it is on, a request to the virtual
model whose cheap signals leave the class open (no rule decided, the keywords were close) has
the user's latest words read by the configured model before the routing decision; its answer
is kept per distinct text, so an agent's tool loop asks once per thing the user says. The
routing engine only looks the answer up: the decision stays a pure function, and
``/v1/route/explain`` never calls the model.

The model is a helper, never a gate: an answer slower than ``timeout_s``, an error or a
missing backend routes the request without it (the example vote decides, as when the
classifier is off), and after a failure the model is left alone for ``retry_after_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import aclosing

import structlog

from .backends.base import Backend, ChatCall, Sampling
from .errors import RouterError
from .events import TextDelta
from .routing.engine import RoutingEngine
from .routing.llm_vote import parse_vote, vote_key, vote_messages
from .routing.signals import RequestSignals, read_signals
from .settings import LlmClassifierSettings
from .wire.openai import ChatCompletionRequest, ChatMessage

__all__ = ["LlmClassifier"]

log = structlog.get_logger("memory_router.llm_classifier")

_KEPT = 2048  # answers kept, one per distinct text
_MAX_TOKENS = 8  # "implement" and a little room; a thinking model is asked not to think
_NUM_CTX = 2048  # the instructions and 1,500 characters of the user's words


class LlmClassifier:
    """Asks ``settings.model`` on ``backends[settings.backend]`` and keeps its answers."""

    def __init__(
        self,
        settings: LlmClassifierSettings,
        backends: Mapping[str, Backend],
        engine: RoutingEngine,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert settings.model is not None and engine.votes is not None
        self.settings = settings
        self.model = settings.model
        self.backends = backends  # the service's own map: it changes when Ollama arrives
        self.engine = engine
        self.votes = engine.votes  # the engine looks the answers up: one table, shared
        self.outcomes: Counter[str] = Counter()
        """Times the model was asked, by outcome: "class", "no_class" or "failed"."""
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._quiet_until = 0.0
        self._last_error = ""
        self._clock = clock
        self._warned_missing = False

    async def prepare(self, request: ChatCompletionRequest) -> RequestSignals:
        """Have the model read the request's words if the routing decision will want them.

        Returns the request's signals, for the decision to use instead of reading them again.
        """
        signals = read_signals(request)
        key = vote_key(signals.human_text)
        if key in self.votes:  # asked already (a tool loop resends the words every turn)
            self.votes[key] = self.votes.pop(key)  # the most recently used goes last
            return signals
        if not key or not self.engine.unsure(request, signals):
            return signals
        pending = self._pending.get(key)
        if pending is not None:  # the same words are being read for another request
            await asyncio.shield(pending)
            return signals
        if self._clock() < self._quiet_until:
            return signals
        backend = self.backends.get(self.settings.backend)
        if backend is None:
            if not self._warned_missing:
                self._warned_missing = True
                log.warning(
                    "llm_classifier_unavailable",
                    model=self.model,
                    backend=self.settings.backend,
                    note="its backend is not running: requests are routed without it",
                )
            return signals
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[key] = done
        try:
            await self._ask(backend, key)
        finally:
            del self._pending[key]
            done.set_result(None)
        return signals

    def note(self) -> str | None:
        """What ``/ready`` should say while the model is not being asked, else None."""
        if self.settings.backend not in self.backends:
            return (
                f"the LLM classifier {self.model} is not asked: its backend "
                f"{self.settings.backend} is not running"
            )
        left = self._quiet_until - self._clock()
        if left > 0:
            return (
                f"the LLM classifier {self.model} failed ({self._last_error}): requests are "
                f"routed without it for another {left:.0f} s"
            )
        return None

    async def _ask(self, backend: Backend, key: str) -> None:
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(self._answer(backend, key), self.settings.timeout_s)
        except (RouterError, TimeoutError) as exc:
            self.outcomes["failed"] += 1
            self._quiet_until = self._clock() + self.settings.retry_after_s
            error = (
                f"no answer within {self.settings.timeout_s:g}s"
                if isinstance(exc, TimeoutError)
                else str(exc)
            )
            self._last_error = error
            log.warning(
                "llm_classifier_failed",
                model=self.model,
                backend=backend.name,
                error=error,
                retry_in_s=self.settings.retry_after_s,
            )
            return
        vote = parse_vote(answer)
        self.outcomes["class" if vote is not None else "no_class"] += 1
        self.votes[key] = vote
        while len(self.votes) > _KEPT:
            del self.votes[next(iter(self.votes))]
        log.debug(
            "llm_classifier",
            model=self.model,
            vote=vote,
            answer=answer[:80],
            ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _answer(self, backend: Backend, key: str) -> str:
        ollama = backend.kind == "ollama"
        call = ChatCall(
            model=self.model,
            messages=[ChatMessage(**message) for message in vote_messages(key)],
            stream=False,
            sampling=Sampling(max_tokens=_MAX_TOKENS, temperature=0.0),
            think=False if ollama else None,
            num_ctx=_NUM_CTX if ollama else None,
            keep_alive=self.settings.keep_alive if ollama else None,
            num_gpu=0 if ollama and self.settings.cpu_only else None,
        )
        pieces: list[str] = []
        async with aclosing(backend.chat(call)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
        return "".join(pieces)
