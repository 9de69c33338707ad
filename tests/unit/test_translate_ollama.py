"""OpenAI-shaped calls to Ollama's native bodies (replies: test_translate_ollama_replies.py)."""

from __future__ import annotations

from typing import Any

import pytest

from memory_router.backends.base import ChatCall, CompletionCall, Sampling
from memory_router.errors import InvalidRequest
from memory_router.translate.ollama import (
    chat_body,
    generate_body,
)
from memory_router.wire.openai import ChatMessage, Tool

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


def test_a_named_tool_choice_offers_that_tool_alone() -> None:
    other = {**READ_FILE_TOOL, "function": {**READ_FILE_TOOL["function"], "name": "list_files"}}
    tools = [Tool.model_validate(other), Tool.model_validate(READ_FILE_TOOL)]
    choice = {"type": "function", "function": {"name": "read_file"}}
    body = chat_body(call_of({"role": "user", "content": "hi"}, tools=tools, tool_choice=choice))
    assert body["tools"] == [READ_FILE_TOOL]


@pytest.mark.parametrize(
    ("choice", "words"),
    [
        (
            {"type": "function", "function": {"name": "write_file"}},
            "not among the tools (read_file)",
        ),
        ({"type": "function"}, 'tool_choice must be "none"'),
        ({"type": "allowed_tools"}, 'tool_choice must be "none"'),
    ],
)
def test_a_bad_named_tool_choice_is_a_400(choice: dict[str, Any], words: str) -> None:
    tools = [Tool.model_validate(READ_FILE_TOOL)]
    with pytest.raises(InvalidRequest) as caught:
        chat_body(call_of({"role": "user", "content": "hi"}, tools=tools, tool_choice=choice))
    assert caught.value.param == "tool_choice" and words in caught.value.message


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


def test_a_suffix_is_filled_in_through_the_model_template() -> None:
    # Ollama writes the fill-in-the-middle prompt from the model's template, never when raw.
    call = CompletionCall(model="m", prompt="def add(a, b):\n    ", suffix="\n\nprint(add(1, 2))")
    body = generate_body(call)
    assert body["raw"] is False
    assert body["prompt"] == "def add(a, b):\n    "
    assert body["suffix"] == "\n\nprint(add(1, 2))"


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
