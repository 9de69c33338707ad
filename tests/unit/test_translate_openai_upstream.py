"""Requests to an OpenAI-compatible upstream, and its chunks and errors back to events."""

from __future__ import annotations

from typing import Any

import pytest

from memory_router.backends.base import ChatCall, CompletionCall, Sampling
from memory_router.errors import (
    BackendError,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    RouterError,
)
from memory_router.events import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from memory_router.translate import openai_upstream as up
from memory_router.wire.openai import ChatMessage, Tool

# --- openai_upstream: request bodies -------------------------------------------------------

TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "read_file", "parameters": {"type": "object"}},
}


def chat_call(**kwargs: Any) -> ChatCall:
    return ChatCall(
        model="gemma3",
        messages=[ChatMessage.model_validate({"role": "user", "content": "hi"})],
        **kwargs,
    )


def test_upstream_chat_body_non_streaming_minimal() -> None:
    assert up.chat_body(chat_call(stream=False)) == {
        "model": "gemma3",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }


def test_upstream_chat_body_streaming_forces_include_usage() -> None:
    body = up.chat_body(chat_call(stream=True))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_upstream_chat_body_full() -> None:
    body = up.chat_body(
        chat_call(
            stream=False,
            sampling=Sampling(
                max_tokens=50,
                temperature=0.3,
                top_p=0.8,
                stop=["x"],
                seed=1,
                frequency_penalty=0.1,
                presence_penalty=0.2,
            ),
            tools=[Tool.model_validate(TOOL)],
            tool_choice="required",
            parallel_tool_calls=False,
            response_format={"type": "json_object"},
            num_ctx=4096,  # a residency knob for Ollama only: never sent upstream
            keep_alive="5m",
        )
    )
    assert body == {
        "model": "gemma3",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "max_tokens": 50,
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["x"],
        "seed": 1,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "tools": [TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
    }


def test_upstream_chat_body_drops_tool_choice_without_tools() -> None:
    body = up.chat_body(chat_call(stream=False, tool_choice="auto", parallel_tool_calls=True))
    assert "tool_choice" not in body
    assert "parallel_tool_calls" not in body


def test_upstream_chat_body_keeps_message_fields_and_drops_nones() -> None:
    message = ChatMessage.model_validate(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}],
        }
    )
    body = up.chat_body(ChatCall(model="m", messages=[message], stream=False))
    assert body["messages"] == [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
            ],
        }
    ]


@pytest.mark.parametrize("stream", [True, False])
def test_upstream_completion_body(stream: bool) -> None:
    call = CompletionCall(model="m", prompt="p", stream=stream, sampling=Sampling(max_tokens=3))
    expected: dict[str, Any] = {"model": "m", "prompt": "p", "stream": stream, "max_tokens": 3}
    if stream:
        expected["stream_options"] = {"include_usage": True}
    assert up.completion_body(call) == expected


def test_upstream_completion_body_keeps_the_suffix() -> None:
    call = CompletionCall(model="m", prompt="p", stream=False, suffix="s")
    assert up.completion_body(call)["suffix"] == "s"


# --- openai_upstream: ChunkDecoder ---------------------------------------------------------


def delta_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def test_chunk_decoder_content() -> None:
    decoder = up.ChunkDecoder()
    assert decoder.feed(delta_chunk({"role": "assistant", "content": ""})) == []
    assert decoder.feed(delta_chunk({"content": "Hi"})) == [TextDelta("Hi")]


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_chunk_decoder_reasoning_fields(key: str) -> None:
    decoder = up.ChunkDecoder()
    assert decoder.feed(delta_chunk({key: "hmm", "content": "ok"})) == [
        ReasoningDelta("hmm"),
        TextDelta("ok"),
    ]


def test_chunk_decoder_tool_call_pieces() -> None:
    decoder = up.ChunkDecoder()
    first = decoder.feed(
        delta_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": ""},
                    }
                ]
            }
        )
    )
    second = decoder.feed(
        delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"p":1}'}}]})
    )
    assert first == [ToolCallDelta(index=0, id="call_1", name="read_file", arguments="")]
    assert second == [ToolCallDelta(index=0, id=None, name=None, arguments='{"p":1}')]


def test_chunk_decoder_tool_call_without_index_uses_position() -> None:
    events = up.ChunkDecoder().feed(
        delta_chunk(
            {
                "tool_calls": [
                    {"id": "a", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "b", "function": {"name": "g", "arguments": None}},
                ]
            }
        )
    )
    assert events == [
        ToolCallDelta(index=0, id="a", name="f", arguments="{}"),
        ToolCallDelta(index=1, id="b", name="g", arguments=""),
    ]


def test_chunk_decoder_holds_finish_until_finish_and_collects_late_usage() -> None:
    decoder = up.ChunkDecoder()
    assert decoder.feed(delta_chunk({"content": "a"}, finish_reason="length")) == [TextDelta("a")]
    usage_chunk = {
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    assert decoder.feed(usage_chunk) == []
    assert decoder.finish() == Finish(reason="length", usage=Usage(12, 3))


def test_chunk_decoder_finish_defaults_to_stop_without_usage() -> None:
    assert up.ChunkDecoder().finish() == Finish(reason="stop", usage=None)


def test_chunk_decoder_reports_tool_calls_when_upstream_says_stop() -> None:
    decoder = up.ChunkDecoder()
    decoder.feed(delta_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}))
    decoder.feed(delta_chunk({}, finish_reason="stop"))
    assert decoder.finish().reason == "tool_calls"


def test_chunk_decoder_keeps_length_after_tool_call() -> None:
    decoder = up.ChunkDecoder()
    decoder.feed(delta_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}))
    decoder.feed(delta_chunk({}, finish_reason="length"))
    assert decoder.finish().reason == "length"


def test_chunk_decoder_whole_chat_completion_message() -> None:
    decoder = up.ChunkDecoder()
    events = decoder.feed(
        {
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "whole", "reasoning": "r"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    )
    assert events == [ReasoningDelta("r"), TextDelta("whole")]
    assert decoder.finish() == Finish(reason="stop", usage=Usage(1, 1))


def test_chunk_decoder_text_completion_text() -> None:
    decoder = up.ChunkDecoder()
    events = decoder.feed(
        {
            "object": "text_completion",
            "choices": [{"index": 0, "text": "def f():", "finish_reason": None}],
        }
    )
    assert events == [TextDelta("def f():")]
    assert decoder.feed({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}) == []
    assert decoder.finish() == Finish(reason="stop")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ({"message": "out of memory", "type": "server_error"}, "out of memory"),
        ("plain text failure", "plain text failure"),
    ],
)
def test_chunk_decoder_error_object_raises(error: Any, message: str) -> None:
    with pytest.raises(BackendError) as info:
        up.ChunkDecoder().feed({"error": error})
    assert info.value.message == f"the model server failed mid-answer: {message}"


# --- openai_upstream: error_for_status -----------------------------------------------------


def envelope(message: str, code: Any = None, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "model", "cls", "http_status"),
    [
        (404, envelope("model 'x' not found", "model_not_found"), "x", ModelNotFound, 404),
        (404, "Not Found", None, BackendError, 502),
        (
            400,
            envelope("This model's maximum context length is 8192", "context_length_exceeded"),
            "m",
            ContextLengthExceeded,
            400,
        ),
        (
            400,
            envelope("the request exceeds the available context size", 400, "exceed_context"),
            "m",
            ContextLengthExceeded,
            400,
        ),
        (400, envelope("temperature must be <= 2"), "m", InvalidRequest, 400),
        (422, {"detail": "bad"}, "m", InvalidRequest, 400),
        (429, envelope("slow down", kind="rate_limit_error"), "m", RateLimited, 429),
        (500, "Internal Server Error", "m", BackendError, 502),
        (503, envelope("loading model", kind="unavailable_error"), "m", BackendError, 502),
    ],
)
def test_upstream_error_for_status(
    status: int, body: Any, model: str | None, cls: type[RouterError], http_status: int
) -> None:
    error = up.error_for_status(status, body, model)
    assert type(error) is cls
    assert error.status == http_status


def test_upstream_context_error_code_and_message() -> None:
    error = up.error_for_status(400, envelope("too long", "context_length_exceeded"), "m")
    assert error.code == "context_length_exceeded"
    assert error.message == "the upstream rejected the prompt: too long"


def test_upstream_429_carries_retry_after() -> None:
    error = up.error_for_status(429, envelope("slow down"), "m")
    assert error.retry_after == 2
    assert error.headers() == {"Retry-After": "2"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (envelope("boom"), "boom"),
        ({"message": "flat boom"}, "flat boom"),
        ({"error": "string boom"}, "string boom"),
        ("text boom", "text boom"),
    ],
)
def test_upstream_error_message_extraction(body: Any, message: str) -> None:
    assert up.error_for_status(500, body, "m").message == f"the upstream failed (500): {message}"
