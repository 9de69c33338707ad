"""Neutral events to OpenAI chunks and responses (``translate/openai_out``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from memory_router.errors import (
    BackendError,
)
from memory_router.events import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from memory_router.translate.openai_out import (
    ChatCollector,
    ChatStreamEncoder,
    CompletionCollector,
    CompletionStreamEncoder,
)

DONE = b"data: [DONE]\n\n"


def decode(event: bytes) -> dict[str, Any]:
    """The JSON of one ``data: ...\\n\\n`` event."""
    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    body = event[len(b"data: ") : -2]
    assert b"\n" not in body
    data: dict[str, Any] = json.loads(body)
    return data


def chat_encoder(include_usage: bool = False) -> ChatStreamEncoder:
    return ChatStreamEncoder("chatcmpl-1", "qwen3:30b-a3b", include_usage)


def only_delta(encoded: list[bytes]) -> dict[str, Any]:
    assert len(encoded) == 1
    chunk = decode(encoded[0])
    assert chunk["object"] == "chat.completion.chunk"
    [choice] = chunk["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] is None
    delta: dict[str, Any] = choice["delta"]
    return delta


# --- ChatStreamEncoder ---------------------------------------------------------------------


def test_first_chunk_carries_role_and_envelope() -> None:
    encoder = chat_encoder()
    chunk = decode(encoder.start())
    assert chunk == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": encoder.created,
        "model": "qwen3:30b-a3b",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
    }
    assert isinstance(chunk["created"], int)


def test_text_delta_chunk() -> None:
    assert only_delta(chat_encoder().encode(TextDelta("Hé 🙂"))) == {"content": "Hé 🙂"}


def test_reasoning_delta_chunk() -> None:
    assert only_delta(chat_encoder().encode(ReasoningDelta("think"))) == {
        "reasoning_content": "think"
    }


def test_tool_call_first_piece_has_id_type_and_name() -> None:
    delta = only_delta(
        chat_encoder().encode(ToolCallDelta(index=1, id="call_x", name="read_file", arguments=""))
    )
    assert delta == {
        "tool_calls": [
            {
                "index": 1,
                "id": "call_x",
                "type": "function",
                "function": {"arguments": "", "name": "read_file"},
            }
        ]
    }


def test_tool_call_later_piece_has_only_index_and_arguments() -> None:
    delta = only_delta(
        chat_encoder().encode(ToolCallDelta(index=1, id=None, name=None, arguments='{"pa'))
    )
    assert delta == {"tool_calls": [{"index": 1, "function": {"arguments": '{"pa'}}]}


def test_finish_without_include_usage_is_finish_chunk_then_done() -> None:
    out = chat_encoder().encode(Finish("stop", usage=Usage(3, 4)))
    assert len(out) == 2
    chunk = decode(out[0])
    assert chunk["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert "usage" not in chunk
    assert out[1] == DONE


def test_finish_with_include_usage_adds_usage_chunk_with_empty_choices() -> None:
    encoder = chat_encoder(include_usage=True)
    out = encoder.encode(Finish("tool_calls", usage=Usage(10, 5)))
    assert len(out) == 3
    assert decode(out[0])["choices"] == [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]
    assert decode(out[1]) == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": encoder.created,
        "model": "qwen3:30b-a3b",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    assert out[2] == DONE


def test_usage_chunk_has_zeros_when_backend_reported_none() -> None:
    out = chat_encoder(include_usage=True).encode(Finish("length"))
    assert decode(out[1])["usage"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
    }


def test_error_is_envelope_event_then_done() -> None:
    error = BackendError("the model server failed mid-answer: oom")
    out = chat_encoder().error(error)
    assert len(out) == 2
    assert decode(out[0]) == {
        "error": {
            "message": "the model server failed mid-answer: oom",
            "type": "upstream_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    assert out[1] == DONE


def test_every_chunk_shares_id_created_and_model() -> None:
    encoder = chat_encoder(include_usage=True)
    raw = [
        encoder.start(),
        *encoder.encode(TextDelta("a")),
        *encoder.encode(Finish("stop", Usage(1, 1))),
    ]
    chunks = [decode(r) for r in raw[:-1]]
    assert {(c["id"], c["created"], c["model"]) for c in chunks} == {
        ("chatcmpl-1", encoder.created, "qwen3:30b-a3b")
    }
    assert raw[-1] == DONE


# --- CompletionStreamEncoder ---------------------------------------------------------------


def test_completion_stream_has_no_start_chunk() -> None:
    assert CompletionStreamEncoder("cmpl-1", "m", False).start() is None


def test_completion_stream_text_and_finish() -> None:
    encoder = CompletionStreamEncoder("cmpl-1", "m", True)
    [text] = encoder.encode(TextDelta("def"))
    assert decode(text) == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": encoder.created,
        "model": "m",
        "choices": [{"index": 0, "text": "def", "finish_reason": None}],
    }
    finish, usage, done = encoder.encode(Finish("length", Usage(2, 8)))
    assert decode(finish)["choices"] == [{"index": 0, "text": "", "finish_reason": "length"}]
    assert decode(usage)["choices"] == []
    assert decode(usage)["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 8,
        "total_tokens": 10,
    }
    assert done == DONE


@pytest.mark.parametrize(
    "event",
    [ReasoningDelta("r"), ToolCallDelta(index=0, id="c", name="f", arguments="{}")],
)
def test_completion_stream_drops_non_text_events(
    event: ReasoningDelta | ToolCallDelta,
) -> None:
    assert CompletionStreamEncoder("cmpl-1", "m", False).encode(event) == []


# --- ChatCollector -------------------------------------------------------------------------


def test_collector_text_reasoning_and_usage() -> None:
    collector = ChatCollector()
    for event in [
        ReasoningDelta("let me "),
        ReasoningDelta("think"),
        TextDelta("Hel"),
        TextDelta("lo"),
        Finish("stop", Usage(7, 2)),
    ]:
        collector.add(event)
    response = collector.response("chatcmpl-9", "m")
    assert isinstance(response["created"], int)
    del response["created"]
    assert response == {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "reasoning_content": "let me think",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }


def test_collector_merges_tool_call_pieces_by_index() -> None:
    collector = ChatCollector()
    for event in [
        ToolCallDelta(index=1, id="call_b", name="list_files", arguments='{"dir"'),
        ToolCallDelta(index=0, id="call_a", name="read_file", arguments=""),
        ToolCallDelta(index=0, id=None, name=None, arguments='{"path":'),
        ToolCallDelta(index=1, id=None, name=None, arguments=': "."}'),
        ToolCallDelta(index=0, id=None, name=None, arguments=' "a.py"}'),
        Finish("tool_calls"),
    ]:
        collector.add(event)
    [choice] = collector.response("r", "m")["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "list_files", "arguments": '{"dir": "."}'},
            },
        ],
    }


def test_collector_keeps_text_next_to_tool_calls() -> None:
    collector = ChatCollector()
    collector.add(TextDelta("I will read it."))
    collector.add(ToolCallDelta(index=0, id="c", name="f", arguments="{}"))
    message = collector.response("r", "m")["choices"][0]["message"]
    assert message["content"] == "I will read it."
    assert [c["id"] for c in message["tool_calls"]] == ["c"]


def test_collector_empty_answer_has_empty_string_content_and_defaults() -> None:
    response = ChatCollector().response("r", "m")
    assert response["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}
    ]
    assert response["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


# --- CompletionCollector -------------------------------------------------------------------


def test_completion_collector() -> None:
    collector = CompletionCollector()
    for event in [TextDelta("a"), ReasoningDelta("ignored"), TextDelta("b"), Finish("length")]:
        collector.add(event)
    response = collector.response("cmpl-2", "m")
    del response["created"]
    assert response == {
        "id": "cmpl-2",
        "object": "text_completion",
        "model": "m",
        "choices": [{"index": 0, "text": "ab", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def test_completion_collector_defaults_to_stop() -> None:
    response = CompletionCollector().response("c", "m")
    assert response["choices"] == [{"index": 0, "text": "", "finish_reason": "stop"}]
