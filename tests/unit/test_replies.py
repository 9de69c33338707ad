"""Whether an answer keeps its session working: tool calls in both styles."""

from __future__ import annotations

from memory_router.events import Finish, TextDelta, ToolCallDelta
from memory_router.routing.replies import ReplyWatch


def watched(*events: object, xml: bool = False) -> bool:
    watch = ReplyWatch(xml)
    for event in events:
        watch.see(event)  # type: ignore[arg-type]
    return watch.keeps_working()


def call(name: str | None, arguments: str = "{}") -> ToolCallDelta:
    return ToolCallDelta(index=0, id="call_1" if name else None, name=name, arguments=arguments)


def test_a_native_call_the_client_runs_keeps_the_session_working() -> None:
    assert watched(TextDelta("Let me run the tests."), call("run_commands"), call(None, '{"a"'))
    assert watched(call("ask_question"), call("editor"))  # any working call among them
    assert watched(call("mcp__github__create_issue"))  # a tool it does not know: runs


def test_an_answer_without_such_a_call_waits_for_the_user() -> None:
    assert not watched(TextDelta("Done: the tests pass."), Finish("stop"))
    assert not watched(call("ask_question"), call(None, '{"question": "Which DB?"}'))
    assert not watched(call("attempt_completion"), call("plan_mode_respond"))
    assert not watched()


def test_xml_tool_tags_count_only_for_an_xml_style_request() -> None:
    text = ["I'll read it.\n<read_", "file>\n<path>src/app.py</path>\n</read_file>"]
    assert watched(*map(TextDelta, text), xml=True)
    assert not watched(*map(TextDelta, text), xml=False)  # native: text is only text
    result = "<attempt_completion>\n<result>Done.</result>\n</attempt_completion>"
    assert not watched(TextDelta(result), xml=True)
    question = "<ask_followup_question><question>Which DB?</question></ask_followup_question>"
    assert not watched(TextDelta(question), xml=True)
    assert watched(TextDelta("<execute_command><command>pytest</command>"), xml=True)


def test_an_answers_print_is_what_a_later_request_shows_of_it() -> None:
    from memory_router.routing.replies import answer_print
    from memory_router.wire.openai import ChatMessage

    def sent_back(**message: object) -> str:
        return answer_print(ChatMessage.model_validate({"role": "assistant", **message}))

    text = ReplyWatch(xml=False)
    for part in ("Done: ", "the tests pass.\n"):
        text.see(TextDelta(part))
    assert text.answer_print() == sent_back(content="Done: the tests pass.")  # cline trims it
    assert text.answer_print() != sent_back(content="Done.")
    called = ReplyWatch(xml=False)
    called.see(TextDelta("Editing."))
    called.see(call("editor"))
    function = {"name": "editor", "arguments": "{}"}
    assert called.answer_print() == sent_back(
        content="Editing.", tool_calls=[{"id": "call_1", "type": "function", "function": function}]
    )
