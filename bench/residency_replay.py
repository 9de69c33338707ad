"""The client side of ``bench/residency.py``: replayed requests, sessions sent at once, retries.

A ``TraceItem`` is one request as the client sends it (its body, the think time before it) with
the reply the emulator is scripted to give and its token count; ``residency_trace`` fills a
``Builder`` with them. ``replay`` sends each session's items one after another, streamed, after
their think time, every session in its own thread: several sessions are several Cline windows
(or other chat clients) sharing one router and one machine.

A 429 is retried as Cline's ``withRetry`` does: after ``Retry-After`` seconds (without the
header 1 s, then 2 s, at most 10 s), three attempts in all; the third 429 is an error the user
sees. A request's latency runs from its first attempt to the last byte of the answer.

Scripted replies are filed per conversation (``ScriptBook``): the emulator takes a script when
a request reaches it, and with sessions sent at once that order is not the order they were sent
in. A conversation is the first system and first user message, which the router passes on
unchanged; requests of one session are sequential, so a conversation has one request in flight
(two sessions sending the very same request, a title say, get the very same reply).
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from memory_router.routing.engine import session_key
from memory_router.tokens import count_tokens
from memory_router.wire.openai import ChatCompletionRequest, ChatMessage

__all__ = [
    "CLINE_ATTEMPTS",
    "Builder",
    "Reply",
    "ScriptBook",
    "Sent",
    "TraceItem",
    "conversation",
    "join_decisions",
    "replay",
]

Json = dict[str, Any]
CLINE_ATTEMPTS = 3
"""cline's ``withRetry``: maxRetries 3 (attempts), baseDelay 1 s, maxDelay 10 s, 429 only."""
_BACKOFF_S, _MAX_BACKOFF_S = 1.0, 10.0


@dataclass(frozen=True)
class Reply:
    """What the model answers (the emulator is scripted with it)."""

    content: str
    tool_calls: tuple[Json, ...] = ()


@dataclass(frozen=True)
class TraceItem:
    index: int
    task: int
    label: str
    note: str
    body: Json
    gap_s: float
    reply: Reply
    prompt_tokens: int
    """cl100k tokens of every message and the tool definitions."""


@dataclass
class Builder:
    """Collects trace items; counts tokens once per message."""

    rng: random.Random
    tools: dict[str, list[Json]]
    items: list[TraceItem] = field(default_factory=list)
    _tokens: dict[int, tuple[Json, int]] = field(default_factory=dict)

    def message_tokens(self, message: Json) -> int:
        if id(message) not in self._tokens:  # the message is kept: its id stays unique
            calls = message.get("tool_calls") or ()
            text = "".join(c["function"]["name"] + c["function"]["arguments"] for c in calls)
            tokens = 4 + count_tokens(str(message.get("content") or "") + text)
            self._tokens[id(message)] = (message, tokens)
        return self._tokens[id(message)][1]

    def emit(self, task: int, label: str, note: str, body: Json, reply: Reply) -> int:
        """Add a request; returns its tokens plus the reply's (what Cline checks)."""
        tokens = sum(self.message_tokens(m) for m in body["messages"])
        tokens += count_tokens(json.dumps(body["tools"])) if body.get("tools") else 0
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        gap = round(self.rng.uniform(0.0, 0.05), 4)
        self.items.append(TraceItem(len(self.items), task, label, note, body, gap, reply, tokens))
        args = "".join(
            json.dumps(c["arguments"], separators=(",", ":"), ensure_ascii=False)
            for c in reply.tool_calls
        )
        return tokens + count_tokens(reply.content + args)


@dataclass
class Sent:
    """One replayed request as the client saw it, joined with the router's decision record."""

    session: int
    index: int
    task: int
    label: str
    note: str
    prompt_tokens: int
    status: int
    model: str | None
    latency_ms: float
    retries: int
    started: float
    """Seconds since the replay started (first attempt)."""
    ended: float
    stream_error: bool = False
    key: str = ""
    """The router's session key of the request (its decision record's ``session``)."""
    cls: str | None = None
    caused_load: bool | None = None
    evicted: list[str] | None = None
    num_ctx: int | None = None
    sticky: bool | None = None
    """The router kept the session's model inside its loop (not the best score)."""
    reason: str | None = None


def conversation(messages: Sequence[Any]) -> tuple[str, str]:
    """A request's conversation: its first system and first user message (their text, parts
    joined as the router passes them on)."""
    first = {"system": "", "user": ""}
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role in first and not first[role]:
            first[role] = ChatMessage.model_validate(message).text()
    return first["system"], first["user"]


class ScriptBook:
    """Replies waiting for their request, per conversation; shared by the client threads and
    the emulator's loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: dict[tuple[str, str], collections.deque[TraceItem]] = {}
        self.misses = 0
        """Generation requests that found no reply filed for their conversation."""

    def put(self, key: tuple[str, str], item: TraceItem) -> None:
        with self._lock:
            self._queued.setdefault(key, collections.deque()).append(item)

    def take(self, key: tuple[str, str]) -> TraceItem | None:
        with self._lock:
            queued = self._queued.get(key)
            if queued:
                return queued.popleft()
            self.misses += 1
            return None

    def withdraw(self, key: tuple[str, str], item: TraceItem) -> None:
        """Drop ``item`` if no request took it (the router answered without the backend)."""
        with self._lock:
            queued = self._queued.get(key)
            if queued and any(queued_item is item for queued_item in queued):
                self._queued[key] = collections.deque(q for q in queued if q is not item)


def cline_delay(retry_after: str | None, attempt: int) -> float:
    """Cline's wait before the next attempt: the header (delta seconds or a Unix time)."""
    try:
        value = int((retry_after or "").strip())
    except ValueError:
        return min(_MAX_BACKOFF_S, _BACKOFF_S * 2.0**attempt)
    now = time.time()
    return max(value - now, 0.0) if value > now else float(value)


def _send(client: httpx.Client, body: Json) -> tuple[int, httpx.Headers, bool]:
    """POST one streamed request, read it to the end: status (0: no answer), headers, and
    whether an error event came in the stream."""
    tail = b""
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            for chunk in response.iter_bytes():
                tail = (tail + chunk)[-4096:]
    except httpx.HTTPError:
        return 0, httpx.Headers(), False
    return response.status_code, response.headers, b'data: {"error"' in tail


def _replay_session(
    base_url: str,
    book: ScriptBook,
    session: int,
    trace: list[TraceItem],
    keys: list[str],
    t0: float,
) -> list[Sent]:
    sent: list[Sent] = []
    auth = {"Authorization": "Bearer any-key"}
    with httpx.Client(base_url=base_url, timeout=600, headers=auth) as client:
        for item, key in zip(trace, keys, strict=True):
            time.sleep(item.gap_s)
            talk = conversation(item.body["messages"])
            book.put(talk, item)
            retries = 0
            started = time.perf_counter()
            try:
                for attempt in range(CLINE_ATTEMPTS):
                    status, headers, stream_error = _send(client, item.body)
                    if status != 429 or attempt == CLINE_ATTEMPTS - 1:
                        break
                    retries += 1
                    time.sleep(cline_delay(headers.get("retry-after"), attempt))
            finally:
                book.withdraw(talk, item)
            ended = time.perf_counter()
            sent.append(
                Sent(
                    session,
                    item.index,
                    item.task,
                    item.label,
                    item.note,
                    item.prompt_tokens,
                    status,
                    headers.get("x-router-model"),
                    round((ended - started) * 1000, 1),
                    retries,
                    round(started - t0, 4),
                    round(ended - t0, 4),
                    stream_error=stream_error,
                    key=key,
                    reason=headers.get("x-router-reason"),
                )
            )
    return sent


def router_keys(trace: list[TraceItem]) -> list[str]:
    """The router's session key of each request, computed as the router does (same process)."""
    return [session_key(ChatCompletionRequest.model_validate(item.body)) for item in trace]


def replay(base_url: str, book: ScriptBook, traces: list[list[TraceItem]]) -> list[Sent]:
    """Every session's requests in order, the sessions at once (one thread each)."""
    keys = [router_keys(trace) for trace in traces]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(traces), thread_name_prefix="session") as pool:
        futures = [
            pool.submit(_replay_session, base_url, book, n, trace, keys[n], t0)
            for n, trace in enumerate(traces)
        ]
        return [s for future in futures for s in future.result()]


def join_decisions(sent: list[Sent], records: list[dict[str, Any]]) -> list[str]:
    """Attach each answered request's decision record: records are written as requests end,
    so those of one router session come in the order its requests ended."""
    problems = []
    ok = sorted((s for s in sent if s.status == 200), key=lambda s: s.ended)
    if len(records) != len(ok):
        problems.append(f"{len(records)} decision records for {len(ok)} answered requests")
    by_key: dict[str, collections.deque[dict[str, Any]]] = collections.defaultdict(
        collections.deque
    )
    for record in records:
        by_key[str(record.get("session"))].append(record)
    for s in ok:
        if not by_key[s.key]:
            problems.append(f"session {s.session} request {s.index}: no decision record")
            continue
        record = by_key[s.key].popleft()
        if record.get("model") != s.model:
            problems.append(
                f"session {s.session} request {s.index}: header {s.model}, "
                f"record {record.get('model')}"
            )
        if record.get("outcome") != "ok":
            problems.append(f"session {s.session} request {s.index}: {record.get('outcome')}")
        s.cls = record.get("class")
        s.caused_load = record.get("caused_load")
        s.evicted = record.get("evicted")
        s.num_ctx = record.get("num_ctx")
        s.sticky = any("the session stays on" in why for why in record.get("reasons") or ())
    return problems
