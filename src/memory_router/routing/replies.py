"""Whether an answer keeps an agent working or hands the turn back to its user.

An answer that calls a tool the client runs by itself (a read, an edit, a command) is followed
by the next request as soon as the tool is done: the session is still working. An answer with
no such call (a final text, a question to the user, a plan to approve) waits for a person.
Native calls are named in ``tool_calls``; XML-style ones are tags in the answer's text.
"""

from __future__ import annotations

import re

from ..events import Event, TextDelta, ToolCallDelta
from ..wire.openai import ChatMessage
from .bank_calls import XML_TOOLS

__all__ = ["HANDS_OVER", "ReplyWatch", "answer_print"]

HANDS_OVER = frozenset(
    {
        *("ask_question", "ask_followup_question", "attempt_completion", "submit_and_exit"),
        *("plan_mode_respond", "new_task", "switch_to_act_mode"),
    }
)
"""Tools whose call waits for the user: a question, the result, a plan, a new task."""
_XML_WORKING = re.compile(r"<(" + "|".join(sorted(XML_TOOLS - HANDS_OVER)) + r")>")


def _text_print(text: str) -> str:
    return f"text:{hash(text.strip()) & 0xFFFFFFFFFFFF:012x}"


def answer_print(message: ChatMessage) -> str:
    """What identifies an assistant message across requests: its first tool call's id (the
    router or the backend made it), else its text (cline trims it)."""
    calls = message.tool_calls
    if calls and calls[0].id:
        return calls[0].id
    return _text_print(message.text())


class ReplyWatch:
    """Watches one answer's events: a call that keeps the agent working, and what identifies
    the answer when the client sends it back (``answer_print``)."""

    __slots__ = ("_call_id", "_texts", "_xml", "working")

    def __init__(self, xml: bool) -> None:
        self._xml = xml
        self._texts: list[str] = []
        self._call_id: str | None = None
        self.working = False
        """A native tool call the client runs by itself has been seen."""

    def see(self, event: Event) -> None:
        if type(event) is TextDelta:
            self._texts.append(event.text)
        elif type(event) is ToolCallDelta:
            if self._call_id is None and event.id:
                self._call_id = event.id
            if event.name is not None and event.name not in HANDS_OVER:
                self.working = True

    def keeps_working(self) -> bool:
        """Whether the client comes back without its user once this answer is done."""
        if self.working:
            return True
        return self._xml and bool(_XML_WORKING.search("".join(self._texts)))

    def answer_print(self) -> str:
        """The answer's print, as ``answer_print`` reads it from a later request."""
        return self._call_id if self._call_id is not None else _text_print("".join(self._texts))
