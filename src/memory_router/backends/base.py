"""The interface every backend implements, and the calls it receives.

A call is what the router decided to run: a concrete model id on that backend, the
conversation in OpenAI shape, sampling options, and the residency knobs (``num_ctx``,
``keep_alive``). A backend translates it to its native wire format and yields neutral events.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..events import Event
from ..settings import KeepAlive
from ..wire.openai import ChatMessage, Tool

__all__ = [
    "Backend",
    "BackendModel",
    "BackendStatus",
    "ChatCall",
    "CompletionCall",
    "LoadedModel",
    "Sampling",
]


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


@dataclass(slots=True, frozen=True)
class BackendModel:
    """A model a backend can serve."""

    name: str
    size_bytes: int | None = None
    context_length: int | None = None


@dataclass(slots=True, frozen=True)
class LoadedModel:
    """A model resident in a backend's memory (Ollama's ``/api/ps``)."""

    name: str
    size_bytes: int
    size_vram_bytes: int
    context_length: int | None
    expires_at: str | None


@dataclass(slots=True, frozen=True)
class BackendStatus:
    """Whether a backend answers, and what it said."""

    name: str
    kind: str
    answers: bool
    version: str | None = None
    detail: str = ""


class Backend(Protocol):
    """A model server the router can send work to."""

    name: str
    kind: str

    def chat(self, call: ChatCall) -> AsyncGenerator[Event, None]:
        """Run a chat generation; yields events, raises ``RouterError`` on failure."""
        ...

    def complete(self, call: CompletionCall) -> AsyncGenerator[Event, None]:
        """Run a raw-prompt completion; yields events, raises ``RouterError`` on failure."""
        ...

    async def list_models(self) -> list[BackendModel]:
        """The models this backend can serve right now."""
        ...

    async def loaded_models(self) -> list[LoadedModel]:
        """What is resident now (empty where the backend cannot tell)."""
        ...

    async def status(self) -> BackendStatus:
        """Probe the backend cheaply; never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections and processes."""
        ...
