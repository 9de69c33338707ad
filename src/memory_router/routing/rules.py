"""The routing seam: ``classify`` a request, then ``choose`` a model for it.

This is a simple rule set over cheap signals. It is shaped for the full policy: ``choose``
takes the candidates as plain data and returns a ``Decision`` carrying every reason, so a
residency-aware scorer can replace the body without touching callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..errors import ContextLengthExceeded
from ..settings import ModelSpec, TaskClass
from ..wire.openai import ChatCompletionRequest
from .decision import Candidate, Decision
from .signals import RequestSignals, read_signals

__all__ = ["choose", "classify", "passthrough", "route"]


def classify(signals: RequestSignals) -> tuple[TaskClass, list[str]]:
    """The task class of a request, with the signals that decided it."""
    if signals.housekeeping:
        return "meta", ["client housekeeping prompt (title, summary or follow-up)"]
    if signals.memory_bank:
        return "memory", [f"memory bank {signals.memory.phase}", *signals.memory.reasons[:2]]
    if signals.mentions_memory_bank:
        return "memory", ["the user mentions the memory bank"]
    if signals.recent_edit:
        tools = ", ".join(sorted(set(signals.recent_tools)))
        return "implement", [f"recent tool calls edit or run things ({tools})"]
    if signals.analyze_words and not signals.implement_words:
        return "analyze", ["the request asks for explanation, review or planning"]
    if signals.implement_words:
        return "implement", ["the request asks for code to be written or changed"]
    return "chat", ["no stronger signal: a conversational turn"]


def choose(
    task: TaskClass,
    needed_tokens: int,
    catalog: Sequence[ModelSpec],
    reasons: list[str],
) -> Decision:
    """Pick the best-fitting model whose context holds the request."""
    candidates = tuple(
        Candidate(
            model=spec.name,
            backend=spec.backend,
            task_fit=spec.task_fit[task],
            num_ctx=spec.num_ctx,
            fits=needed_tokens <= spec.num_ctx,
            score=spec.task_fit[task] if needed_tokens <= spec.num_ctx else 0.0,
        )
        for spec in catalog
    )
    fitting = [c for c in candidates if c.fits]
    if not fitting:
        largest = max(catalog, key=lambda spec: spec.num_ctx)
        raise ContextLengthExceeded(
            f"the request needs about {needed_tokens} tokens (prompt plus reserved output) but "
            f"the largest local context is {largest.num_ctx} ({largest.name}): start a new task "
            f"or shorten the conversation",
            param="messages",
        )
    best = max(fitting, key=lambda c: c.score)  # max keeps the first of equal scores
    spec = next(spec for spec in catalog if spec.name == best.model)
    why = [*reasons, f"{task} -> {spec.name} (fit {best.task_fit:.2f}, num_ctx {spec.num_ctx})"]
    return Decision(
        model=spec.name,
        backend=spec.backend,
        num_ctx=spec.num_ctx,
        keep_alive=spec.keep_alive,
        task=task,
        reasons=tuple(why),
        candidates=candidates,
    )


def route(
    request: ChatCompletionRequest, catalog: Sequence[ModelSpec], reserved_output: int
) -> Decision:
    """Decide which concrete model serves a request sent to the virtual model."""
    signals = read_signals(request)
    task, reasons = classify(signals)
    output = request.output_limit() or reserved_output
    decision = choose(task, signals.estimated_tokens + output, catalog, reasons)
    return replace(
        decision,
        signals={
            "tool_style": signals.tool_style,
            "recent_tools": list(signals.recent_tools),
            "memory_bank": signals.memory.phase,
            "memory_files_read": list(signals.memory.files_read),
            "mode": signals.memory.mode,
            "workspace": signals.memory.workspace,
            "housekeeping": signals.housekeeping,
            "estimated_tokens": signals.estimated_tokens,
            "messages": signals.messages,
        },
    )


def passthrough(spec: ModelSpec) -> Decision:
    """The decision for a request that names a concrete model: run it as asked."""
    return Decision(
        model=spec.name,
        backend=spec.backend,
        num_ctx=spec.num_ctx,
        keep_alive=spec.keep_alive,
        task=None,
        reasons=(f"client asked for {spec.name}",),
        routed=False,
    )
