"""The routing engine: signals, class, tokens and session for a request, then ``choose``.

The engine holds the little state routing needs between requests: the per-message token
cache and corrections, the sessions (keyed by the system prompt, the first user message and
the first answer, so each Cline task, in each window, is one session), and the labelled
examples' embeddings. Given that state and a ``View`` of the hosts, ``decide`` is a function
of the request: it calls no model and does no I/O (the example vote embeds the user's few
words with the already loaded embedder, once per distinct text).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..domain import TASK_CLASSES, TaskClass, placement
from ..errors import RouterError
from ..misroutes import corrects, words_hash
from ..settings import ModelSpec, RoutingSettings
from ..wire.openai import ChatCompletionRequest
from .classify import Classification, Vote, classify, classify_learned
from .context import ContextEstimator
from .decision import Decision
from .learned import EMBED_CHARS, LearnedModel, default_weights, structure, words_of
from .llm_vote import vote_key
from .policy import Claim, SessionChoice, View, choose, direct
from .replies import answer_print
from .signals import RequestSignals, read_signals

__all__ = ["ExampleIndex", "RoutingEngine", "session_key", "session_keys"]

Embed = Callable[[Sequence[str]], list[list[float]]]
_QUERY_CHARS = EMBED_CHARS  # the user's words embedded (never the system prompt)
_TASK_DIGITS = 8


def session_keys(request: ChatCompletionRequest) -> tuple[str, str]:
    """A task's identity, and its opening's: ``(key, opening)``.

    ``key`` comes from the system prompt, the first user message and the first answer to it:
    two Cline windows that open with the same words part at their first answers (each names
    its own tool-call ids, or says its own text). ``opening`` leaves the answer out: the key
    of the task's first request, which has none yet (then both are the same). The last
    ``_TASK_DIGITS`` hex digits leave the system prompt out: the same for the task in Plan
    and in Act mode, whose system prompts differ."""
    system: str | None = None
    first: str | None = None
    answer = ""
    for message in request.messages:
        if message.role == "system":
            if system is None:
                system = message.text()
        elif message.role == "user":
            if first is None:
                first = message.text()
        elif message.role == "assistant" and first is not None:
            answer = answer_print(message)
            break
    head = f"{hash(system or '') & 0xFFFFFFFFFFFF:012x}"
    opening = f"{head}{hash(first or '') & 0xFFFFFFFF:08x}"
    if not answer:
        return opening, opening
    return f"{head}{hash((first or '', answer)) & 0xFFFFFFFF:08x}", opening


def session_key(request: ChatCompletionRequest) -> str:
    """A task's identity (``session_keys``)."""
    return session_keys(request)[0]


class ExampleIndex:
    """Labelled example requests, embedded once; the best cosine per class for a text."""

    def __init__(self, examples: Mapping[TaskClass, Sequence[str]], embed: Embed) -> None:
        import numpy as np  # already loaded with the embedder

        self._np = np
        self._embed = embed
        labels: list[TaskClass] = []
        texts: list[str] = []
        for task in TASK_CLASSES:
            for text in examples.get(task, ()):
                labels.append(task)
                texts.append(text[:_QUERY_CHARS])
        self._labels = labels
        matrix = np.asarray(embed(texts) if texts else [], dtype=np.float32)
        if len(texts):
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-12
        self._matrix = matrix
        self._rows = {task: [i for i, t in enumerate(labels) if t == task] for task in TASK_CLASSES}
        self._cache: OrderedDict[int, dict[TaskClass, float]] = OrderedDict()
        self._vectors: OrderedDict[int, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._labels)

    def vector(self, text: str) -> list[float] | None:
        """The embedding of ``text`` (cached per text), or None for no words."""
        text = text[:_QUERY_CHARS].strip()
        if not text:
            return None
        key = hash(("vector", text))
        with self._lock:
            if (hit := self._vectors.get(key)) is not None:
                return hit
        vector: list[float] = [float(x) for x in self._embed([text])[0]]
        with self._lock:
            self._vectors[key] = vector
            if len(self._vectors) > 2048:
                self._vectors.popitem(last=False)
        return vector

    def similar(self, text: str) -> dict[TaskClass, float]:
        """The best cosine of ``text`` to each class's examples (cached per text)."""
        text = text[:_QUERY_CHARS].strip()
        if not text or not self._labels:
            return {}
        key = hash(text)
        with self._lock:
            if (hit := self._cache.get(key)) is not None:
                return hit
        np = self._np
        query = np.asarray(self._embed([text])[0], dtype=np.float32)
        cosines = self._matrix @ (query / (np.linalg.norm(query) + 1e-12))
        best = {task: float(cosines[rows].max()) for task, rows in self._rows.items() if rows}
        with self._lock:
            self._cache[key] = best
            if len(self._cache) > 2048:
                self._cache.popitem(last=False)
        return best


@dataclass(slots=True)
class _Session:
    choice: SessionChoice
    seen: float


ACTIVE_WINDOW = 8
"""Routed requests (memory work, code, analysis or chat; housekeeping excepted) in which
another session counts as working alongside, within ``session_idle_s``."""


@dataclass(slots=True)
class _Routed:
    session: str
    workspace: str | None
    model: str
    task: TaskClass
    seen: float
    wants: bool
    """The model suits the request best of the models that could serve it."""
    holds: frozenset[str]
    """The models that could serve it."""
    record: dict[str, Any] | None = None
    """The decision's record (its ``signals``): which request this entry is."""
    waits: bool = False
    """Its answer handed the turn to the user (until then: in flight, so working)."""
    opening: str = ""
    """The key of its task's first request (``session_keys``); "": the session's own."""


class RoutingEngine:
    """Decides routes for the virtual model; remembers sessions and token counts."""

    def __init__(
        self,
        catalog: Sequence[ModelSpec],
        settings: RoutingSettings,
        reserved_output: int,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = 4096,
    ) -> None:
        self.catalog = list(catalog)
        self.settings = settings
        self.reserved_output = reserved_output
        self.tokens = ContextEstimator()
        self.examples: ExampleIndex | None = None
        self.learned: LearnedModel | None = None
        """The learned classifier, where the rules are not decisive (``classifier.learned``)."""
        weights = settings.classifier.weights or default_weights()
        if settings.classifier.learned and weights.is_file():
            self.learned = LearnedModel.load(weights)
        self.vote_model = settings.classifier.llm.model
        """The LLM classifier's model, when one is configured."""
        self.votes: dict[str, TaskClass | None] | None = {} if self.vote_model else None
        """Its answers per ``vote_key`` (None: it named no class); the service asks it before
        ``decide`` (``classifier.LlmClassifier``), never the engine."""
        self._clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._max_sessions = max_sessions
        self._recent: deque[_Routed] = deque(maxlen=ACTIVE_WINDOW)
        self._continues: OrderedDict[str, str] = OrderedDict()
        """A compacted conversation's session -> the session it continues (see ``_link``)."""
        self._answers: OrderedDict[str, str] = OrderedDict()
        """An answer's print -> the session it answered (see ``_link``)."""
        self._lock = threading.Lock()

    # -- pieces ---------------------------------------------------------------------------

    def cheap(self, signals: RequestSignals) -> Classification:
        """The class from the request's own signals, before any vote."""
        return classify(signals, None, self.settings.classifier.min_similarity)

    def probabilities(
        self,
        request: ChatCompletionRequest,
        signals: RequestSignals,
        ruled: Classification | None = None,
    ) -> dict[TaskClass, float] | None:
        """The learned classifier's class probabilities for a request, if it is on
        (``ruled``: the rules' reading, ``cheap(signals)``, when the caller has it)."""
        if self.learned is None:
            return None
        text = words_of(request, signals)
        vector = self.examples.vector(text) if self.examples is not None else None
        return self.learned.probabilities(text, vector, structure(request, signals, ruled))

    def unsure(self, request: ChatCompletionRequest, signals: RequestSignals) -> bool:
        """Whether a vote (the LLM classifier's) could change this request's class."""
        first = self.cheap(signals)
        if self.learned is None:
            return not first.decisive
        if first.via == "rules" or not signals.human_text:
            return False
        probabilities = self.probabilities(request, signals, first)
        assert probabilities is not None
        return max(probabilities.values()) < self.settings.classifier.confident

    def classify(
        self, signals: RequestSignals, request: ChatCompletionRequest | None = None
    ) -> Classification:
        """The rules that hold whatever the words (``via == "rules"``: client housekeeping,
        the memory bank's phase or name, "go ahead", "don't change anything", small talk);
        else the learned classifier (with the LLM classifier's vote when it is unsure); without
        it, keyword scores and the examples' vote."""
        first = self.cheap(signals)
        if first.via == "rules" or (first.decisive and self.learned is None):
            return first
        if not signals.human_text:  # no words to read: what the conversation is doing
            return first
        if request is not None and self.learned is not None:
            probabilities = self.probabilities(request, signals, first)
            assert probabilities is not None
            vote, note = self._vote(signals.human_text) if signals.human_text else (None, None)
            found = classify_learned(
                signals, probabilities, vote, self.settings.classifier.confident
            )
            return replace(found, reasons=(*found.reasons, note)) if note else found
        if not signals.human_text:
            return first
        vote, note = self._vote(signals.human_text)
        similar = None
        if vote is None and self.examples is not None:
            similar = self.examples.similar(signals.human_text)
        if vote is not None or similar is not None:
            found = classify(signals, similar, self.settings.classifier.min_similarity, vote)
        else:
            found = first
        return replace(found, reasons=(*found.reasons, note)) if note else found

    def _vote(self, text: str) -> tuple[Vote | None, str | None]:
        """The LLM classifier's reading of ``text``, or a note saying why there is none."""
        if self.votes is None:
            return None, None
        key = vote_key(text)
        if key not in self.votes:
            return None, f"no answer from the LLM classifier {self.vote_model} for these words"
        task = self.votes[key]
        if task is None:
            return None, f"the LLM classifier {self.vote_model} named no task class for these words"
        reason = f"the LLM classifier {self.vote_model} reads the user's words as {task}"
        return (task, reason), None

    def _session(self, key: str, now: float) -> SessionChoice | None:
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.seen > self.settings.session_idle_s:
                del self._sessions[key]
                return None
            return session.choice

    def remember(
        self, key: str, decision: Decision, workspace: str | None = None, opening: str = ""
    ) -> None:
        """Keep a routed decision as its session's current choice (housekeeping excepted).
        ``opening``: the key of the task's first request, if not ``key`` (``session_keys``)."""
        if decision.task is None or decision.task == "meta":
            return
        now = self._clock()
        with self._lock:
            self._sessions[key] = _Session(
                SessionChoice(decision.model, decision.task, decision.num_ctx, decision.backend),
                now,
            )
            self._sessions.move_to_end(key)
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
            able = [c for c in decision.candidates if c.fits]
            chosen = next((c for c in able if c.model == decision.model), None)
            wants = chosen is not None and chosen.task_fit >= max(c.task_fit for c in able)
            holds = frozenset(c.model for c in able)
            self._recent.append(
                _Routed(
                    key,
                    workspace,
                    decision.model,
                    decision.task,
                    now,
                    wants,
                    holds,
                    record=decision.signals,
                    opening=opening if opening != key else "",
                )
            )

    def _link(
        self, key: str, workspace: str | None, request: ChatCompletionRequest, remember: bool
    ) -> str | None:
        """The session a compacted conversation continues: its summary replaced the task's
        first message, so its key is new. Looked for once, on its first request: the session
        that gave one of the answers it kept (by their tool-call ids or text), else the latest
        in its workspace. That session then sends no more: it is no longer working. Without
        ``remember`` (an explanation) the link is looked for and nothing is noted."""
        with self._lock:
            if (known := self._continues.get(key)) is None:
                known = self._continued(key, workspace, request)
                if not remember:
                    return known or None
                self._continues[key] = known
                while len(self._continues) > self._max_sessions:
                    self._continues.popitem(last=False)
                for routed in reversed(self._recent):
                    if routed.session == known:
                        routed.waits = True
                        break
        return known or None

    def _continued(self, key: str, workspace: str | None, request: ChatCompletionRequest) -> str:
        """``_link``'s search, under the lock ("": none)."""
        for message in reversed(request.messages):
            if message.role == "assistant":
                session = self._answers.get(answer_print(message))
                if session is not None and session != key:
                    return session
        for routed in reversed(self._recent):
            if routed.workspace == workspace and routed.session != key:
                return routed.session
        return ""

    def replied(
        self,
        session: str,
        working: bool,
        *,
        record: dict[str, Any] | None = None,
        answer: str | None = None,
    ) -> None:
        """Note how an answer left its session: still working (it called a tool the client
        runs by itself) or waiting for its user. ``record``: the decision's, to find its very
        request (else the session's latest); ``answer``: its print (``answer_print``)."""
        with self._lock:
            for routed in reversed(self._recent):
                if (routed.record is record) if record is not None else (routed.session == session):
                    routed.waits = not working
                    break
            if answer is not None:
                self._answers[answer] = session
                while len(self._answers) > self._max_sessions:
                    self._answers.popitem(last=False)

    def contested(
        self, workspace: str | None, session: str | None = None, opening: str | None = None
    ) -> dict[str, list[Claim]]:
        """Models that other sessions are working with alongside this one and that suit their
        latest requests best, with each such session's claim.

        Alongside: the latest of the last ``ACTIVE_WINDOW`` routed requests of another
        workspace, or, in this workspace, of another session; in either case only while that
        request is in flight or its answer keeps the agent working (a session whose answer
        waits for its user is not working: one developer's tasks follow one another). Plan
        and Act of one task are never alongside each other. ``opening``: the key of this
        session's first request (``session_keys``); a window's first request stands for it
        only until its next one, which has its own key."""
        if not self._recent:
            return {}
        now = self._clock()
        with self._lock:
            recent = [(r, r.waits) for r in self._recent]
        # Plan and Act of one task are two sessions of one task: never alongside each other;
        # nor a compacted conversation and the one it continues.
        tasks = {key[-_TASK_DIGITS:] for key in (session, opening) if key is not None}
        linked = self._continues.get(session) if session is not None else None
        gone_on = {routed.opening for routed, _ in recent if routed.opening}
        latest: dict[tuple[str, str | None], tuple[_Routed, bool]] = {}
        for routed, waits in recent:  # oldest first: the latest of each wins
            if routed.session in gone_on:
                continue
            if routed.workspace == workspace and (
                routed.session[-_TASK_DIGITS:] in tasks or routed.session == linked
            ):
                continue
            if workspace is not None and routed.workspace not in (None, workspace):
                latest["workspace", routed.workspace] = routed, waits
            elif session is not None:
                latest["session", routed.session] = routed, waits
        found: dict[str, list[Claim]] = {}
        for routed, waits in latest.values():
            if routed.wants and not waits and now - routed.seen <= self.settings.session_idle_s:
                found.setdefault(routed.model, []).append(Claim(routed.task, routed.holds))
        return found

    # -- the decision ---------------------------------------------------------------------

    def _corrected(self, view: View) -> View:
        """``view`` with each model's learned token-count correction."""
        ratios = {spec.name: self.tokens.ratio(spec.name) for spec in self.catalog}
        # replace() would do the same at several times the cost, on every request.
        return View(
            view.snapshots, view.profiles, view.idle_s, ratios, view.busy_s, view.capabilities,
            view.avoid,
        )  # fmt: skip

    def decide_completion(
        self, prompt: str, max_tokens: int | None, view: View, suffix: str | None = None
    ) -> Decision:
        """Route a raw completion (editor autocomplete): the coder's kind of work.

        With a ``suffix`` (fill in the middle) only a model with ``insert`` can serve it."""
        tokens = self.tokens.text_tokens(prompt)
        if suffix:
            tokens += self.tokens.text_tokens(suffix)
        decision = choose(
            "implement", tokens, max_tokens or 256, self.catalog, self._corrected(view),
            self.settings, ["fill-in-the-middle completion" if suffix else "raw prompt completion"],
            needs=frozenset({"insert"}) if suffix else frozenset(),
        )  # fmt: skip
        return replace(decision, signals={"prompt_tokens": tokens})

    def fallback(
        self, decision: Decision, view: View, failed: Mapping[str, str]
    ) -> Decision | None:
        """The next choice for a request whose model could not answer: the policy's choice
        among the models and hosts that have not failed it (``failed``: host or
        ``host/model`` keys, with what went wrong). None when nothing else can serve it."""
        if decision.prompt_tokens is None:
            return None  # an escalation: nothing else was asked for
        catalog = [
            spec
            for spec in self.catalog
            if spec.backend not in failed
            and placement(spec.backend, spec.name) not in failed
            # a named model: the same model on a pool's other hosts
            and (decision.routed or spec.name == decision.model)
        ]
        if not catalog:
            return None
        why = [f"fallback: {key} failed ({reason})" for key, reason in failed.items()]
        try:
            if not decision.routed or decision.task is None:
                chosen = direct(
                    catalog, decision.prompt_tokens, decision.output_tokens,
                    self._corrected(view), self.settings, signals=decision.signals,
                    needs=decision.needs,
                )  # fmt: skip
                chosen = replace(chosen, reasons=(*why, *chosen.reasons))
            else:
                chosen = choose(
                    decision.task, decision.prompt_tokens, decision.output_tokens, catalog,
                    self._corrected(view), self.settings, why, session_key=decision.session,
                    signals=decision.signals, needs=decision.needs,
                )  # fmt: skip
        except RouterError:
            return None  # no other model holds it, or takes what it needs
        return replace(chosen, workspace=decision.workspace, tool_style=decision.tool_style)

    def decide_direct(
        self, spec: ModelSpec, prompt_tokens: int, output_tokens: int, view: View,
        needs: frozenset[str] = frozenset(),
    ) -> Decision:  # fmt: skip
        """A request that names ``spec``: the fit check and ``num_ctx`` rule of a routed one,
        on whichever of its pool's hosts suits best."""
        signals = {"prompt_tokens": prompt_tokens, "direct": True}
        placed = [s for s in self.catalog if s.name == spec.name] or [spec]
        return direct(
            placed, prompt_tokens, output_tokens, self._corrected(view), self.settings,
            signals=signals, needs=needs,
        )  # fmt: skip

    def moved(self, key: str, decision: Decision) -> None:
        """A session's request was answered elsewhere (a fallback): it stays there."""
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and decision.task is not None:
                session.choice = SessionChoice(
                    decision.model, decision.task, decision.num_ctx, decision.backend
                )

    def decide(
        self,
        request: ChatCompletionRequest,
        view: View,
        *,
        remember: bool = True,
        signals: RequestSignals | None = None,
    ) -> Decision:
        """Route one request to the virtual model (``signals``: the request's, if read already)."""
        started = time.perf_counter()
        if signals is None:
            signals = read_signals(request)
        classification = self.classify(signals, request)
        # What the user asked decides, never the standing rules of the system prompt (a
        # memory-bank rule to read the bank first does not make a bug fix memory work).
        task, reasons = classification.task, classification.reasons
        prompt = self.tokens.prompt_tokens(request)
        output = request.output_limit() or self.reserved_output
        key, opening = session_keys(request)
        workspace = signals.memory.workspace
        linked = self._link(key, workspace, request, remember) if signals.compacted else None
        now = self._clock()
        session = self._session(key, now)
        if session is None and opening != key:  # its first request's choice
            session = self._session(opening, now)
        if session is None and linked is not None:  # its model, as the task had it
            session = self._session(linked, now)
        needs = request.needs()
        record = {
            "class": classification.task,
            "class_via": classification.via,
            "class_scores": classification.scores,
            "tool_style": signals.tool_style,
            "in_tool_loop": signals.in_tool_loop,
            "recent_tools": list(signals.recent_tools),
            "memory_bank": signals.memory.phase,
            "memory_files_read": list(signals.memory.files_read),
            "mode": signals.memory.mode,
            "workspace": signals.memory.workspace,
            "housekeeping": signals.housekeeping,
            "prompt_tokens": prompt,
            "messages": signals.messages,
            "sticky": session.model if session else None,
            "needs": sorted(needs) if needs else [],
            "decide_ms": None,  # set below, once the choice is made
            # The user's words: the decision log drops this unless log_prompts is on.
            "prompt": signals.human_text[:1000],
            # For ``memory-router review`` without the words: a repeat, a correction, the task.
            "words": len(signals.human_text.split()),
            "words_hash": words_hash(signals.human_text),
            "correction": corrects(signals.human_text),
            "opening": opening,
        }
        if linked is not None:
            record["continues"] = linked  # the session this compacted conversation goes on
        contested = self.contested(workspace, key, opening)
        if contested:
            record["contested"] = sorted(contested)  # models other sessions work with alongside
        decision = choose(
            task, prompt, output, self.catalog, self._corrected(view), self.settings, reasons,
            session, session_key=key, signals=record, needs=needs, contested=contested,
            likely=classification.likely(),
            bank_read=signals.memory.phase == "read" and not signals.user_spoke,
        )  # fmt: skip
        ms = round((time.perf_counter() - started) * 1000, 3)
        record["decide_ms"] = ms
        # The decision as made, complete: nothing changes it from here on.
        decision = replace(
            decision, decide_ms=ms, workspace=workspace, tool_style=signals.tool_style
        )
        if remember:
            self.remember(key, decision, workspace, opening)
        return decision
