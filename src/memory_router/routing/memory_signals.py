"""Memory-bank signals read off a Cline request: what this turn does with the memory bank.

Pure and cheap, like :mod:`.signals`: no I/O, no model, no embedding. The system prompt (5-47k
characters, the user's rules included, and those rules quote "update memory bank") is never
searched for phrases; a few literal markers are looked up in it with ``str.find``.

The phase of the current turn is the strongest (initialize > update > read > none) of:

1. the phrase in the latest human message: the newest user message holding words the user
   typed (the contents of Cline's ``<task>``, ``<feedback>``, ``<answer>``, ``<user_message>``
   or ``<user_input>`` tags, or a plain message). Tool results (``[read_file for 'x']
   Result:``), notices (``[SYSTEM] ...``) and ``<environment_details>`` are not the user's
   words. "initialize memory bank" and "update memory bank" hold for the whole agent loop after
   the message (Cline explores the project to write the bank); "follow your custom
   instructions" (read) holds until the bank has been read in that loop and the agent has then
   gone on to other tool work (or, in a condensed conversation that no longer shows the reads,
   until two turns of other work or one edit of a file outside the bank, and never past
   Cline's continuation prompt after condensing);
2. memory-bank tool activity in the last ``_WINDOW`` assistant turns after that message (and
   after Cline's continuation prompt, if the conversation was condensed since): writing
   or editing a ``memory-bank/*.md`` file gives update, any other tool call that touches the
   memory bank (read, list, search, ``cat``) gives read, unless a later one of those turns did
   other work (the agent read the bank, then went on to a source file).

So a new user message that does not name the memory bank starts again from none.

``files_read`` and ``files_written`` cover the whole conversation in both tool styles: native
``tool_calls`` answered by ``role: "tool"`` messages, and XML tool tags answered by ``[tool for
'path'] Result:`` user messages. A read counts once its result is in and did not fail; a write
counts once asked for unless its result says it failed. Paths are relative to the workspace; a
bank outside it is reported from its ``memory-bank/`` folder on. Reading the calls and their
results is :mod:`.bank_calls`'s job.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from ..wire.openai import ChatCompletionRequest, ChatMessage
from .bank_calls import (
    NEUTRAL_TOOLS,
    WRITE_TOOLS,
    XML_EDIT,
    XML_WORK,
    BankCall,
    has_bank,
    native_call,
    native_ok,
    xml_calls,
    xml_ok,
)

__all__ = [
    "COMPACTED",
    "MemorySignals",
    "Mode",
    "Phase",
    "human_words",
    "read_memory_signals",
    "workspace_from_request",
]

Phase = Literal["initialize", "update", "read", "none"]
Mode = Literal["plan", "act"]

_STRENGTH: dict[Phase, int] = {"none": 0, "read": 1, "update": 2, "initialize": 3}
_WINDOW = 2  # assistant turns whose memory-bank tool activity sets the phase
# Cline's continuation prompt (``continuationPrompt``), the result of its ``summarize_task``
# call: the conversation was condensed mid-task and goes on from the summary.
_CONTINUED = "session is being continued from a previous conversation"
COMPACTED = "Context summary:\n\n"
"""How cline 3.x opens the user message that stands in for a compacted conversation's older
messages (its task among them): a summary the client wrote, not the user's words."""
_HUMAN_SCAN = 4000  # characters of the user's words searched for phrases (head and tail)

# The user's phrases are found from their anchor, each "memory bank" mention, then the verb just
# before it (a few filler words allowed): one literal-led search over the user's words.
_BANK_MENTION = re.compile(
    r"memory[ -]?bank(?![\w-])"
    # "memory bank" as hardware (a bank of RAM) rather than Cline's folder.
    r"(?![ -]?(?:\w+[ -])?(?:map|mapping|regist|address|select|switch|interleav|controller"
    r"|driver|size|width|conflict|parit))"
)
_VERB_BEFORE = re.compile(
    r"\b(?:(?P<initialize>(?:re-?)?(?:initiali[sz]e|init|create|build)|set ?up|bootstrap"
    r"|generate|make|start)"
    r"|(?P<update>update|refresh|sync)"
    r"|(?P<read>read(?:ing)?|review(?:ing)?|load(?:ing)?|check(?:ing)?|consult(?:ing)?"
    r"|go(?:ing)? through))"
    r"\s+(?:(?:the|my|our|your|this|a|an|new|all|of|project'?s?|cline'?s?|entire|whole)\s+)*$"
)
_UPDATE_AFTER = re.compile(r"\s+update\b")  # "memory bank update"
_UMB = re.compile(r"\W*umb\b")  # Cline's shorthand for "update memory bank", typed first
_CUSTOM_INSTRUCTIONS = re.compile(
    r"\bfollow(?:ing)?\s+(?:(?:your|the|my|all)\s+)*custom\s+instructions\b"
)
_NEGATED = re.compile(
    r"\b(?:don'?t|do\s+not|never|no\s+need\s+to|without|not|skip|stop)\b[\w\s']{0,20}$"
)

# Cline's message shapes. Tags around words the user typed: a task, feedback on a tool call or
# a result, an answer to a question, a resumed task's message, cline 3.x's <user_input>.
_HUMAN_TAG = re.compile(r"<(task|feedback|answer|user_message|user_input)\b[^>]*>")
_FEEDBACK_TAG = re.compile(r"<(feedback|answer|user_message)>")
_NOT_HUMAN = (
    ("<environment_details>", "</environment_details>"),
    ("<file_content", "</file_content>"),
    ("<mode_notice>", "</mode_notice>"),
)
# A tool result ("[read_file for 'x'] Result:"), a client notice ("[SYSTEM] ...", "[ERROR]") or
# cline 3.x's compaction summary.
_AUTO_MESSAGE = re.compile(
    r"\s*(?:\[(?:[a-z_]+(?: for '[^\n]*?')?\] Result:|[A-Z][A-Z _-]*[A-Z]\])|"
    + re.escape(COMPACTED)
    + ")"
)
_USER_INPUT_MODE = re.compile(r"<user_input\b[^>]*\bmode=\"(act|plan|yolo)\"")
_CURRENT_MODE = re.compile(r"# Current Mode\s*\n\s*(ACT|PLAN) MODE")
_ENV_CWD = re.compile(r"# Current Working Directory \((.+?)\) Files")
_PLAN_SECTION = "# Plan Mode\n\nYou are in Plan mode"  # cline 3.x, Plan mode only
_PLAN_ACT_SECTION = "# Plan / Act Modes"  # cline 3.x, always


@dataclass(frozen=True, slots=True)
class MemorySignals:
    """What a request shows about Cline's memory bank; every field is plain data."""

    phase: Phase  # what this turn does with the memory bank
    reasons: tuple[str, ...]  # why, for people: 'user said "update memory bank"'
    files_read: tuple[str, ...]  # bank files whose contents the conversation holds
    files_written: tuple[str, ...]  # bank files written or edited in the conversation
    pending_read: tuple[str, ...]  # bank files the last assistant turn reads, result not in
    mode: Mode | None  # Cline's Plan/Act mode when the prompt shows it
    workspace: str | None  # the working directory the system prompt names


def _system_text(request: ChatCompletionRequest) -> str:
    for message in request.messages[:2]:
        if message.role in ("system", "developer"):
            return message.text()
    return ""


def _directory(value: str) -> str | None:
    value = value.strip().strip("\"'`")
    if len(value) > 1:
        value = value.rstrip("/\\") or value[:1]
    return value or None


def _line_after(text: str, marker: str, start: int = 0, end: int | None = None) -> str | None:
    at = text.find(marker, start, len(text) if end is None else end)
    if at < 0:
        return None
    stop = text.find("\n", at)
    return _directory(text[at + len(marker) : stop if stop >= 0 else len(text)])


def _workspace(request: ChatCompletionRequest, system: str) -> str | None:
    # cline 3.x CLI: "<env> ... 4. Working Directory: /path </env>"; the rules come later.
    env = system.find("<env>")
    if env >= 0 and (found := _line_after(system, "Working Directory: ", env, env + 2000)):
        return found
    # The VS Code extension's core (cline 2.x CLI): "Current Working Directory: /path" in the
    # prompt's SYSTEM INFORMATION, and "# Current Working Directory (/path) Files" in the
    # environment details of the first user message.
    if found := _line_after(system, "Current Working Directory: "):
        return found
    for message in request.messages:
        if message.role == "user":
            text = message.text()
            at = text.find("# Current Working Directory (")
            if at >= 0 and (match := _ENV_CWD.match(text, at)):
                return _directory(match.group(1))
    return None


def workspace_from_request(request: ChatCompletionRequest) -> str | None:
    """The working directory Cline's prompt names (either client), or None."""
    return _workspace(request, _system_text(request))


def _mode(newest_first: Iterable[str], system: str) -> Mode | None:
    # The newest user message that shows a mode governs ("the newest message's mode").
    for text in newest_first:
        at = text.find("<user_input")
        if at >= 0 and (match := _USER_INPUT_MODE.match(text, at)):
            return "plan" if match.group(1) == "plan" else "act"
        details = text.rfind("<environment_details>")
        at = text.find("# Current Mode", details) if details >= 0 else -1
        if at >= 0 and (match := _CURRENT_MODE.match(text, at)):
            return "plan" if match.group(1) == "PLAN" else "act"
    if system.find(_PLAN_SECTION) >= 0:
        return "plan"
    if system.find(_PLAN_ACT_SECTION) >= 0:
        return "act"
    return None


def _tagged(text: str, tag: re.Pattern[str]) -> list[str]:
    parts: list[str] = []
    start = 0
    while (match := tag.search(text, start)) is not None:
        closing = "</" + match.group(1) + ">"
        end = text.find(closing, match.end())
        end = len(text) if end < 0 else end
        parts.append(text[match.end() : end])
        start = end + len(closing)
    return parts


class _WordsMemo:
    """``human_words`` per message text, keyed by the text's hash and length (as the token
    counts are) so that long tool results are not kept alive. Each turn resends the whole
    conversation; its user messages are read once, not once per turn."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._words: dict[tuple[int, int], str] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        key = (hash(text), len(text))
        words = self._words.get(key)
        if words is None:
            words = _human_words(text)
            with self._lock:
                if len(self._words) >= self._size:
                    del self._words[next(iter(self._words))]  # the oldest
                self._words[key] = words
        return words


def _human_words(text: str) -> str:
    if _AUTO_MESSAGE.match(text):
        # A tool result or a client notice; the user may have answered inside it.
        words = "\n".join(_tagged(text, _FEEDBACK_TAG))
    else:
        words = "\n".join(_tagged(text, _HUMAN_TAG)) or text
    for opening, closing in _NOT_HUMAN:
        while (at := words.find(opening)) >= 0:
            end = words.find(closing, at)
            words = words[:at] + (words[end + len(closing) :] if end >= 0 else "")
    words = words.strip()
    if len(words) > _HUMAN_SCAN:  # a pasted log or file: instructions come first or last
        words = words[: _HUMAN_SCAN // 2] + "\n" + words[-_HUMAN_SCAN // 2 :]
    return words


human_words = _WordsMemo(2048)
"""The words the user typed in one user message; empty for tool results and notices."""


@lru_cache(maxsize=1024)
def _phrase(words: str) -> tuple[Phase, str]:
    """The strongest memory-bank phrase in the user's words, and the words that said it."""
    lower = words.lower()
    original = words if len(words) == len(lower) else lower
    best: Phase = "none"
    said = ""

    def found(phase: Phase, start: int, end: int) -> None:
        nonlocal best, said
        negated = _NEGATED.search(lower, max(0, start - 40), start)
        if not negated and _STRENGTH[phase] > _STRENGTH[best]:
            best, said = phase, " ".join(original[start:end].split())

    for mention in _BANK_MENTION.finditer(lower):
        before = _VERB_BEFORE.search(lower, max(0, mention.start() - 80), mention.start())
        if before is not None:
            phase: Phase = (
                "initialize"
                if before.group("initialize")
                else "update"
                if before.group("update")
                else "read"
            )
            found(phase, before.start(), mention.end())
        elif after := _UPDATE_AFTER.match(lower, mention.end()):
            found("update", mention.start(), after.end())
    if umb := _UMB.match(lower):
        found("update", umb.end() - 3, umb.end())
    if "custom instructions" in lower:
        for match in _CUSTOM_INSTRUCTIONS.finditer(lower):
            found("read", match.start(), match.end())
    return best, said


def _listing(files: list[str]) -> str:
    return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def read_memory_signals(request: ChatCompletionRequest) -> MemorySignals:
    """Read the memory-bank signals off a chat request; the rules are the module docstring's."""
    messages: list[ChatMessage] = request.messages
    system = _system_text(request)
    workspace = _workspace(request, system)
    texts: dict[int, str] = {}

    def text_of(index: int) -> str:
        text = texts.get(index)
        if text is None:
            text = texts[index] = messages[index].text()
        return text

    human = -1
    phrase: Phase = "none"
    said = ""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user" and (words := human_words(text_of(index))):
            human = index
            phrase, said = _phrase(words)
            break

    # Calls that touch the bank (both styles), turns that do other tool work, native results.
    calls: list[BankCall] = []
    work: set[int] = set()
    edits: set[int] = set()  # turns that write or edit a file outside the bank
    results: dict[str, int] = {}
    assistants: list[int] = []
    for index, message in enumerate(messages):
        if message.role == "tool" and message.tool_call_id:
            results[message.tool_call_id] = index
        if message.role != "assistant":
            continue
        assistants.append(index)
        found: list[BankCall] = []
        for tool_call in message.tool_calls or ():
            function = tool_call.function
            if has_bank(function.arguments):
                arguments = function.arguments
                found.append(native_call(index, function.name, tool_call.id, arguments, workspace))
            elif function.name not in NEUTRAL_TOOLS:
                work.add(index)
                if function.name in WRITE_TOOLS:
                    edits.add(index)
        if has_bank(text_of(index)):
            found += xml_calls(index, text_of(index), workspace)
        for call in found:
            if call.bank:
                calls.append(call)
            elif not call.neutral:
                work.add(index)
                if call.tool in WRITE_TOOLS:
                    edits.add(index)

    files_read: dict[str, None] = {}
    files_written: dict[str, None] = {}
    pending: dict[str, None] = {}
    for call in calls:
        if not (call.reads or call.writes):
            continue
        confirmed: set[str] | None = None  # None: no result (yet)
        if call.call_id is not None:
            if (result := results.get(call.call_id)) is not None:
                confirmed = native_ok(call, text_of(result), workspace)
        elif call.message + 1 < len(messages):
            after = call.message + 1
            ran = messages[after].role == "user" and xml_ok(call, text_of(after), workspace)
            confirmed = set(call.reads + call.writes) if ran else set()
        if confirmed is None:
            if call.message == assistants[-1]:
                pending.update(dict.fromkeys(call.reads))
            files_written.update(dict.fromkeys(call.writes))  # asked for, not known to fail
        else:
            files_read.update(dict.fromkeys(p for p in call.reads if p in confirmed))
            files_written.update(dict.fromkeys(p for p in call.writes if p in confirmed))

    # The last continuation after the user's words: what came before it was condensed away.
    continued = next(
        (
            i
            for i in range(len(messages) - 1, human, -1)
            if messages[i].role != "assistant" and text_of(i).find(_CONTINUED, 0, 400) >= 0
        ),
        -1,
    )
    reasons: list[str] = []
    if phrase == "read":
        # A read request lapses once the bank was read and the agent went on to other work.
        touched = {call.message for call in calls}
        read_seen = moved_on = edited = False
        other_work = 0  # turns of other tool work since the message, bank reads or not
        for index in assistants:
            if index <= human:
                continue
            if index in touched:
                read_seen, moved_on = True, False
            elif index in work or XML_WORK.search(text_of(index)):
                other_work += 1
                moved_on = moved_on or read_seen
                edited = edited or index in edits or bool(XML_EDIT.search(text_of(index)))
        # A condensed conversation may no longer show the bank reads: two turns of other work
        # after the request, or one that edits a file, mean the agent has moved on all the same
        # (the bank is read at the start of a task, before any change).
        if not read_seen and (other_work >= 2 or edited):
            read_seen = moved_on = True
        if continued > human:
            reasons.append(f'user said "{said}"; the conversation was condensed mid-task')
            phrase = "none"
        elif read_seen and moved_on:
            reasons.append(f'user said "{said}"; the bank was read and the agent moved on')
            phrase = "none"
        else:
            reasons.append(f'user said "{said}"')
    elif phrase != "none":
        reasons.append(f'user said "{said}"')

    window = set([index for index in assistants if index > max(human, continued)][-_WINDOW:])
    # Reads count only until the agent turns to other work: a turn that reads the bank, then
    # one that reads a source file, has moved on.
    last_work = max((i for i in window if i in work or XML_WORK.search(text_of(i))), default=-1)
    recent = [
        call
        for call in calls
        if call.message in window and (call.writes or call.message >= last_work)
    ]
    writers = [call for call in recent if call.writes]
    activity: Phase = "update" if writers else "read" if recent else "none"
    if recent:
        shown = writers or recent
        files = list(dict.fromkeys(p for call in shown for p in (call.writes or call.reads)))
        tools = ", ".join(dict.fromkeys(call.tool for call in shown))
        what = _listing(files) or "the memory bank"
        reasons.append(f"the latest turns {'write' if writers else 'read'} {what} ({tools})")

    return MemorySignals(
        phase=max(phrase, activity, key=_STRENGTH.__getitem__),
        reasons=tuple(reasons),
        files_read=tuple(files_read),
        files_written=tuple(files_written),
        pending_read=tuple(pending),
        mode=_mode(
            (text_of(i) for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"),
            system,
        ),
        workspace=workspace,
    )
