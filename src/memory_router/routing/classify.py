"""The task class of a request, from cheap signals first and an embedding vote second.

Order of evidence, strongest first:

1. client housekeeping: Cline's condense and hand-off instructions, or the user asking for a
   title, a summary of the conversation, follow-ups, a commit message -> ``meta``;
2. the memory-bank phase of the turn (initialize, read, update), or the user naming the bank
   or one of its files -> ``memory``;
3. when the user has just spoken (a task, feedback, a reply), their words: small talk and
   short general questions -> ``chat``; "go ahead" -> ``implement``; "don't change anything"
   -> ``analyze``; otherwise change verbs and implementation nouns against explanation,
   review and planning words (a pasted log or profile with a question is analysis);
4. when the agent is mid-loop (the last message is a tool result): edits -> ``implement``;
   reads and commands -> the class of what the user asked for, else ``implement``;
5. when the words are weak, the answer of a small local model asked about the user's words
   (``routing.classifier.llm``, off by default), else the nearest labelled example by
   embedding of the user's words (never the system prompt), if similar enough;
6. otherwise the class the conversation's activity suggests, or ``chat``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, TypeGuard

from ..domain import TaskClass
from .bank_calls import WRITE_TOOLS
from .signals import RequestSignals, word_scores

__all__ = ["Classification", "Vote", "classify"]

_PROJECT_REF = re.compile(
    r"[/\\]\w|`|\b[a-z]+_[a-z_]+\b|\b[a-z]+[A-Z]\w*\b"
    r"|\b(?:this|our|my|the|that)\s+(?:code|repo|repository|project|codebase|module|file"
    r"|function|class|service|app|test|tests|api|endpoint|component|schema|bug|error|branch)\b",
)
_QUESTION = re.compile(
    r"\W*(?:\w+[,.!]\s+)?(?:what|how|why|when|where|which|who|is|are|does|do|can|could|should"
    r"|would|was|were|remind me)\b",
)
_ASK_VERB = re.compile(
    r"\b(?:explain|review|analy[sz]e|investigate|compare|audit|summari[sz]e"
    r"|walk me through|assess|evaluate|diagnose)\b",
)
_NO_CHANGE = re.compile(
    r"\b(?:do(?:n'?t| not)\s+(?:change|edit|modify|touch|fix|write|implement)\w*"
    r"|no (?:edits|changes|code changes)|without (?:changing|editing|fixing)"
    r"|(?:just|only) (?:explain|tell me|review|comments?)|comments only|read[- ]only"
    r"|not (?:fix|change) (?:it|anything)|fix it myself)\b"
    r"|ändere (?:noch )?nichts|nichts ändern|ne (?:change|modifie) rien|no cambies nada"
    r"|sin cambiar|não (?:altere|mude) nada|変更しないで|不要修改|先别改",
)
_GO_AHEAD = re.compile(
    r"\b(?:go ahead|proceed|do it|go for it|let'?s do (?:it|this)|ship it|make it so"
    r"|sounds good,? (?:do|go)|start (?:implementing|coding)|implement (?:it|this|that)"
    r"|do (?:both|all(?: of them)?|(?:\d+|one|two|three)(?: and (?:\d+|one|two|three))?))\b",
)
_BANK_VERBS = (
    r"(?:add|record|note|write|put|update|document|log|mention|save|keep|capture|actualiza"
    r"|atualiza|aktualisiere|mets à jour|ergänze|añade|adiciona)"
)
_BANK_NAMES = r"(?:memory[ -]?bank|\b\w+(?:brief|context|patterns)\.md|progress\.md)"
_BANK_OBJECT = re.compile(
    rf"\b{_BANK_VERBS}\b.{{0,50}}{_BANK_NAMES}|{_BANK_NAMES}.{{0,60}}\b{_BANK_VERBS}\b"
)
_PARAGRAPH = re.compile(r"\n\s*\n|```|\n(?=\S*\s*(?:\d{4}-\d\d-\d\d|#|\||---|\+\+\+|@@))")
_CODE_FILE = re.compile(
    r"[\w./-]+\.(?:py|ts|tsx|js|jsx|go|rs|java|kt|rb|cs|cpp|c|h|swift|php|scala|ex|sql)\b"
    r"|\b(?:the|our|this) code\b|\bsource\b"
)
_PROJECT_CODE = re.compile(
    r"[\w-]+/[\w./-]+|\b(?:this|our|my|the|that)\s+(?:code|repo|repository|project|codebase"
    r"|module|file|function|class|service|app|tests?|endpoint|component|schema|bug|branch)\b"
)
_FENCED = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_PATHLIKE = re.compile(r"\S*[/\\]\S*|`[^`]*`")
_PASTE_LINES = 8  # lines in the user's words from which they count as a pasted log or file
_DECISIVE = 2.0  # keyword margin that needs no embedding vote


def _is_class(name: str) -> TypeGuard[TaskClass]:
    return name in ("memory", "implement", "analyze", "chat", "meta")


@dataclass(frozen=True, slots=True)
class Classification:
    task: TaskClass
    reasons: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    """Keyword scores and example similarities, for the explanation."""
    via: str = "rules"
    """Which evidence decided: "rules", "keywords", "llm", "examples" or "default"."""

    def likely(self) -> dict[TaskClass, float] | None:
        """The class probabilities, when the learned classifier gave them."""
        if self.via != "learned":
            return None
        return {task: p for task, p in self.scores.items() if _is_class(task)}

    @property
    def decisive(self) -> bool:
        """True when no vote (the examples', a model's) could change the outcome."""
        if self.via == "rules":
            return True
        margin = abs(self.scores.get("implement", 0.0) - self.scores.get("analyze", 0.0))
        return self.via == "keywords" and margin >= _DECISIVE


class _Words(NamedTuple):
    """What the patterns find in the user's latest words."""

    no_change: bool  # "don't change anything"
    go_ahead: bool  # "go ahead"
    project_code: bool  # a path or "this code", "our repo"...
    general_question: bool  # a short question about tools or the world, not the project


@lru_cache(maxsize=1024)
def _read_words(text: str) -> _Words:
    """The patterns run on ``text`` once: an agent's tool loop resends the same latest words
    from the user every turn."""
    low = text.lower()
    return _Words(
        no_change=bool(_NO_CHANGE.search(low)),
        go_ahead=bool(_GO_AHEAD.search(low)),
        project_code=bool(_PROJECT_CODE.search(low)),
        general_question=(
            bool(_QUESTION.match(low) or text.rstrip().endswith(("?", "？")))
            and not _ASK_VERB.search(low)
            and len(text.split()) <= 25
            and not _pasted(text)
            and not _PROJECT_REF.search(text)
        ),
    )


def _in_project(signals: RequestSignals) -> bool:
    """The conversation is about the project: the agent has looked at it, or the user points
    at its code."""
    return bool(
        signals.recent_tools
        or signals.in_tool_loop
        or signals.user_turns > 1
        or _read_words(signals.human_text).project_code
    )


def _prose(text: str) -> str:
    """The user's own sentences: fenced code, paths and inline code removed; for a pasted log
    the words before it."""
    prose = _PATHLIKE.sub(" ", _FENCED.sub(" ", text))
    return _lead(prose) if _pasted(prose) else prose


def _lead(text: str) -> str:
    """The user's own sentences before a pasted log, diff or file."""
    match = _PARAGRAPH.search(text, 0, 600)
    return text[: match.start()] if match else text[:400]


def _scores(signals: RequestSignals, text: str) -> tuple[float, float]:
    """Keyword weight for implementation and for analysis in the user's words.

    For a pasted log or file only the words around it count: a stack trace says "error" and
    "exception" without asking for anything."""
    if _pasted(text) or "/" in text or "`" in text:
        imperative, implement_words, analyze_words = word_scores(_prose(text).lower())
    else:
        imperative = signals.imperative
        implement_words, analyze_words = signals.implement_words, signals.analyze_words
    implement = 2.0 * imperative + min(implement_words, 4) * 0.75
    analyze = min(analyze_words, 4) * 1.25
    if not imperative and _in_project(signals) and "?" in _prose(text).replace("？", "?"):
        analyze += 1.5  # a question asked about the project: explanation unless told to change
    if signals.memory.mode == "plan" and len(text.split()) > 6:
        analyze += 1.0
    return implement, analyze


def _pasted(text: str) -> bool:
    return text.count("\n") >= _PASTE_LINES or len(text) > 1500


def _general_question(signals: RequestSignals) -> bool:
    """A short question about tools or the world, not about the project's code."""
    planning = signals.memory.mode == "plan" and bool(signals.recent_tools)
    return not planning and _read_words(signals.human_text).general_question


Vote = tuple[TaskClass, str]
"""A model's reading of the user's words: the class and the reason to show for it."""


def _from_words(
    signals: RequestSignals,
    similar: Mapping[TaskClass, float] | None,
    min_similarity: float,
    vote: Vote | None = None,
) -> Classification | None:
    """The class the user's latest words give, or None when they say too little."""
    text, low = signals.human_text, signals.human_lower
    implement, analyze = _scores(signals, text)
    scores = {"implement": implement, "analyze": analyze}
    words = _read_words(text)
    if words.no_change:
        return Classification("analyze", ("the user asks not to change anything",), scores)
    if words.go_ahead:
        return Classification("implement", ("the user says to go ahead",), scores)
    if signals.small_talk and not (signals.imperative or signals.analyze_words):
        return Classification("chat", ("small talk",), scores)
    if _general_question(signals) and not signals.imperative:
        return Classification("chat", ("a short general question",), scores, "keywords")
    if _pasted(text) and analyze >= implement and (_QUESTION.search(_lead(low)) or analyze):
        return Classification("analyze", ("a pasted log or file with a question",), scores)
    margin = abs(implement - analyze)
    if vote is not None and margin < _DECISIVE:
        return Classification(vote[0], (vote[1],), scores, via="llm")
    if margin >= _DECISIVE or (margin > 0 and not similar):
        task: TaskClass = "implement" if implement > analyze else "analyze"
        what = "asks for code to be changed" if task == "implement" else "asks to explain or plan"
        return Classification(task, (f"the request {what}",), scores, via="keywords")
    if similar:
        best = max(similar, key=lambda task: similar[task])
        scores.update({f"example:{k}": round(v, 3) for k, v in similar.items()})
        if similar[best] >= min_similarity:
            return Classification(
                best,
                (f"closest to the labelled {best} examples (cosine {similar[best]:.2f})",),
                scores,
                via="examples",
            )
    if margin > 0:
        task = "implement" if implement > analyze else "analyze"
        return Classification(task, ("the words lean that way",), scores, via="keywords")
    return None


def classify(
    signals: RequestSignals,
    similar: Mapping[TaskClass, float] | None = None,
    min_similarity: float = 0.35,
    vote: Vote | None = None,
) -> Classification:
    """Classify one request. ``similar``: best cosine to each class's labelled examples;
    ``vote``: a model's reading of the user's words, weighed where the examples would be."""
    if signals.client_instruction:
        return Classification("meta", ("the client asks to condense or hand off the task",))
    if signals.housekeeping:
        return Classification("meta", ("client housekeeping prompt (title, summary, follow-up)",))
    if signals.memory_bank:
        phase = signals.memory.phase
        return Classification("memory", (f"memory bank {phase}", *signals.memory.reasons[:2]))
    low = signals.human_lower
    if signals.mentions_memory_bank and (
        _BANK_OBJECT.search(low)
        # not the code that handles memory banks
        or (not signals.imperative and not _CODE_FILE.search(low))
    ):
        return Classification("memory", ("the user names the memory bank or one of its files",))

    edits = [t for t in signals.recent_tools if t in WRITE_TOOLS]
    if signals.user_spoke or not (signals.in_tool_loop or signals.recent_tools):
        found = _from_words(signals, similar, min_similarity, vote)
        if found is not None:
            return found
        if edits and signals.user_spoke:
            return Classification("implement", ("a reply in the middle of edits",), via="default")
        if signals.conversation_tokens > 6000 and signals.user_turns <= 1:
            return Classification("analyze", ("a long context to read",), via="default")
        if signals.code:
            return Classification("implement", ("code is on the table",), via="default")
        return Classification("chat", ("no stronger signal: a conversational turn",), via="default")

    # Mid-loop: the last message is a tool result.
    if edits:
        tools = ", ".join(sorted(set(edits)))
        return Classification("implement", (f"the agent is editing ({tools})",))
    found = _from_words(signals, similar, min_similarity, vote)
    if found is not None and found.task == "chat":
        text = signals.human_text
        if _QUESTION.match(signals.human_lower) or text.rstrip().endswith(("?", "？")):
            # The agent reads and runs things to answer the user's question: analysis.
            return Classification(
                "analyze",
                ("the agent is looking into the user's question", *found.reasons),
                found.scores,
                "llm" if found.via == "llm" else "rules",
            )
        return found
    if found is not None and found.task != "chat":
        return Classification(
            found.task, ("the agent is working on a task that", *found.reasons), found.scores,
            found.via,
        )  # fmt: skip
    tools = ", ".join(sorted(set(signals.recent_tools))) or "tools"
    return Classification("implement", (f"the agent is at work ({tools})",), via="default")


def classify_learned(
    signals: RequestSignals,
    probabilities: Mapping[TaskClass, float],
    vote: Vote | None = None,
    confident: float = 0.6,
) -> Classification:
    """Classify with the learned model's ``probabilities`` of the user's words and the
    request's shape; rules only where the structure is certain.

    Certain: Cline's condense and hand-off instructions (``meta``); an agent mid-loop whose
    recent tool calls work on the memory bank (``memory``) or edit files (``implement``).
    Everything else is the model's: the user's words decide, never the standing instructions
    of the system prompt. When the model is unsure (its top probability under
    ``confident``) a model's ``vote`` decides, if there is one."""
    scores: dict[str, float] = {task: round(p, 4) for task, p in probabilities.items()}
    if signals.client_instruction:
        return Classification("meta", ("the client asks to condense or hand off the task",))
    mid_loop = signals.in_tool_loop and not signals.user_spoke
    if mid_loop and signals.memory.phase != "none" and signals.recent_tools:
        phase = signals.memory.phase
        return Classification("memory", (f"memory bank {phase}", *signals.memory.reasons[:2]))
    edits = [t for t in signals.recent_tools if t in WRITE_TOOLS]
    if mid_loop and edits:
        tools = ", ".join(sorted(set(edits)))
        return Classification("implement", (f"the agent is editing ({tools})",), scores)
    best = max(probabilities, key=lambda task: probabilities[task])
    if vote is not None and probabilities[best] < confident:
        return Classification(vote[0], (vote[1],), scores, via="llm")
    return Classification(
        best, (f"the learned classifier: {best} ({probabilities[best]:.0%})",), scores, "learned"
    )
