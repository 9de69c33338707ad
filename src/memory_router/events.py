"""Neutral stream events: what every backend yields and every renderer consumes.

No wire format owns these. Backends translate their native stream into events; the API turns
events into OpenAI chunks or a whole response. A stream ends with exactly one ``Finish``;
failures are raised from the iterator, never yielded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Finish", "ReasoningDelta", "TextDelta", "ToolCallDelta", "Usage"]


@dataclass(slots=True, frozen=True)
class TextDelta:
    """A piece of the answer text."""

    text: str


@dataclass(slots=True, frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning ("thinking") text."""

    text: str


@dataclass(slots=True, frozen=True)
class ToolCallDelta:
    """A tool call or a piece of one.

    Ollama sends each call whole (one delta with ``id``, ``name`` and all ``arguments``);
    OpenAI-compatible upstreams may send the arguments string in pieces, where only the first
    piece of a call carries ``id`` and ``name``. ``arguments`` is always JSON text.
    """

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(slots=True, frozen=True)
class Usage:
    """Token counts as the backend reported them."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True, frozen=True)
class Finish:
    """The end of a generation.

    ``reason`` is OpenAI's ``finish_reason`` vocabulary: stop, length, tool_calls.
    ``stats`` carries backend timings (e.g. Ollama's ``load_duration``) for logs and routing.
    """

    reason: str
    usage: Usage | None = None
    stats: dict[str, Any] = field(default_factory=dict)


Event = TextDelta | ReasoningDelta | ToolCallDelta | Finish
