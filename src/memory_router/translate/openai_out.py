"""Neutral events to what OpenAI clients read: SSE chunks, or one whole response.

Chunk shapes follow the OpenAI API: the first chunk carries ``delta.role``; tool calls are
``delta.tool_calls`` items with ``index``, and ``id``/``type``/``function.name`` on a call's
first piece; reasoning goes in ``delta.reasoning_content`` (what Cline reads); the last choice
chunk carries ``finish_reason``; with ``include_usage`` a chunk with ``choices: []`` and the
usage follows; then ``data: [DONE]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import sse
from ..errors import RouterError
from ..events import Event, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage

__all__ = ["ChatCollector", "ChatStreamEncoder", "CompletionCollector", "CompletionStreamEncoder"]


def _usage(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def error_event(error: RouterError) -> bytes:
    """The error envelope as an SSE event, for failures after the headers went out."""
    return sse.encode(orjson.dumps(error.to_body()))


class _Stream:
    object_name = ""

    def __init__(self, response_id: str, model: str, include_usage: bool) -> None:
        self.response_id = response_id
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return sse.encode(
            orjson.dumps(
                {
                    "id": self.response_id,
                    "object": self.object_name,
                    "created": self.created,
                    "model": self.model,
                    "choices": choices,
                    **extra,
                }
            )
        )

    def _close(self, choice: dict[str, Any], finish: Finish) -> list[bytes]:
        out = [self._chunk([choice])]
        if self.include_usage:
            out.append(self._chunk([], usage=_usage(finish.usage)))
        out.append(sse.DONE)
        return out

    def error(self, error: RouterError) -> list[bytes]:
        return [error_event(error), sse.DONE]


class ChatStreamEncoder(_Stream):
    """Events in, ``chat.completion.chunk`` SSE bytes out."""

    object_name = "chat.completion.chunk"

    def start(self) -> bytes:
        return self._chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )

    def encode(self, event: Event) -> list[bytes]:
        if isinstance(event, TextDelta):
            delta: dict[str, Any] = {"content": event.text}
        elif isinstance(event, ReasoningDelta):
            delta = {"reasoning_content": event.text}
        elif isinstance(event, ToolCallDelta):
            item: dict[str, Any] = {"index": event.index}
            if event.id is not None:
                item["id"] = event.id
                item["type"] = "function"
            function: dict[str, str] = {"arguments": event.arguments}
            if event.name is not None:
                function["name"] = event.name
            item["function"] = function
            delta = {"tool_calls": [item]}
        else:
            return self._close({"index": 0, "delta": {}, "finish_reason": event.reason}, event)
        return [self._chunk([{"index": 0, "delta": delta, "finish_reason": None}])]


class CompletionStreamEncoder(_Stream):
    """Events in, ``text_completion`` SSE bytes out."""

    object_name = "text_completion"

    def start(self) -> bytes | None:
        return None

    def encode(self, event: Event) -> list[bytes]:
        if isinstance(event, TextDelta):
            return [self._chunk([{"index": 0, "text": event.text, "finish_reason": None}])]
        if isinstance(event, Finish):
            return self._close({"index": 0, "text": "", "finish_reason": event.reason}, event)
        return []


@dataclass(slots=True)
class _ToolCallParts:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatCollector:
    """Events in, one ``chat.completion`` object out (for ``stream: false``)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, _ToolCallParts] = {}
        self.finish: Finish | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, ToolCallDelta):
            parts = self.calls.setdefault(event.index, _ToolCallParts())
            parts.id = parts.id or event.id
            parts.name = parts.name or (event.name or "")
            parts.arguments.append(event.arguments)
        else:
            self.finish = event

    def response(self, response_id: str, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": parts.id,
                    "type": "function",
                    "function": {"name": parts.name, "arguments": "".join(parts.arguments)},
                }
                for _, parts in sorted(self.calls.items())
            ]
        elif message["content"] is None:
            message["content"] = ""
        finish = self.finish or Finish("stop")
        return {
            "id": response_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish.reason}],
            "usage": _usage(finish.usage),
        }


class CompletionCollector:
    """Events in, one ``text_completion`` object out."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.finish: Finish | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, Finish):
            self.finish = event

    def response(self, response_id: str, model: str) -> dict[str, Any]:
        finish = self.finish or Finish("stop")
        return {
            "id": response_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "text": "".join(self.text), "finish_reason": finish.reason}],
            "usage": _usage(finish.usage),
        }
