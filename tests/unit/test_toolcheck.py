"""Tool calls checked against the request's schemas: repairs, counts, and the event order."""

from __future__ import annotations

import json
from typing import Any

from memory_router.events import Event, Finish, ReasoningDelta, TextDelta, ToolCallDelta
from memory_router.translate.toolcheck import ToolCheck
from memory_router.wire.openai import ChatCompletionRequest

READ_FILE = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Request to read the contents of a file at the specified path.",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "The path of the file to read"},
            },
            "required": ["path"],
            "additionalProperties": False,
        },
    },
}
EXECUTE_COMMAND = {
    "type": "function",
    "function": {
        "name": "execute_command",
        "description": "Request to execute a CLI command on the system.",
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string"},
                "requires_approval": {"type": "boolean"},
            },
            "required": ["command", "requires_approval"],
        },
    },
}
LIST_TASKS = {
    "type": "function",
    "function": {"name": "list_tasks", "parameters": {"type": "object", "properties": {}}},
}
TOOLS = [READ_FILE, EXECUTE_COMMAND, LIST_TASKS]
STOP = Finish("tool_calls")


def check(tools: list[Any] | None = None) -> ToolCheck:
    made = ToolCheck.for_request(TOOLS if tools is None else tools)
    assert made is not None
    return made


def run(checker: ToolCheck, events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        out.extend(checker.see(event))
    return out


def call(arguments: str, name: str = "read_file", index: int = 0) -> ToolCallDelta:
    return ToolCallDelta(index=index, id=f"call_{index}", name=name, arguments=arguments)


def one_call(arguments: str, name: str = "read_file", tools: list[Any] | None = None) -> Any:
    """The single call passed on for a whole call, and the report."""
    checker = check(tools)
    out = run(checker, [call(arguments, name), STOP])
    assert out[-1] is STOP
    assert len(out) == 2
    passed = out[0]
    assert isinstance(passed, ToolCallDelta)
    assert (passed.index, passed.id, passed.name) == (0, "call_0", name)
    return passed, checker.report()


def test_no_tools_means_no_check() -> None:
    assert ToolCheck.for_request(None) is None
    assert ToolCheck.for_request([]) is None
    assert ToolCheck.for_request(TOOLS) is not None


def test_a_valid_call_passes_as_it_came() -> None:
    arguments = '{"path": "src/main.py"}'
    passed, report = one_call(arguments)
    assert passed.arguments == arguments
    assert report == {"checked": 1, "repaired": {}, "invalid": 0, "unchecked": 0, "problems": []}


def test_the_request_models_tools_work_like_dicts() -> None:
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}
    )
    checker = ToolCheck.for_request(request.tools)
    assert checker is not None
    out = run(checker, [call('{"path": 3}'), STOP])
    assert out[0] == call('{"path": 3}')
    assert checker.report()["invalid"] == 1


def test_double_encoded_arguments_are_decoded() -> None:
    passed, report = one_call(json.dumps(json.dumps({"path": "a.txt"})))
    assert json.loads(passed.arguments) == {"path": "a.txt"}
    assert report["repaired"] == {"double_encoded": 1}
    assert report["invalid"] == 0


def test_a_trailing_comma_is_dropped_but_not_inside_strings() -> None:
    arguments = '{"command": "echo a, }", "requires_approval": false, }'
    passed, report = one_call(arguments, "execute_command")
    assert json.loads(passed.arguments) == {"command": "echo a, }", "requires_approval": False}
    assert report["repaired"] == {"trailing_comma": 1}


def test_a_trailing_comma_after_an_escaped_quote() -> None:
    arguments = '{"command": "echo \\"x,]\\"", "requires_approval": true,\n}'
    passed, report = one_call(arguments, "execute_command")
    assert json.loads(passed.arguments)["command"] == 'echo "x,]"'
    assert report["repaired"] == {"trailing_comma": 1}


def test_a_code_fence_is_removed() -> None:
    passed, report = one_call('```json\n{"path": "README.md"}\n```\n')
    assert json.loads(passed.arguments) == {"path": "README.md"}
    assert report["repaired"] == {"fenced": 1}


def test_text_around_the_json_is_not_repaired() -> None:
    arguments = 'Sure! {"path": "README.md"}'
    passed, report = one_call(arguments)
    assert passed.arguments == arguments
    assert report["invalid"] == 1
    assert report["problems"][0].startswith("read_file: arguments are not JSON")


def test_empty_arguments_become_an_empty_object_only_when_nothing_is_required() -> None:
    passed, report = one_call("", "list_tasks")
    assert passed.arguments == "{}"
    assert report["repaired"] == {"empty": 1}

    passed, report = one_call("", "read_file")
    assert passed.arguments == ""
    assert report["repaired"] == {}
    assert report["invalid"] == 1
    assert "'path' is a required property" in report["problems"][0]


def test_streamed_pieces_are_joined_repaired_and_kept_in_order() -> None:
    checker = check()
    encoded = json.dumps(json.dumps({"command": "npm test", "requires_approval": True}))
    pieces = [encoded[:12], encoded[12:30], encoded[30:]]
    events: list[Event] = [
        ReasoningDelta("run the tests"),
        TextDelta("Running the tests."),
        ToolCallDelta(index=0, id="call_0", name="execute_command", arguments=pieces[0]),
        *(ToolCallDelta(index=0, id=None, name=None, arguments=piece) for piece in pieces[1:]),
        TextDelta(" Done."),
        STOP,
    ]
    outputs = [checker.see(event) for event in events]
    assert outputs[:2] == [[events[0]], [events[1]]]  # text is never held back
    assert outputs[2:5] == [[], [], []]  # the pieces wait for the whole call
    whole = outputs[5][0]
    assert isinstance(whole, ToolCallDelta)
    assert outputs[5][1:] == [events[5]]
    assert (whole.index, whole.id, whole.name) == (0, "call_0", "execute_command")
    assert json.loads(whole.arguments) == {"command": "npm test", "requires_approval": True}
    assert outputs[6] == [STOP]
    assert checker.report()["repaired"] == {"double_encoded": 1}


def test_a_missing_required_property_passes_unchanged_and_is_counted() -> None:
    arguments = '{"command": "ls"}'
    passed, report = one_call(arguments, "execute_command")
    assert passed.arguments == arguments
    assert report["invalid"] == 1
    assert report["problems"] == ["execute_command: 'requires_approval' is a required property"]


def test_a_wrong_type_passes_unchanged_even_when_it_was_also_repairable() -> None:
    arguments = '{"command": "rm -rf build", "requires_approval": "yes",}'
    passed, report = one_call(arguments, "execute_command")
    assert passed.arguments == arguments
    assert report["repaired"] == {}
    assert report["invalid"] == 1
    assert report["problems"] == [
        "execute_command: $.requires_approval: 'yes' is not of type 'boolean'"
    ]


def test_an_unknown_tool_passes_and_is_counted() -> None:
    arguments = '{"path": "a"}'
    passed, report = one_call(arguments, "write_to_file")
    assert passed.arguments == arguments
    assert report["invalid"] == 1
    assert report["problems"] == ["unknown tool 'write_to_file'"]


def test_garbage_passes_unchanged_and_is_counted() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for arguments in ("<path>a.txt</path>", '{"path": "a.txt"', '["a.txt"]', '"a.txt"', deep):
        passed, report = one_call(arguments)
        assert passed.arguments == arguments
        assert report["invalid"] == 1, arguments
        assert report["repaired"] == {}


def test_arguments_must_be_an_object_even_when_the_schema_does_not_say_so() -> None:
    loose = {"type": "function", "function": {"name": "read_file", "parameters": {}}}
    passed, report = one_call('["a.txt"]', tools=[loose])
    assert passed.arguments == '["a.txt"]'
    assert report["problems"] == ["read_file: arguments are not a JSON object"]
    passed, report = one_call('{"anything": 1}', tools=[loose])
    assert report["invalid"] == 0


def test_an_unusable_schema_leaves_the_calls_unchecked() -> None:
    broken = {
        "type": "function",
        "function": {"name": "read_file", "parameters": {"type": "object", "required": "path"}},
    }
    passed, report = one_call("not json at all", tools=[broken])
    assert passed.arguments == "not json at all"
    assert report["unchecked"] == 1
    assert report["invalid"] == 0

    dangling = {
        "type": "function",
        "function": {"name": "read_file", "parameters": {"$ref": "#/x"}},
    }
    passed, report = one_call('{"path": "a"}', tools=[dangling])
    assert passed.arguments == '{"path": "a"}'
    assert report["unchecked"] == 1


def test_two_parallel_calls_interleaved() -> None:
    checker = check()
    events: list[Event] = [
        ToolCallDelta(index=0, id="call_a", name="read_file", arguments='{"path": '),
        ToolCallDelta(index=1, id="call_b", name="execute_command", arguments='{"command": "ls"'),
        ToolCallDelta(index=0, id=None, name=None, arguments='"a.txt",}'),
        ToolCallDelta(index=1, id=None, name=None, arguments=', "requires_approval": false}'),
        STOP,
    ]
    out = run(checker, events)
    assert out[-1] is STOP
    first, second = out[:-1]
    assert isinstance(first, ToolCallDelta)
    assert isinstance(second, ToolCallDelta)
    assert (first.index, first.id, first.name) == (0, "call_a", "read_file")
    assert json.loads(first.arguments) == {"path": "a.txt"}
    assert (second.index, second.id, second.name) == (1, "call_b", "execute_command")
    assert second.arguments == '{"command": "ls", "requires_approval": false}'
    assert checker.report()["checked"] == 2
    assert checker.report()["repaired"] == {"trailing_comma": 1}


def test_flush_ends_a_stream_without_finish() -> None:
    checker = check()
    assert checker.see(call('{"path": "a"}')) == []
    assert checker.flush() == [call('{"path": "a"}')]
    assert checker.flush() == []


def test_problems_are_few_and_short() -> None:
    checker = check()
    long = json.dumps({"command": "ls", "requires_approval": "y" * 1000})
    events: list[Event] = [call(long, "execute_command", index=i) for i in range(8)]
    out = run(checker, [*events, STOP])
    assert out == [*events, STOP]
    report = checker.report()
    assert report["invalid"] == 8
    assert len(report["problems"]) == 5
    assert all(len(problem) <= 160 for problem in report["problems"])
