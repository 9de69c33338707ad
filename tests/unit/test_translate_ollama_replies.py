"""Ollama's replies (streamed lines and error statuses) to neutral events and errors."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from memory_router.errors import (
    BackendBusy,
    BackendError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
)
from memory_router.events import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from memory_router.translate.ollama import (
    ChatDecoder,
    error_for_status,
    new_call_id,
)

CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")

# --- ChatDecoder ---------------------------------------------------------------------------


def chunk(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "model": "qwen3:30b-a3b",
        "created_at": "2026-11-21T10:00:00.1Z",
        "message": {"role": "assistant", **message},
        "done": False,
        **extra,
    }


def test_new_call_id_shape_and_uniqueness() -> None:
    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(CALL_ID.match(i) for i in ids)


def test_content_and_thinking_deltas() -> None:
    decoder = ChatDecoder()
    assert decoder.feed(chunk({"content": "", "thinking": "hmm"})) == [ReasoningDelta("hmm")]
    assert decoder.feed(chunk({"content": "Hel"})) == [TextDelta("Hel")]
    assert decoder.feed(chunk({"content": "lo", "thinking": "ok"})) == [
        ReasoningDelta("ok"),
        TextDelta("lo"),
    ]
    assert decoder.feed(chunk({"content": ""})) == []


def test_generate_response_field_and_top_level_thinking() -> None:
    decoder = ChatDecoder()
    events = decoder.feed({"model": "m", "response": "abc", "thinking": "t", "done": False})
    assert events == [ReasoningDelta("t"), TextDelta("abc")]


def test_whole_tool_call_with_object_arguments_becomes_json_string() -> None:
    decoder = ChatDecoder()
    events = decoder.feed(
        chunk(
            {
                "content": "",
                "tool_calls": [
                    {"function": {"name": "read_file", "arguments": {"path": "é.py", "n": 1}}}
                ],
            }
        )
    )
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ToolCallDelta)
    assert event.index == 0
    assert event.name == "read_file"
    assert event.arguments == '{"path":"é.py","n":1}'
    assert json.loads(event.arguments) == {"path": "é.py", "n": 1}
    assert event.id is not None
    assert CALL_ID.match(event.id) is not None


def test_tool_call_id_is_kept_when_present_and_string_arguments_untouched() -> None:
    decoder = ChatDecoder()
    events = decoder.feed(
        chunk(
            {
                "tool_calls": [
                    {
                        "id": "call_from_ollama",
                        "function": {"index": 0, "name": "f", "arguments": '{"a": 1}'},
                    }
                ]
            }
        )
    )
    assert events == [ToolCallDelta(index=0, id="call_from_ollama", name="f", arguments='{"a": 1}')]


def test_tool_call_without_arguments_gets_empty_object() -> None:
    events = ChatDecoder().feed(chunk({"tool_calls": [{"id": "x", "function": {"name": "f"}}]}))
    assert events == [ToolCallDelta(index=0, id="x", name="f", arguments="{}")]


def test_tool_call_index_increments_across_chunks() -> None:
    decoder = ChatDecoder()
    first = decoder.feed(
        chunk(
            {
                "tool_calls": [
                    {"id": "a", "function": {"name": "f", "arguments": {}}},
                    {"id": "b", "function": {"name": "g", "arguments": {}}},
                ]
            }
        )
    )
    second = decoder.feed(chunk({"tool_calls": [{"function": {"name": "h", "arguments": {}}}]}))
    indexes = [e.index for e in [*first, *second] if isinstance(e, ToolCallDelta)]
    names = [e.name for e in [*first, *second] if isinstance(e, ToolCallDelta)]
    assert indexes == [0, 1, 2]
    assert names == ["f", "g", "h"]


def test_distinct_generated_ids_for_calls_without_id() -> None:
    decoder = ChatDecoder()
    events = decoder.feed(
        chunk(
            {
                "tool_calls": [
                    {"function": {"name": "f", "arguments": {}}},
                    {"function": {"name": "f", "arguments": {}}},
                ]
            }
        )
    )
    ids = [e.id for e in events if isinstance(e, ToolCallDelta)]
    assert len(set(ids)) == 2


FINAL: dict[str, Any] = {
    "model": "qwen3:30b-a3b",
    "created_at": "2026-11-21T10:00:01Z",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "total_duration": 4883583458,
    "load_duration": 1334875,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 342546000,
    "eval_count": 282,
    "eval_duration": 4535599000,
}


def test_done_gives_finish_with_usage_and_stats() -> None:
    assert ChatDecoder().feed(FINAL) == [
        Finish(
            reason="stop",
            usage=Usage(prompt_tokens=26, completion_tokens=282),
            stats={
                "total_duration": 4883583458,
                "load_duration": 1334875,
                "prompt_eval_duration": 342546000,
                "eval_duration": 4535599000,
            },
        )
    ]


def test_final_chunk_content_comes_before_finish() -> None:
    events = ChatDecoder().feed({**FINAL, "message": {"role": "assistant", "content": "!"}})
    assert [type(e) for e in events] == [TextDelta, Finish]


@pytest.mark.parametrize(
    ("done_reason", "expected"),
    [("stop", "stop"), ("length", "length"), ("load", "stop"), ("unload", "stop"), (None, "stop")],
)
def test_done_reason_maps_to_finish_reason(done_reason: str | None, expected: str) -> None:
    obj = {"model": "m", "message": {"content": ""}, "done": True, "done_reason": done_reason}
    assert ChatDecoder().feed(obj) == [Finish(reason=expected)]


def test_finish_without_counts_has_no_usage_and_no_stats() -> None:
    assert ChatDecoder().feed({"done": True}) == [Finish(reason="stop", usage=None, stats={})]


def test_finish_with_only_eval_count_defaults_prompt_tokens_to_zero() -> None:
    [finish] = ChatDecoder().feed({"done": True, "eval_count": 5})
    assert finish == Finish(reason="stop", usage=Usage(0, 5))


def test_finish_reason_is_tool_calls_after_any_tool_call() -> None:
    decoder = ChatDecoder()
    decoder.feed(chunk({"tool_calls": [{"function": {"name": "f", "arguments": {}}}]}))
    decoder.feed(chunk({"content": "done"}))
    [finish] = decoder.feed({**FINAL, "done_reason": "stop"})
    assert isinstance(finish, Finish)
    assert finish.reason == "tool_calls"


def test_tool_call_and_done_in_one_object() -> None:
    events = ChatDecoder().feed(
        {
            **FINAL,
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}],
            },
        }
    )
    assert events[0] == ToolCallDelta(index=0, id="c", name="f", arguments='{"a":1}')
    assert isinstance(events[1], Finish)
    assert events[1].reason == "tool_calls"


def test_length_stays_length_even_after_tool_call() -> None:
    decoder = ChatDecoder()
    decoder.feed(chunk({"tool_calls": [{"function": {"name": "f", "arguments": {}}}]}))
    [finish] = decoder.feed({"done": True, "done_reason": "length"})
    assert isinstance(finish, Finish)
    assert finish.reason == "length"


def test_error_line_raises_backend_error() -> None:
    decoder = ChatDecoder()
    decoder.feed(chunk({"content": "partial"}))
    with pytest.raises(BackendError) as info:
        decoder.feed({"error": "llama runner process has terminated"})
    assert info.value.status == 502
    assert info.value.message == (
        "the model server failed mid-answer: llama runner process has terminated"
    )


# --- error_for_status ----------------------------------------------------------------------


def test_404_not_found_is_model_not_found_with_pull_advice() -> None:
    error = error_for_status(404, 'model "qwen9:1b" not found, try pulling it first', "qwen9:1b")
    assert isinstance(error, ModelNotFound)
    assert error.status == 404
    assert error.param == "model"
    assert "ollama pull qwen9:1b" in error.message


def test_404_without_model_is_backend_error() -> None:
    error = error_for_status(404, "404 page not found", None)
    assert type(error) is BackendError
    assert error.status == 502
    assert error.message == "Ollama answered 404: 404 page not found"


def test_400_is_invalid_request_with_ollama_message() -> None:
    error = error_for_status(400, '"gemma3:1b" does not support tools', "gemma3:1b")
    assert type(error) is InvalidRequest
    assert error.status == 400
    assert error.message == 'Ollama rejected the request: "gemma3:1b" does not support tools'


def test_503_is_rate_limited_with_retry_after() -> None:
    error = error_for_status(
        503, "server busy, please try again.  maximum pending requests exceeded", "m"
    )
    assert type(error) is BackendBusy  # a RateLimited the router may retry on another host
    assert isinstance(error, RateLimited)
    assert error.status == 429
    assert error.retry_after == 2
    assert error.headers() == {"Retry-After": "2"}


@pytest.mark.parametrize(("status", "text"), [(500, "boom"), (502, "bad gateway"), (499, "")])
def test_other_failures_are_backend_error_502(status: int, text: str) -> None:
    error = error_for_status(status, text, "m")
    assert type(error) is BackendError
    assert error.status == 502
    assert error.type == "upstream_error"


def test_500_message_carries_status_and_text() -> None:
    assert error_for_status(500, "boom", "m").message == "Ollama failed (500): boom"
