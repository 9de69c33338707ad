"""Calls to an OpenAI-compatible upstream, and its replies to neutral events.

Used for llama.cpp's server (including the embedded one), vLLM, LM Studio and cloud
endpoints. The request is nearly the client's own; the reply chunks map onto events almost
one to one (``reasoning_content`` and llama.cpp's ``reasoning`` both become reasoning).
"""

from __future__ import annotations

from typing import Any

from ..calls import ChatCall, CompletionCall, Sampling
from ..errors import (
    BackendError,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    RouterError,
)
from ..events import Event, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage

__all__ = ["ChunkDecoder", "chat_body", "completion_body", "error_for_status"]


def _sampling(sampling: Sampling) -> dict[str, Any]:
    keys = ("max_tokens", "temperature", "top_p", "stop", "seed", "frequency_penalty",
            "presence_penalty")  # fmt: skip
    return {key: getattr(sampling, key) for key in keys if getattr(sampling, key) is not None}


def chat_body(call: ChatCall) -> dict[str, Any]:
    """The ``/v1/chat/completions`` body for an upstream."""
    body: dict[str, Any] = {
        "model": call.model,
        "messages": [m.model_dump(exclude_none=True) for m in call.messages],
        "stream": call.stream,
        **_sampling(call.sampling),
    }
    if call.stream:
        body["stream_options"] = {"include_usage": True}
    if call.tools:
        body["tools"] = [tool.model_dump(exclude_none=True) for tool in call.tools]
        if call.tool_choice is not None:
            body["tool_choice"] = call.tool_choice
        if call.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = call.parallel_tool_calls
    if call.response_format is not None:
        body["response_format"] = call.response_format
    return body


def completion_body(call: CompletionCall) -> dict[str, Any]:
    """The ``/v1/completions`` body for an upstream."""
    body: dict[str, Any] = {
        "model": call.model,
        "prompt": call.prompt,
        "stream": call.stream,
        **_sampling(call.sampling),
    }
    if call.suffix:
        body["suffix"] = call.suffix
    if call.stream:
        body["stream_options"] = {"include_usage": True}
    return body


class ChunkDecoder:
    """Turns upstream ``chat.completion(.chunk)`` or ``text_completion`` objects into events.

    The ``Finish`` event is held back until the stream ends, because OpenAI-style streams send
    ``finish_reason`` in one chunk and the usage in a later one.
    """

    def __init__(self) -> None:
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._saw_tool_call = False

    def feed(self, obj: dict[str, Any]) -> list[Event]:
        if "error" in obj:
            error = obj["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise BackendError(f"the model server failed mid-answer: {message}")
        usage = obj.get("usage")
        if usage:
            self._usage = Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        events: list[Event] = []
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or choice.get("message") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                events.append(ReasoningDelta(reasoning))
            # text_completion choices carry "text"; chat choices carry delta/message content.
            text = choice["text"] if "text" in choice else delta.get("content")
            if text:
                events.append(TextDelta(text))
            for position, call in enumerate(delta.get("tool_calls") or ()):
                function = call.get("function") or {}
                self._saw_tool_call = True
                events.append(
                    ToolCallDelta(
                        index=int(call.get("index", position)),
                        id=call.get("id"),
                        name=function.get("name"),
                        arguments=function.get("arguments") or "",
                    )
                )
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> Finish:
        """The closing event, once the upstream stream has ended."""
        reason = self._finish_reason or "stop"
        if self._saw_tool_call and reason == "stop":
            reason = "tool_calls"
        return Finish(reason=reason, usage=self._usage)


def error_for_status(status: int, body: Any, model: str | None) -> RouterError:
    """Map an upstream's error reply (OpenAI envelope or plain text) to our error tree."""
    message = str(body)
    code = None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = str(error.get("message") or error)
            code = error.get("code") or error.get("type")
        else:
            message = str(error)
    if status == 404 and model:
        return ModelNotFound(f"the upstream does not serve model {model!r}: {message}")
    if status == 400 and (code == "context_length_exceeded" or "context" in message.lower()):
        return ContextLengthExceeded(f"the upstream rejected the prompt: {message}")
    if status in (400, 422):
        return InvalidRequest(f"the upstream rejected the request: {message}")
    if status == 429:
        return RateLimited(f"the upstream is rate limiting: {message}", retry_after=2)
    return BackendError(f"the upstream failed ({status}): {message}")
