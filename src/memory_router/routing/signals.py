"""Cheap signals read off a chat request: message structure, tool calls, keywords, size.

Pure functions over the request; nothing here embeds text or calls a model. The whole system
prompt is never scanned for keywords (Cline's holds every tool description), only counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..wire.openai import ChatCompletionRequest, ChatMessage
from .memory_signals import MemorySignals, read_memory_signals

__all__ = ["RequestSignals", "read_signals"]

# Tools that change files or run things: the turn is implementation work.
EDIT_TOOLS = frozenset(
    {
        "write_to_file",
        "replace_in_file",
        "apply_diff",
        "apply_patch",
        "insert_content",
        "search_and_replace",
        "edit_file",
        "new_rule",
        "execute_command",
    }
)
_XML_EDIT = re.compile(r"<(" + "|".join(sorted(EDIT_TOOLS)) + r")>")
_MENTIONS_BANK = re.compile(r"\bmemory[ -]bank\b", re.IGNORECASE)
_META = re.compile(
    r"^\s*(generate|write|create|suggest)\b.{0,40}\b(title|summary|follow[- ]?up|commit message)"
    r"|\bsummari[sz]e (this|the) conversation\b",
    re.IGNORECASE,
)
_IMPLEMENT = re.compile(
    r"\b(implement|fix|add|write|refactor|rename|create|build|edit|change|update|remove|delete"
    r"|migrate)\b",
    re.IGNORECASE,
)
_ANALYZE = re.compile(
    r"\b(explain|review|analy[sz]e|why|plan|design|architecture|compare|understand|investigate"
    r"|summari[sz]e|audit)\b",
    re.IGNORECASE,
)
_RECENT = 6  # messages looked at for recent tool activity


@dataclass(frozen=True, slots=True)
class RequestSignals:
    """What the cheap look at a request found."""

    tool_style: str  # "native" (tools field), "xml" (tools in the prompt) or "none"
    last_user_text: str
    recent_tools: tuple[str, ...]
    memory: MemorySignals
    mentions_memory_bank: bool
    housekeeping: bool
    implement_words: bool
    analyze_words: bool
    estimated_tokens: int
    messages: int

    @property
    def memory_bank(self) -> bool:
        """This turn initializes, reads or updates the memory bank."""
        return self.memory.phase != "none"

    @property
    def recent_edit(self) -> bool:
        return any(name in EDIT_TOOLS for name in self.recent_tools)


def _last_user(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text()
    return ""


def _recent_tools(messages: list[ChatMessage]) -> tuple[str, ...]:
    names: list[str] = []
    for message in messages[-_RECENT:]:
        if message.role != "assistant":
            continue
        for call in message.tool_calls or ():
            names.append(call.function.name)
        names.extend(match.group(1) for match in _XML_EDIT.finditer(message.text()))
    return tuple(names)


def estimate_tokens(request: ChatCompletionRequest) -> int:
    """A quick size estimate (about four characters a token), tools included."""
    chars = sum(len(message.text()) for message in request.messages)
    for message in request.messages:
        for call in message.tool_calls or ():
            chars += len(call.function.arguments) + len(call.function.name)
    for tool in request.tools or ():
        chars += len(tool.function.name) + len(tool.function.description or "") + 200
    return chars // 4 + 4 * len(request.messages)


def read_signals(request: ChatCompletionRequest) -> RequestSignals:
    """Read every cheap signal off a chat request."""
    last_user = _last_user(request.messages)
    # Cline wraps the user's words in <task> or <feedback> plus long environment details;
    # keywords are looked for in the first part only.
    head = last_user[:2000]
    recent = _recent_tools(request.messages)
    if request.tools:
        style = "native"
    elif any(
        message.role == "system" and "<read_file>" in message.text()
        for message in request.messages[:1]
    ):
        style = "xml"
    else:
        style = "none"
    return RequestSignals(
        tool_style=style,
        last_user_text=head[:200],
        recent_tools=recent,
        memory=read_memory_signals(request),
        mentions_memory_bank=bool(_MENTIONS_BANK.search(head)),
        housekeeping=bool(_META.search(head)) and not request.tools,
        implement_words=bool(_IMPLEMENT.search(head)),
        analyze_words=bool(_ANALYZE.search(head)),
        estimated_tokens=estimate_tokens(request),
        messages=len(request.messages),
    )
