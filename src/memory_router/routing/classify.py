"""The task class of a request, from cheap signals first and an embedding vote second.

Order of evidence, strongest first:

1. client housekeeping wording (a title, a summary of the conversation, follow-ups, a commit
   message) -> ``meta``;
2. the memory-bank phase of the turn (initialize, read, update) or a question about the bank
   -> ``memory``;
3. the agent's tool loop: recent edits or commands -> ``implement``; recent reads only -> the
   class of the task the user gave;
4. the user's latest words: imperative change verbs and implementation nouns against
   explanation, review and planning words; Plan mode leans to ``analyze``;
5. when those are weak, the nearest labelled example by embedding of the user's words (never
   the system prompt), if it is similar enough;
6. otherwise: short small talk or a general question -> ``chat``; a long context to read ->
   ``analyze``; code on the table -> ``implement``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..settings import TaskClass
from .signals import RequestSignals

__all__ = ["Classification", "classify"]

_PROJECT_REF = re.compile(
    r"[/\\]|\.\w{1,5}\b|`|\b[a-z]+_[a-z_]+\b|\b[a-z]+[A-Z]\w*\b"
    r"|\b(?:this|our|my|the)\s+(?:code|repo|repository|project|codebase|module|file|function"
    r"|class|service|app|test|tests|api|endpoint|component|schema)\b",
)
_QUESTION = re.compile(
    r"\s*(?:what|how|why|when|where|which|who|is|are|does|do|can|could|should|would)\b", re.I
)
_ASK_VERB = re.compile(
    r"\b(?:explain|review|analy[sz]e|investigate|compare|plan|design|audit|summari[sz]e"
    r"|walk me through|assess|evaluate|diagnose)\b",
    re.IGNORECASE,
)
_LONG_CONTEXT = 6_000  # conversation tokens (no system prompt) beyond which reading is analysis
_DECISIVE = 2.0  # keyword margin that needs no embedding vote


@dataclass(frozen=True, slots=True)
class Classification:
    task: TaskClass
    reasons: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    """Keyword scores and example similarities, for the explanation."""
    via: str = "rules"
    """Which evidence decided: "rules", "keywords", "examples" or "default"."""


def _keyword_scores(signals: RequestSignals, words_of_task: bool) -> tuple[float, float]:
    implement = 2.0 * signals.imperative + min(signals.implement_words, 4) * 0.75
    analyze = min(signals.analyze_words, 4) * 1.25
    if signals.memory.mode == "plan":
        analyze += 1.5
    if signals.code and not words_of_task:
        implement += 0.5
    return implement, analyze


def _general_question(signals: RequestSignals) -> bool:
    """A short question about the world, not the project: chat, not analysis."""
    text = signals.human_text
    return (
        bool(_QUESTION.match(text) or text.rstrip().endswith("?"))
        and not _ASK_VERB.search(text)
        and len(text.split()) <= 25
        and not signals.code
        and not signals.imperative
        and signals.user_turns <= 2
        and not _PROJECT_REF.search(text)
    )


def classify(
    signals: RequestSignals,
    similar: Mapping[TaskClass, float] | None = None,
    min_similarity: float = 0.35,
) -> Classification:
    """Classify one request. ``similar``: best cosine to each class's labelled examples."""
    if signals.housekeeping and not signals.in_tool_loop:
        return Classification("meta", ("client housekeeping prompt (title, summary, follow-up)",))
    if signals.memory_bank:
        phase = signals.memory.phase
        return Classification("memory", (f"memory bank {phase}", *signals.memory.reasons[:2]))
    if signals.mentions_memory_bank and not signals.imperative:
        return Classification("memory", ("the user asks about the memory bank",))

    if signals.in_tool_loop or signals.recent_tools:
        if signals.recent_edit:
            tools = ", ".join(sorted({t for t in signals.recent_tools}))
            return Classification("implement", (f"the agent is editing or running ({tools})",))
        implement, analyze = _keyword_scores(signals, words_of_task=True)
        if signals.recent_look and (implement or analyze):
            if analyze > implement:
                return Classification(
                    "analyze",
                    ("the agent is reading files for a task that asks for explanation or review",),
                    {"implement": implement, "analyze": analyze},
                    via="keywords",
                )
            return Classification(
                "implement",
                ("the agent is reading files for a task that changes code",),
                {"implement": implement, "analyze": analyze},
                via="keywords",
            )

    implement, analyze = _keyword_scores(signals, words_of_task=False)
    scores: dict[str, float] = {"implement": implement, "analyze": analyze}
    if signals.small_talk and implement == 0 and analyze == 0:
        return Classification("chat", ("small talk",), scores)
    margin = abs(implement - analyze)
    if margin >= _DECISIVE or (margin > 0 and not similar):
        task: TaskClass = "implement" if implement > analyze else "analyze"
        if task == "analyze" and _general_question(signals) and signals.memory.mode != "plan":
            return Classification("chat", ("a short general question",), scores, "keywords")
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
    if implement > analyze:
        return Classification("implement", ("the request leans to code changes",), scores)
    if analyze > implement:
        if _general_question(signals):
            return Classification("chat", ("a short general question",), scores, "default")
        return Classification("analyze", ("the request leans to explanation",), scores)
    if signals.conversation_tokens > _LONG_CONTEXT:
        return Classification("analyze", ("a long context to read",), scores, "default")
    if signals.code:
        return Classification("implement", ("code is on the table",), scores, "default")
    return Classification("chat", ("no stronger signal: a conversational turn",), scores, "default")
