"""OpenAI-shaped calls to Ollama's native API, and Ollama's replies to neutral events.

Pure functions and one small decoder class: no I/O, so unit tests cover them line by line.
Facts relied on are in ``reference/ollama-api.md``: tool-call arguments are JSON *objects* in
Ollama and JSON *strings* in OpenAI; Ollama may omit the call id; a failure after the status
line arrives as ``{"error": ...}``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ..calls import ChatCall, CompletionCall, Sampling
from ..errors import (
    BackendBusy,
    BackendError,
    InvalidRequest,
    ModelNotPulled,
    RouterError,
)
from ..events import Event, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from ..wire.openai import ChatMessage, ContentPart

__all__ = [
    "ChatDecoder",
    "chat_body",
    "error_for_status",
    "generate_body",
    "new_call_id",
]

_FINISH = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}
_STATS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def new_call_id() -> str:
    """A tool-call id in OpenAI's style, for calls the backend sent without one."""
    return "call_" + secrets.token_hex(12)


def _options(sampling: Sampling, num_ctx: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if num_ctx is not None:
        options["num_ctx"] = num_ctx
    if sampling.max_tokens is not None:
        options["num_predict"] = sampling.max_tokens
    for key in ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty"):
        value = getattr(sampling, key)
        if value is not None:
            options[key] = value
    if sampling.stop:
        options["stop"] = sampling.stop
    return options


def _image(part: ContentPart, param: str) -> str:
    url = part.image_url.url if part.image_url else ""
    if not url.startswith("data:") or ";base64," not in url:
        raise InvalidRequest(
            "local models take images inline: send image_url as a data: URL with base64 data",
            param=param,
        )
    return url.split(";base64,", 1)[1]


def _arguments(raw: str, param: str) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"tool call arguments are not valid JSON: {exc}", param=param
        ) from None


def _message(msg: ChatMessage, index: int, tool_names: dict[str, str]) -> dict[str, Any]:
    role = {"developer": "system", "function": "tool"}.get(msg.role, msg.role)
    out: dict[str, Any] = {"role": role, "content": ""}
    if isinstance(msg.content, str):
        out["content"] = msg.content
    elif msg.content:
        texts: list[str] = []
        images: list[str] = []
        for j, part in enumerate(msg.content):
            param = f"messages.{index}.content.{j}"
            if part.type == "text":
                texts.append(part.text or "")
            elif part.type == "image_url":
                images.append(_image(part, param))
            else:
                raise InvalidRequest(
                    f"content part type {part.type!r} is not supported: use text or image_url",
                    param=param,
                )
        out["content"] = "\n".join(texts)
        if images:
            out["images"] = images
    if msg.reasoning_content:
        out["thinking"] = msg.reasoning_content
    if msg.tool_calls:
        calls = []
        for j, call in enumerate(msg.tool_calls):
            param = f"messages.{index}.tool_calls.{j}.function.arguments"
            calls.append(
                {
                    "function": {
                        "name": call.function.name,
                        "arguments": _arguments(call.function.arguments, param),
                    }
                }
            )
            if call.id:
                tool_names[call.id] = call.function.name
        out["tool_calls"] = calls
    if role == "tool":
        if msg.tool_call_id:
            out["tool_call_id"] = msg.tool_call_id
        name = msg.name or tool_names.get(msg.tool_call_id or "")
        if name:
            out["tool_name"] = name
    return out


def _offered(call: ChatCall) -> list[Any]:
    """The tools Ollama gets. It has no ``tool_choice``: "none" offers none, and a named
    function is offered alone, which is as close as Ollama comes to forcing it."""
    choice = call.tool_choice
    if not call.tools or choice == "none":
        return []
    if not isinstance(choice, dict):
        return list(call.tools)
    name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
    if not isinstance(name, str):
        raise InvalidRequest(
            'tool_choice must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}',
            param="tool_choice",
        )
    named = [tool for tool in call.tools if tool.function.name == name]
    if not named:
        offered = ", ".join(tool.function.name for tool in call.tools)
        raise InvalidRequest(
            f"tool_choice names the function {name!r}, which is not among the tools ({offered})",
            param="tool_choice",
        )
    return named


def chat_body(call: ChatCall) -> dict[str, Any]:
    """The ``/api/chat`` request body for a call."""
    tool_names: dict[str, str] = {}
    body: dict[str, Any] = {
        "model": call.model,
        "messages": [_message(m, i, tool_names) for i, m in enumerate(call.messages)],
        "stream": call.stream,
    }
    tools = _offered(call)
    if tools:
        body["tools"] = [tool.model_dump(exclude_none=True) for tool in tools]
    if call.think is not None:
        body["think"] = call.think
    fmt = _format(call.response_format)
    if fmt is not None:
        body["format"] = fmt
    options = _options(call.sampling, call.num_ctx)
    if call.num_gpu is not None:
        options["num_gpu"] = call.num_gpu
    if options:
        body["options"] = options
    if call.keep_alive is not None:
        body["keep_alive"] = call.keep_alive
    return body


def _format(response_format: dict[str, Any] | None) -> Any:
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format json_schema needs a 'schema' object",
                param="response_format.json_schema.schema",
            )
        return schema
    if kind in (None, "text"):
        return None
    raise InvalidRequest(f"response_format type {kind!r} is not supported", param="response_format")


def generate_body(call: CompletionCall) -> dict[str, Any]:
    """The ``/api/generate`` request body for a raw completion."""
    body: dict[str, Any] = {
        "model": call.model,
        "prompt": call.prompt,
        "raw": True,
        "stream": call.stream,
    }
    if call.suffix:
        # The model's template writes the fill-in-the-middle prompt: Ollama uses it only
        # when the request is not raw.
        body["raw"] = False
        body["suffix"] = call.suffix
    options = _options(call.sampling, call.num_ctx)
    if options:
        body["options"] = options
    if call.keep_alive is not None:
        body["keep_alive"] = call.keep_alive
    return body


class ChatDecoder:
    """Turns Ollama's chat (or generate) objects into events, one object at a time.

    Holds the little state a stream needs: the next tool-call index, and whether any tool
    call was seen (OpenAI then reports ``finish_reason: "tool_calls"``).
    """

    def __init__(self) -> None:
        self._tool_index = 0

    def feed(self, obj: dict[str, Any]) -> list[Event]:
        """Events for one decoded object; raises ``BackendError`` for an error line."""
        if "error" in obj:
            raise BackendError(f"the model server failed mid-answer: {obj['error']}")
        events: list[Event] = []
        message = obj.get("message") or {}
        thinking = message.get("thinking") or obj.get("thinking")
        if thinking:
            events.append(ReasoningDelta(thinking))
        content = message.get("content") or obj.get("response")
        if content:
            events.append(TextDelta(content))
        for tool_call in message.get("tool_calls") or ():
            function = tool_call.get("function") or {}
            arguments = function.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
            events.append(
                ToolCallDelta(
                    index=self._tool_index,
                    id=tool_call.get("id") or new_call_id(),
                    name=function.get("name", ""),
                    arguments=arguments,
                )
            )
            self._tool_index += 1
        if obj.get("done"):
            reason = _FINISH.get(obj.get("done_reason") or "stop", "stop")
            if self._tool_index and reason == "stop":
                reason = "tool_calls"
            usage = None
            if "prompt_eval_count" in obj or "eval_count" in obj:
                usage = Usage(int(obj.get("prompt_eval_count", 0)), int(obj.get("eval_count", 0)))
            stats = {key: obj[key] for key in _STATS if key in obj}
            events.append(Finish(reason=reason, usage=usage, stats=stats))
        return events


def error_for_status(status: int, message: str, model: str | None) -> RouterError:
    """Map an Ollama error reply to the router's error tree, with advice for the user."""
    if status == 404 and model and "not found" in message:
        return ModelNotPulled(
            f"model {model!r} is not pulled into Ollama: run `ollama pull {model}`",
            param="model",
        )
    if status == 400:
        return InvalidRequest(f"Ollama rejected the request: {message}")
    if status == 503:
        # Ollama's queue is full (OLLAMA_MAX_QUEUE). Cline retries only on 429.
        return BackendBusy(f"Ollama is busy: {message}", retry_after=2)
    if status == 499:
        return BackendError("Ollama reports the request was cancelled")
    if status >= 500:
        return BackendError(f"Ollama failed ({status}): {message}")
    return BackendError(f"Ollama answered {status}: {message}")
