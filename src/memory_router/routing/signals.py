"""Cheap signals read off a chat request: who typed what, which tools ran, code, size.

Pure functions over the request; nothing here embeds text or calls a model. The system prompt
is never scanned for keywords (Cline's holds every tool description and the user's rules),
except a short one from another client, which is looked at for housekeeping wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..wire.openai import ChatCompletionRequest, ChatMessage
from .bank_calls import COMMAND_TOOLS, READ_TOOLS, WRITE_TOOLS
from .memory_signals import (
    COMPACTED,
    MemorySignals,
    human_words,
    read_memory_signals,
)

__all__ = ["EDIT_TOOLS", "RequestSignals", "read_signals", "word_scores"]

# Tools that change files or run things: the agent is implementing.
EDIT_TOOLS = WRITE_TOOLS | COMMAND_TOOLS | frozenset({"new_rule"})
LOOK_TOOLS = READ_TOOLS | frozenset(
    {"list_files", "search_files", "list_code_definition_names", "codebase_search", "grep"}
)
_ALL_TOOLS = EDIT_TOOLS | LOOK_TOOLS
# The word patterns below are matched against lower-cased text, so they are written in lower
# case and compiled without IGNORECASE (two to three times faster on these alternations).
_XML_TOOL = re.compile(r"<(" + "|".join(sorted(_ALL_TOOLS)) + r")>")
_MENTIONS_BANK = re.compile(
    r"\bmemory[ -]?bank\b|\bcline_docs\b"
    r"|\b(?:projectbrief|productcontext|systempatterns|techcontext|activecontext|progress)\.md\b"
    r"|メモリバンク|记忆库|\bbanco de memori[ae]\b"
    r"|\bbanque de mémoire\b",
)
# Cline's own housekeeping turns: context condensing and task hand-off instructions.
_CLIENT_INSTRUCTION = re.compile(
    r'<explicit_instructions type="(?:condense|summarize_task|new_task|summarize)"'
)
# "Write a title for the page" with tools at hand is work; these need no tools field.
_META_NO_TOOLS = re.compile(
    r"^\s*(?:generate|write|create|suggest|give|propose)\b.{0,40}\b(?:title|follow[- ]?ups?"
    r"|commit message)",
    re.MULTILINE,
)
_CHAT_THING = r"(?:conversation|chat|thread|session|discussion|task)"
_META = re.compile(
    r"\b(?:title|heading|name)\s+(?:for|of)\s+(?:this|the|our)\s+"
    + _CHAT_THING
    + r"|\b(?:give|name)\s+(?:this|the|our)\s+"
    + _CHAT_THING
    + r"\s+an?\s+(?:title|name)"
    r"|\bsummar(?:y|ize|ise)\b.{0,60}\b(?:conversation|chat|discussion|session|so far"
    r"|task above|above task|we(?:'ve| have) (?:discussed|done))"
    r"|\bcondense\b.{0,40}\b(?:conversation|context|history|everything|so far)"
    r"|\bfollow[- ]?up (?:questions|suggestions|prompts)"
    r"|^\W*(?:please\s+)?(?:a\s+)?(?:conventional\s+)?commit message\b"
    r"|\b(?:(?:write|generate|create|draft|suggest)s?|give me|need)\b.{0,30}\bcommit messages?"
    r"|\b(?:write|generate|draft)s?\b.{0,20}\b(?:pr|pull request) description"
    r"|\bgenerate\b.{0,80}\b(?:chat history|the conversation)\b"
    r"|\bhandoff note\b"
    r"|\b(?:name|title|label|tags?)\b.{0,30}\b(?:the|this) (?:conversation|chat|thread)\b"
    r"|^#+ task:|(?:会話|对话|對話).{0,30}(?:見出し|タイトル|标题|標題)"
    r"|(?:見出し|タイトル|标题|標題).{0,30}(?:会話|对话|對話)",
    re.MULTILINE,
)
# A short system prompt from another client that gives the model a housekeeping job.
_META_JOB = re.compile(
    r"\b(?:commit messages?|(?:conversation|chat) titles?|titles? for|summar(?:y|ies|ize)"
    r"|follow[- ]?up (?:questions|suggestions)|tags? for|search quer(?:y|ies))\b"
)
_IMPERATIVE = re.compile(
    r"(?:^|[.!?,;:\n]\s*|\b(?:please|now|then|and|also|so|can you|could you|let's"
    r"|go ahead and)\s+)"
    r"(?:implement|fix|add|write|refactor|rename|create|build|make|change|update|remove"
    r"|delete|migrate|convert|replace|port|bump|upgrade|install|configure|wire|hook up"
    r"|set up|setup|extract|move|split|merge|optimi[sz]e|speed up|handle|support|introduce"
    r"|generate|scaffold|patch|correct|resolve|finish|complete|continue|apply|run|debug"
    r"|deploy|adjust|tweak|modify|edit|rewrite|clean up|translate)\b",
)
# The same requests in the other languages developers most often type to Cline: Spanish,
# Portuguese, French, German (word-bounded), Chinese and Japanese (no word boundaries).
_IMPERATIVE_OTHER = re.compile(
    r"\b(?:arregla|corrige|corrija|implementa|implemente|añade|agrega|adicione|crea|crie"
    r"|cambia|altere|elimina|remova|actualiza|atualize|conserte|répare|ajoute|implémente"
    r"|crée|modifie|supprime|behebe|repariere|füge|implementiere|erstelle|ändere|entferne"
    r"|aktualisiere|korrigiere|baue|adiciona|cria|muda|corrige|faz|usa|haz|pon|quita)\b"
    r"|修复|实现|添加|修改|删除|创建|改成|修正して|実装して|追加して|変更して|削除して|作成して|直して",
)
_ANALYZE_OTHER = re.compile(
    r"\b(?:explica|explícame|explique|expliquer|explícalo|revisa|analiza|analise"
    r"|analysiere|compara|vergleiche|erkläre|erklären|warum|pourquoi"
    r"|por ?qu[eé]|überprüfe|revois|évalue|bewerte|planifica|planeje)\b"
    r"|解释|为什么|分析|比较|审查|评审|说明|説明|なぜ|分析して|比較|レビュー|どうして|仕組み",
)
_IMPLEMENT = re.compile(
    r"\b(?:implement\w*|fix\w*|refactor\w*|bug|broken|crash\w*|failing|fails|error|exception"
    r"|traceback|stack trace|feature|endpoint|function|method|class|test|tests|script|compile"
    r"|build|lint|typo|regression|migration|patch|diff|pr)\b",
)
_ANALYZE = re.compile(
    r"\b(?:explain\w*|review\w*|analy[sz]\w*|why|how (?:does|do|is|are|would|should|can)"
    r"|plan\w*|design\w*|architect\w*|compare\w*|comparison|understand\w*|investigat\w*"
    r"|summari[sz]\w*|audit\w*|walk me through|trade-?offs?|pros and cons|evaluat\w*"
    r"|assess\w*|root cause|overview|strateg\w*|approach\w*|recommend\w*|critique|options"
    r"|what (?:does|do|is|are) (?:this|these|the)\b.{0,40}\b(?:do|doing|mean|for))\b",
)
_CODE = re.compile(
    r"```|^(?:diff --git|@@ |\+\+\+ |--- a/)|^\s*(?:def|class|function|import)\s", re.MULTILINE
)
_SMALL_TALK = re.compile(
    r"^\W*(?:hi|hello|hey|thanks|thank you|thx|ok|okay|great|cool|nice|yes|no|sure|good"
    r"|perfect|awesome|lgtm|looks good|makes sense|got it|understood|danke|merci|gracias"
    r"|grazie|obrigad[oa]|parfait|genial|perfecto|perfeito|super|謝謝|谢谢|ありがとう)",
)
_RECENT = 6  # messages looked at for recent tool activity
# Literal markers of the memory-bank rules (Cline's documented .clinerules/memory-bank.md),
# which tell the agent to read every bank file at the start of every task.
_BANK_RULES = ("# Cline's Memory Bank", ".clinerules/memory-bank.md")
_HEAD = 2000  # characters of the user's words searched for keywords
# Distinct texts the per-text memos below remember. Every turn of an agent's tool loop carries
# the same latest words from the user, so the word patterns run once per loop, not per turn.
_MEMO = 1024


@dataclass(frozen=True, slots=True)
class RequestSignals:
    """What the cheap look at a request found."""

    tool_style: str  # "native" (tools field), "xml" (tools in the prompt) or "none"
    human_text: str  # the latest words the user typed (Cline's wrapping removed)
    human_lower: str  # the same, lower-cased, for the word patterns
    task_text: str  # the first words the user typed in this conversation (the task)
    recent_tools: tuple[str, ...]
    in_tool_loop: bool  # the last message is a tool result: the agent is mid-loop
    user_spoke: bool  # the last message holds words the user typed (a task, feedback, a reply)
    client_instruction: bool  # Cline asks for a condensed summary or a task hand-off
    memory: MemorySignals
    mentions_memory_bank: bool
    housekeeping: bool
    imperative: bool  # the user's latest words tell the agent to change something
    implement_words: int
    analyze_words: int
    small_talk: bool
    code: bool  # code or a diff in the user's latest words or the last assistant turn
    bank_rules: bool  # the user's rules (in the system prompt) keep a Cline memory bank
    first_turn: bool  # no assistant turn yet: the start of a task
    compacted: bool  # a summary stands in for the conversation's older turns (cline 3.x)
    conversation_tokens: int  # the estimate without the system prompt and tools
    messages: int
    user_turns: int

    @property
    def memory_bank(self) -> bool:
        """This turn initializes, reads or updates the memory bank."""
        return self.memory.phase != "none"

    @property
    def recent_edit(self) -> bool:
        return any(name in EDIT_TOOLS for name in self.recent_tools)

    @property
    def recent_look(self) -> bool:
        return any(name in LOOK_TOOLS for name in self.recent_tools)


def _tool_names(message: ChatMessage) -> list[str]:
    names = [call.function.name for call in message.tool_calls or ()]
    text = message.text()
    if "<" in text:
        names.extend(match.group(1) for match in _XML_TOOL.finditer(text))
    return names


_FEEDBACK = re.compile(r"<(?:feedback|user_message|answer)>\s*\S")


def _user_spoke(message: ChatMessage) -> bool:
    text = message.text()
    if message.role == "tool":
        return bool(_FEEDBACK.search(text))
    return message.role == "user" and bool(human_words(text))


def _is_tool_result(message: ChatMessage) -> bool:
    if message.role == "tool":
        return True
    if message.role != "user":
        return False
    text = message.text()
    return text.lstrip().startswith("[") and "] Result:" in text[:300]


def _is_compacted(message: ChatMessage) -> bool:
    """The summary cline 3.x puts first when it compacts a conversation."""
    return message.text()[:64].lstrip().startswith(COMPACTED)


def _words(messages: list[ChatMessage]) -> tuple[str, str, int]:
    """The latest and the first words the user typed, and how many user turns had words
    (counted up to three: all the classifier asks is "one, two, or more").

    A long Cline conversation holds dozens of user messages that are tool results: the scan
    stops as soon as it has what it needs instead of reading every one each turn."""
    users = [m for m in messages if m.role == "user"]
    latest = next((w for m in reversed(users) if (w := human_words(m.text()))), "")
    if not latest:
        return "", "", 0
    first, turns = "", 0
    for message in users:
        words = human_words(message.text())
        if words:
            first = first or words
            turns += 1
            if turns >= 3:
                break
    return latest, first, turns


@lru_cache(maxsize=_MEMO)
def word_scores(text: str) -> tuple[bool, int, int]:
    """Whether ``text`` (lower case) tells the agent to change something; implement and
    analyze words. Memoized per text."""
    imperative = bool(_IMPERATIVE.search(text) or _IMPERATIVE_OTHER.search(text))
    analyze = len(_ANALYZE.findall(text)) + len(_ANALYZE_OTHER.findall(text))
    return imperative, len(_IMPLEMENT.findall(text)), analyze


@lru_cache(maxsize=_MEMO)
def _word_flags(low: str) -> tuple[bool, bool, bool, bool]:
    """What the user's latest words (lower case) say besides the scores: housekeeping wording
    (with tools at hand, and without), the memory bank named, small talk. Memoized per text."""
    head = low[:600]
    return (
        bool(_META.search(head)),
        bool(_META_NO_TOOLS.search(head)),
        bool(_MENTIONS_BANK.search(low)),
        bool(_SMALL_TALK.match(low)),
    )


def read_signals(request: ChatCompletionRequest) -> RequestSignals:
    """Read every cheap signal off a chat request."""
    messages = request.messages
    latest, first, turns = _words(messages)
    head = latest[:_HEAD]
    low = head.lower()
    recent: list[str] = []
    for message in messages[-_RECENT:]:
        if message.role == "assistant":
            recent.extend(_tool_names(message))
    system = messages[0].text() if messages and messages[0].role == "system" else ""
    if request.tools:
        style = "native"
    elif "<read_file>" in system or "<write_to_file>" in system:
        style = "xml"
    else:
        style = "none"
    imperative, implement_words, analyze_words = word_scores(low)
    opening = next((m for m in messages if m.role != "system"), None)
    compacted = opening is not None and opening.role == "user" and _is_compacted(opening)
    meta, meta_no_tools, mentions_bank, small_talk = _word_flags(low)
    last_assistant = next((m.text() for m in reversed(messages) if m.role == "assistant"), "")
    short_system = system if len(system) < 2000 else ""
    housekeeping = bool(
        meta
        or (not request.tools and meta_no_tools)
        or (short_system and _META_JOB.search(short_system.lower()))
    )
    return RequestSignals(
        tool_style=style,
        human_text=head,
        human_lower=low,
        task_text=first[:_HEAD],
        recent_tools=tuple(recent),
        in_tool_loop=bool(messages) and _is_tool_result(messages[-1]),
        user_spoke=bool(messages) and _user_spoke(messages[-1]),
        client_instruction=bool(messages)
        and messages[-1].role in ("user", "tool")
        and bool(_CLIENT_INSTRUCTION.search(messages[-1].text())),
        memory=read_memory_signals(request),
        mentions_memory_bank=mentions_bank,
        housekeeping=housekeeping,
        imperative=imperative,
        implement_words=implement_words,
        analyze_words=analyze_words,
        small_talk=small_talk and len(head) < 80,
        code=bool(_CODE.search(head, 0) or _CODE.search(last_assistant[-4000:])),
        bank_rules=any(marker in system for marker in _BANK_RULES),
        first_turn=not compacted and not any(m.role == "assistant" for m in messages),
        compacted=compacted,
        conversation_tokens=sum(len(m.text()) for m in messages if m.role != "system") // 4,
        messages=len(messages),
        user_turns=turns,
    )
