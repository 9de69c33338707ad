"""OpenAI-shaped calls to Ollama's native bodies, and Ollama's replies to neutral events."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from memory_router.backends.base import ChatCall, CompletionCall, Sampling
from memory_router.errors import BackendError, InvalidRequest, ModelNotFound, RateLimited
from memory_router.events import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from memory_router.translate.ollama import (
    ChatDecoder,
    chat_body,
    error_for_status,
    generate_body,
    new_call_id,
)
from memory_router.wire.openai import ChatMessage, Tool

CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")

READ_FILE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
}


def messages(*raw: dict[str, Any]) -> list[ChatMessage]:
    return [ChatMessage.model_validate(m) for m in raw]


def call_of(*raw: dict[str, Any], **kwargs: Any) -> ChatCall:
    return ChatCall(model="qwen3:30b-a3b", messages=messages(*raw), **kwargs)


def one_message(raw: dict[str, Any]) -> dict[str, Any]:
    body = chat_body(call_of(raw))
    out: dict[str, Any] = body["messages"][0]
    return out


# --- chat_body: the envelope ---------------------------------------------------------------


def test_minimal_chat_body_has_exactly_model_messages_stream() -> None:
    body = chat_body(call_of({"role": "user", "content": "hi"}))
    assert body == {
        "model": "qwen3:30b-a3b",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


def test_stream_false_is_sent_explicitly() -> None:
    body = chat_body(call_of({"role": "user", "content": "hi"}, stream=False))
    assert body["stream"] is False


# --- chat_body: messages -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("system", "system"),
        ("developer", "system"),
        ("user", "user"),
        ("assistant", "assistant"),
    ],
)
def test_roles_map_to_ollama_roles(role: str, expected: str) -> None:
    assert one_message({"role": role, "content": "x"}) == {"role": expected, "content": "x"}


def test_none_content_becomes_empty_string() -> None:
    assert one_message({"role": "assistant", "content": None}) == {
        "role": "assistant",
        "content": "",
    }


def test_text_parts_are_joined_with_newline() -> None:
    msg = one_message(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "first"},
                {"type": "text", "text": "second"},
                {"type": "text", "text": "third"},
            ],
        }
    )
    assert msg == {"role": "user", "content": "first\nsecond\nthird"}


def test_data_url_images_become_base64_list() -> None:
    msg = one_message(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
            ],
        }
    )
    assert msg == {
        "role": "user",
        "content": "what is this?",
        "images": ["iVBORw0KGgo=", "/9j/4AAQ"],
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cat.png",
        "data:image/png,rawbytes",  # a data URL, but not base64
        "",
    ],
)
def test_non_inline_image_is_invalid_request_naming_the_part(url: str) -> None:
    call = call_of(
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        },
    )
    with pytest.raises(InvalidRequest) as info:
        chat_body(call)
    assert info.value.param == "messages.1.content.1"
    assert info.value.status == 400
    assert "data: URL" in info.value.message


def test_unsupported_part_type_is_invalid_request_naming_the_part() -> None:
    call = call_of(
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}
    )
    with pytest.raises(InvalidRequest) as info:
        chat_body(call)
    assert info.value.param == "messages.0.content.0"
    assert "'input_audio' is not supported" in info.value.message


def test_assistant_tool_call_arguments_become_objects() -> None:
    msg = one_message(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "list_files", "arguments": ""},
                },
                {
                    "id": "call_3",
                    "type": "function",
                    "function": {"name": "noop", "arguments": "  \n "},
                },
            ],
        }
    )
    assert msg == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "read_file", "arguments": {"path": "a.py"}}},
            {"function": {"name": "list_files", "arguments": {}}},
            {"function": {"name": "noop", "arguments": {}}},
        ],
    }


def test_invalid_tool_call_arguments_are_invalid_request_naming_the_call() -> None:
    call = call_of(
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "function": {"name": "ok", "arguments": "{}"}},
                {"id": "b", "function": {"name": "bad", "arguments": '{"path": '}},
            ],
        },
    )
    with pytest.raises(InvalidRequest) as info:
        chat_body(call)
    assert info.value.param == "messages.1.tool_calls.1.function.arguments"
    assert info.value.message.startswith("tool call arguments are not valid JSON")


def test_tool_message_gets_call_id_and_name_of_the_earlier_call() -> None:
    body = chat_body(
        call_of(
            {"role": "user", "content": "read two files"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_a", "function": {"name": "read_file", "arguments": "{}"}},
                    {"id": "call_b", "function": {"name": "list_files", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_b", "content": "a.py"},
            {"role": "tool", "tool_call_id": "call_a", "content": "print(1)"},
        )
    )
    assert body["messages"][2] == {
        "role": "tool",
        "content": "a.py",
        "tool_call_id": "call_b",
        "tool_name": "list_files",
    }
    assert body["messages"][3] == {
        "role": "tool",
        "content": "print(1)",
        "tool_call_id": "call_a",
        "tool_name": "read_file",
    }


def test_tool_message_with_unknown_call_id_has_no_tool_name() -> None:
    msg = one_message({"role": "tool", "tool_call_id": "call_zzz", "content": "r"})
    assert msg == {"role": "tool", "content": "r", "tool_call_id": "call_zzz"}


def test_tool_message_explicit_name_wins_over_lookup() -> None:
    body = chat_body(
        call_of(
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "function": {"name": "read_file", "arguments": ""}}],
            },
            {"role": "tool", "tool_call_id": "c1", "name": "renamed", "content": "r"},
        )
    )
    assert body["messages"][1]["tool_name"] == "renamed"


def test_legacy_function_role_becomes_tool_with_its_name() -> None:
    msg = one_message({"role": "function", "name": "get_time", "content": "12:00"})
    assert msg == {"role": "tool", "content": "12:00", "tool_name": "get_time"}


def test_reasoning_content_becomes_thinking() -> None:
    msg = one_message({"role": "assistant", "content": "4", "reasoning_content": "2+2 is 4"})
    assert msg == {"role": "assistant", "content": "4", "thinking": "2+2 is 4"}


# --- chat_body: tools, think, format --------------------------------------------------------


@pytest.mark.parametrize("tool_choice", [None, "auto", "required"])
def test_tools_pass_through(tool_choice: str | None) -> None:
    tools = [Tool.model_validate(READ_FILE_TOOL)]
    body = chat_body(
        call_of({"role": "user", "content": "hi"}, tools=tools, tool_choice=tool_choice)
    )
    assert body["tools"] == [READ_FILE_TOOL]


def test_tool_choice_none_drops_tools() -> None:
    tools = [Tool.model_validate(READ_FILE_TOOL)]
    body = chat_body(call_of({"role": "user", "content": "hi"}, tools=tools, tool_choice="none"))
    assert "tools" not in body


@pytest.mark.parametrize("think", [True, False, "high"])
def test_think_is_passed_through(think: bool | str) -> None:
    body = chat_body(call_of({"role": "user", "content": "hi"}, think=think))
    assert body["think"] == think


def test_think_absent_when_unset() -> None:
    assert "think" not in chat_body(call_of({"role": "user", "content": "hi"}))


SCHEMA: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "integer"}}}


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "json_object"}, "json"),
        ({"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}, SCHEMA),
    ],
)
def test_response_format_becomes_format(response_format: dict[str, Any], expected: Any) -> None:
    body = chat_body(call_of({"role": "user", "content": "hi"}, response_format=response_format))
    assert body["format"] == expected


@pytest.mark.parametrize("response_format", [None, {}, {"type": "text"}])
def test_text_response_format_sends_no_format(response_format: dict[str, Any] | None) -> None:
    body = chat_body(call_of({"role": "user", "content": "hi"}, response_format=response_format))
    assert "format" not in body


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema"}, "response_format.json_schema.schema"),
        (
            {"type": "json_schema", "json_schema": {"name": "s"}},
            "response_format.json_schema.schema",
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": "not an object"}},
            "response_format.json_schema.schema",
        ),
        ({"type": "xml"}, "response_format"),
    ],
)
def test_bad_response_format_is_invalid_request(
    response_format: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        chat_body(call_of({"role": "user", "content": "hi"}, response_format=response_format))
    assert info.value.param == param


# --- chat_body: options and keep_alive -------------------------------------------------------


def test_all_sampling_options_map_to_ollama_options() -> None:
    sampling = Sampling(
        max_tokens=128,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n", "END"],
        seed=42,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
    )
    body = chat_body(call_of({"role": "user", "content": "hi"}, sampling=sampling, num_ctx=32768))
    assert body["options"] == {
        "num_ctx": 32768,
        "num_predict": 128,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 42,
        "stop": ["\n\n", "END"],
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
    }


def test_zero_valued_options_are_kept() -> None:
    sampling = Sampling(temperature=0.0, seed=0, top_p=0.0)
    body = chat_body(call_of({"role": "user", "content": "hi"}, sampling=sampling))
    assert body["options"] == {"temperature": 0.0, "seed": 0, "top_p": 0.0}


def test_only_num_ctx_gives_options_with_num_ctx() -> None:
    body = chat_body(call_of({"role": "user", "content": "hi"}, num_ctx=4096))
    assert body["options"] == {"num_ctx": 4096}


def test_options_omitted_when_empty() -> None:
    body = chat_body(call_of({"role": "user", "content": "hi"}, sampling=Sampling(stop=[])))
    assert "options" not in body


@pytest.mark.parametrize("keep_alive", ["30m", "24h", 300, 0, -1])
def test_keep_alive_is_passed_through_including_zero_and_negative(keep_alive: str | int) -> None:
    body = chat_body(call_of({"role": "user", "content": "hi"}, keep_alive=keep_alive))
    assert body["keep_alive"] == keep_alive


def test_keep_alive_absent_when_unset() -> None:
    assert "keep_alive" not in chat_body(call_of({"role": "user", "content": "hi"}))


# --- generate_body -------------------------------------------------------------------------


def test_generate_body_minimal() -> None:
    body = generate_body(CompletionCall(model="m", prompt="def f(", stream=False))
    assert body == {"model": "m", "prompt": "def f(", "raw": True, "stream": False}


def test_generate_body_with_options_and_keep_alive() -> None:
    call = CompletionCall(
        model="m",
        prompt="p",
        sampling=Sampling(max_tokens=16, temperature=0.1, stop=["\n"]),
        num_ctx=8192,
        keep_alive=0,
    )
    assert generate_body(call) == {
        "model": "m",
        "prompt": "p",
        "raw": True,
        "stream": True,
        "options": {"num_ctx": 8192, "num_predict": 16, "temperature": 0.1, "stop": ["\n"]},
        "keep_alive": 0,
    }


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
    assert type(error) is RateLimited
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
