"""Whether an answer keeps an agent working or hands the turn back to its user.

An answer that calls a tool the client runs by itself (a read, an edit, a command) is followed
by the next request as soon as the tool is done: the session is still working. An answer with
no such call (a final text, a question to the user, a plan to approve) waits for a person.
Native calls are named in ``tool_calls``; XML-style ones are tags in the answer's text.
"""

from __future__ import annotations

import re

from ..events import Event, TextDelta, ToolCallDelta
from .bank_calls import XML_TOOLS

__all__ = ["HANDS_OVER", "ReplyWatch"]

HANDS_OVER = frozenset(
    {
        *("ask_question", "ask_followup_question", "attempt_completion", "submit_and_exit"),
        *("plan_mode_respond", "new_task", "switch_to_act_mode"),
    }
)
"""Tools whose call waits for the user: a question, the result, a plan, a new task."""
_XML_WORKING = re.compile(r"<(" + "|".join(sorted(XML_TOOLS - HANDS_OVER)) + r")>")


class ReplyWatch:
    """Watches one answer's events: a call that keeps the agent working, and what identifies
    the answer when the client sends it back (``engine.answer_print``)."""

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
        """The answer's print, as ``engine.answer_print`` reads it from a later request."""
        if self._call_id is not None:
            return self._call_id
        return f"text:{hash(''.join(self._texts).strip()) & 0xFFFFFFFFFFFF:012x}"
