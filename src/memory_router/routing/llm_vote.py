"""What the optional LLM classifier is asked, and how its answer is read. Pure.

The model sees the user's latest words only (never the system prompt or the conversation),
with one line per task class, and answers with a class name. Its answer is kept per distinct
text (``vote_key``): an agent's tool loop resends the same latest words every turn, so the
model is asked once per thing the user says.
"""

from __future__ import annotations

import re

from ..domain import TaskClass

__all__ = ["VOTE_CHARS", "parse_vote", "vote_key", "vote_messages"]

VOTE_CHARS = 1500
"""The user's words the model reads (a pasted log beyond this adds nothing to the class)."""

SYSTEM = """\
You sort a developer's message to a coding agent into exactly one class:
memory: read, initialize or update the project's memory bank (its notes about the project).
implement: write, change, fix, refactor or test code, or run the commands that do.
analyze: explain, review, investigate, diagnose or plan, without changing code.
chat: small talk, or a short general question that is not about this project's code.
meta: housekeeping about the conversation itself: a title, a summary, follow-up suggestions.
Answer with the class name only.

Message: Add a --dry-run flag to the sync command
Class: implement

Message: How does the retry logic decide when to give up?
Class: analyze

Message: update memory bank
Class: memory

Message: Generate a short title for this conversation
Class: meta

Message: thanks, that's all for today
Class: chat"""

_CLASS = re.compile(r"[\s*_`'\"]*(?:class\s*:)?[\s*_`'\"]*(memory|implement|analy[sz]|chat|meta)")
_THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
_WORD: dict[str, TaskClass] = {
    "memory": "memory",
    "implement": "implement",
    "analys": "analyze",
    "analyz": "analyze",
    "chat": "chat",
    "meta": "meta",
}


def vote_key(text: str) -> str:
    """The part of the user's words a vote is asked and kept for."""
    return text.strip()[:VOTE_CHARS].rstrip()


def vote_messages(text: str) -> list[dict[str, str]]:
    """The conversation sent to the classifier model."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Message:\n{vote_key(text)}\n\nClass:"},
    ]


def parse_vote(answer: str) -> TaskClass | None:
    """The class the answer starts with (after any thinking), or None.

    An answer that starts otherwise is no vote, even if a class name appears later: a model
    that echoes the instructions names every class."""
    found = _CLASS.match(_THINKING.sub(" ", answer).lower())
    return _WORD[found.group(1)] if found else None
