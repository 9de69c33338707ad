"""The calls a backend receives: what the router decided to run.

A call is a concrete model id on a backend, the conversation in OpenAI shape, sampling options,
and the residency knobs (``num_ctx``, ``keep_alive``). Neutral like ``events``: the backends run
calls, the translators turn them into wire formats, and neither owns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .domain import KeepAlive
from .wire.openai import ChatMessage, Tool

__all__ = ["ChatCall", "CompletionCall", "Sampling"]


@dataclass(slots=True, frozen=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


@dataclass(slots=True)
class ChatCall:
    """One chat generation, ready for a backend."""

    model: str
    messages: list[ChatMessage]
    stream: bool = True
    sampling: Sampling = field(default_factory=Sampling)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    think: bool | str | None = None
    num_ctx: int | None = None
    keep_alive: KeepAlive | None = None
    num_gpu: int | None = None
    """Layers Ollama puts on the GPU; 0 runs the model on the CPU alone (None: Ollama picks)."""


@dataclass(slots=True)
class CompletionCall:
    """One raw-prompt completion, ready for a backend."""

    model: str
    prompt: str
    stream: bool = True
    sampling: Sampling = field(default_factory=Sampling)
    num_ctx: int | None = None
    keep_alive: KeepAlive | None = None
    suffix: str | None = None
    """Text after the cursor: fill in the middle."""
