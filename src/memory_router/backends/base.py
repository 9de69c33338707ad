"""The interface every backend implements.

A backend receives calls (``memory_router.calls``), translates each to its native wire format
and yields neutral events (``memory_router.events``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..calls import ChatCall, CompletionCall, Sampling
from ..events import Event

__all__ = [
    "Backend",
    "BackendModel",
    "BackendStatus",
    "ChatCall",
    "CompletionCall",
    "Embeds",
    "HoldsResidency",
    "LoadedModel",
    "Sampling",
]


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


@runtime_checkable
class HoldsResidency(Protocol):
    """A backend that loads and unloads models and says what it holds (Ollama): the router
    plans residency on it."""

    name: str
    base_url: str

    async def loaded_models(self) -> list[LoadedModel]: ...
    async def show(self, model: str) -> dict[str, Any]: ...
    async def load(self, model: str, num_ctx: int | None, keep_alive: Any) -> dict[str, Any]: ...
    async def unload(self, model: str) -> None: ...
    async def status(self, timeout: float = 2.0) -> BackendStatus: ...
    async def list_models(self) -> list[BackendModel]: ...


@runtime_checkable
class Embeds(Protocol):
    """A backend that embeds texts (Ollama's ``/api/embed``)."""

    name: str

    async def embed(self, model: str, texts: list[str]) -> dict[str, Any]: ...


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
