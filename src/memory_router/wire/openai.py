"""OpenAI wire types for the requests the router accepts.

Tolerant on purpose: clients send fields we do not use (``user``, ``metadata``, vendor
extensions); they are accepted, kept in ``model_extra``, and reported by ``ignored_fields``
so the request log can say what was dropped. Fields we do use are validated strictly, and a
validation failure becomes a 400 naming the offending ``param``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidRequest

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "ContentPart",
    "FunctionCall",
    "StreamOptions",
    "Tool",
    "ToolCall",
    "parse_request",
]


_M = TypeVar("_M", bound=BaseModel)


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageURL(_Tolerant):
    url: str
    detail: str | None = None


class ContentPart(_Tolerant):
    """One part of an array-of-parts message content."""

    type: str
    text: str | None = None
    image_url: ImageURL | None = None


class FunctionCall(_Tolerant):
    name: str
    arguments: str = ""


class ToolCall(_Tolerant):
    id: str | None = None
    type: str = "function"
    function: FunctionCall


class ChatMessage(_Tolerant):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    def text(self) -> str:
        """The message's text, joining text parts; images and other parts are skipped."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content if part.type == "text")


class FunctionDef(_Tolerant):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Tolerant):
    type: Literal["function"] = "function"
    function: FunctionDef


class StreamOptions(_Tolerant):
    include_usage: bool = False


class _Sampling(_Tolerant):
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    n: int | None = Field(None, ge=1, le=1)
    user: str | None = None

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def ignored_fields(self) -> list[str]:
        """Top-level fields the router accepted but does not act on."""
        return sorted((self.model_extra or {}).keys())


class ChatCompletionRequest(_Sampling):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def needs(self) -> frozenset[str]:
        """What a model must take to serve this request, in Ollama's capability words.

        An image anywhere in the conversation counts: clients resend it on every later turn."""
        tools = bool(self.tools) and self.tool_choice != "none"
        images = False
        for message in self.messages:  # a loop: a generator costs more on every request
            content = message.content
            if type(content) is list and any(part.type == "image_url" for part in content):
                images = True
                break
        return _NEEDS[tools, images]


_NEEDS = {
    (False, False): frozenset[str](),
    (True, False): frozenset({"tools"}),
    (False, True): frozenset({"vision"}),
    (True, True): frozenset({"tools", "vision"}),
}
_INSERT = frozenset({"insert"})


class CompletionRequest(_Sampling):
    model: str = Field(min_length=1)
    prompt: str | list[str]
    echo: bool | None = None
    suffix: str | None = None
    """Text after the cursor: a fill-in-the-middle completion (editor autocomplete)."""

    def needs(self) -> frozenset[str]:
        """What a model must take to serve this request: ``insert`` for a suffix."""
        return _INSERT if self.suffix else _NEEDS[False, False]

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise InvalidRequest(
                "only one prompt per request is supported; send one request per prompt",
                param="prompt",
            )
        return self.prompt[0]


def parse_request(model: type[_M], data: Any) -> _M:
    """Validate a decoded JSON body; a failure is a 400 that names the field."""
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", param=None)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"]) or None
        raise InvalidRequest(f"invalid value for {param}: {error['msg']}", param=param) from None
