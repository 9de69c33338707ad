"""The learned task classifier: a linear model over what the user wrote and how the request
is shaped.

Three blocks of features, one weight matrix each:

- character n-grams (3 to 5 characters, within words, lower case) of the words the model
  reads, hashed into ``2**NGRAM_BITS`` buckets and L2-normalised: they carry across scripts,
  typos and inflections, where word lists do not;
- the sentence embedding of those words (all-MiniLM-L6-v2, the memory bank's embedder), when
  the router has one loaded; zeros otherwise (the model is trained with that case too);
- the request's structure (``STRUCTURE``): the client's shape, Cline's mode, where the request
  stands in an agent loop, what the last tools did, whether the memory bank was touched, pasted
  code or a log, length. Never the system prompt's standing instructions.

The words the model reads (``words_of``): the user's latest words, and an instruction a client
sent as a system message after them or as a short system prompt of its own (housekeeping
prompts come that way). Scores are ``softmax(logits / temperature)``; the temperature is fitted
on the development split, so the probabilities are calibrated.

Inference is numpy only; ``train`` (scikit-learn) builds the weights, and lives in
``memory_router.classifier_train``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain import TaskClass
from ..wire.openai import ChatCompletionRequest
from .classify import Classification, classify
from .signals import EDIT_TOOLS, LOOK_TOOLS, RequestSignals

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "EMBED_CHARS",
    "EMBED_DIM",
    "FEATURE_VERSION",
    "NGRAM_BITS",
    "STRUCTURE",
    "LearnedModel",
    "default_weights",
    "ngram_counts",
    "structure",
    "words_of",
]

FEATURE_VERSION = 4
"""Bump when a feature changes: weights of another version are refused."""
NGRAM_BITS = 15
EMBED_DIM = 384
EMBED_CHARS = 300  # the words embedded: the head of the user's message
_WORDS = 1200  # characters of the words the model reads: the head says what is asked
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# Kana, CJK ideographs and Hangul: written without spaces, about two characters a word.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")

STRUCTURE = (
    "client:native", "client:xml", "client:plain",
    "mode:plan", "mode:act",
    "first_turn", "user_spoke", "in_tool_loop", "compacted",
    "recent:edit", "recent:look", "recent:none",
    "bank:read", "bank:update", "bank:initialize",
    "bank_files_read",
    "code", "pasted", "question",
    "len:1", "len:2-5", "len:6-20", "len:21-80", "len:81+",
    "turns:1", "turns:2", "turns:3+",
    "system:short", "system:trailing", "no_words",
    "rules:memory", "rules:implement", "rules:analyze", "rules:chat", "rules:meta",
    "via:rules", "via:keywords", "via:default",
    "words:housekeeping", "words:bank", "words:small_talk", "words:imperative",
    "words:implement", "words:analyze",
)  # fmt: skip
"""The structure features, in the order of the weights' rows."""


def _last_system(request: ChatCompletionRequest) -> str:
    """An instruction sent as a system message after the conversation's last user message."""
    messages = request.messages
    if len(messages) > 1 and messages[-1].role in ("system", "developer"):
        return messages[-1].text()
    return ""


def _short_system(request: ChatCompletionRequest, signals: RequestSignals) -> str:
    """A client's own short system prompt (not Cline's): housekeeping jobs come this way."""
    if signals.tool_style != "none" or not request.messages:
        return ""
    first = request.messages[0]
    if first.role not in ("system", "developer") or len(request.messages) < 2:
        return ""
    text = first.text()
    return text if len(text) < 1500 else ""


def words_of(request: ChatCompletionRequest, signals: RequestSignals) -> str:
    """The words the model reads: the user's latest, then a client's own instruction."""
    parts = [signals.human_text[:_WORDS]]
    if trailing := _last_system(request):
        parts.append(trailing[:400])
    elif short := _short_system(request, signals):
        parts.append(short[:400])
    return "\n".join(part for part in parts if part).strip()


def structure(
    request: ChatCompletionRequest, signals: RequestSignals, ruled: Classification | None = None
) -> list[float]:
    """The structure features of ``STRUCTURE``, as 0/1 values. ``ruled``: what the rules make
    of the request (``classify(signals)``), when the caller has it already."""
    on: set[str] = {f"client:{signals.tool_style if signals.tool_style != 'none' else 'plain'}"}
    if signals.memory.mode == "plan":
        on.add("mode:plan")
    elif signals.tool_style != "none":
        on.add("mode:act")
    for flag in ("first_turn", "user_spoke", "in_tool_loop", "compacted", "code"):
        if getattr(signals, flag):
            on.add(flag)
    recent = set(signals.recent_tools)
    if recent & EDIT_TOOLS:
        on.add("recent:edit")
    if recent & LOOK_TOOLS:
        on.add("recent:look")
    if not recent:
        on.add("recent:none")
    if signals.memory.phase != "none":
        on.add(f"bank:{signals.memory.phase}")
    if signals.memory.files_read:
        on.add("bank_files_read")
    text = signals.human_text
    if text.count("\n") >= 8 or len(text) > 1500:
        on.add("pasted")
    if text.rstrip().endswith(("?", "？")):
        on.add("question")
    words = word_count(text)
    on.add(
        "len:1" if words <= 1 else "len:2-5" if words <= 5 else "len:6-20" if words <= 20
        else "len:21-80" if words <= 80 else "len:81+"
    )  # fmt: skip
    turns = signals.user_turns
    on.add("turns:1" if turns <= 1 else "turns:2" if turns == 2 else "turns:3+")
    if _last_system(request):
        on.add("system:trailing")
    elif _short_system(request, signals):
        on.add("system:short")
    if not text:
        on.add("no_words")
    # What the hand-written rules make of it (no embedding vote): evidence the model weighs
    # by how well it held on words it was not written for, never a verdict.
    ruled = ruled or classify(signals)
    on.update((f"rules:{ruled.task}", f"via:{ruled.via}"))
    flags: tuple[tuple[bool, str], ...] = (
        (signals.housekeeping, "words:housekeeping"),
        (signals.mentions_memory_bank, "words:bank"),
        (signals.small_talk, "words:small_talk"),
        (signals.imperative, "words:imperative"),
        (signals.implement_words > 0, "words:implement"),
        (signals.analyze_words > 0, "words:analyze"),
    )
    for present, name in flags:
        if present:
            on.add(name)
    return [1.0 if name in on else 0.0 for name in STRUCTURE]


def word_count(text: str) -> int:
    """Words in ``text``: whitespace-separated ones, and a word per two characters of Chinese,
    Japanese or Korean script (written without spaces, a sentence would count as one)."""
    cjk = len(_CJK.findall(text))
    if not cjk:
        return len(text.split())
    rest = _CJK.sub(" ", text)
    return sum(1 for word in rest.split() if any(c.isalnum() for c in word)) + (cjk + 1) // 2


@lru_cache(maxsize=2048)
def ngram_counts(text: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Hashed character 3- to 5-grams of each word (padded with spaces), L2-normalised.

    Returns bucket ids and their weights; the same text always hashes the same (crc32, not
    Python's per-process ``hash``). Memoized: a tool loop resends the same words each turn."""
    counts: dict[int, float] = {}
    mask = (1 << NGRAM_BITS) - 1
    for token in _TOKEN.findall(text.lower()[:_WORDS]):
        padded = f" {token} "
        for n in (3, 4, 5):
            for i in range(max(len(padded) - n + 1, 1)):
                bucket = zlib.crc32(padded[i : i + n].encode()) & mask
                counts[bucket] = counts.get(bucket, 0.0) + 1.0
    if not counts:
        return (), ()
    norm = sum(v * v for v in counts.values()) ** 0.5
    ids = tuple(counts)
    return ids, tuple(counts[i] / norm for i in ids)


@dataclass(frozen=True)
class LearnedModel:
    """The weights of the classifier and how to score with them."""

    classes: tuple[TaskClass, ...]
    ngram: NDArray[np.float32]  # (2**NGRAM_BITS, classes)
    embed: NDArray[np.float32]  # (EMBED_DIM, classes)
    struct: NDArray[np.float32]  # (len(STRUCTURE), classes)
    bias: NDArray[np.float32]  # (classes,)
    temperature: float
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> LearnedModel:
        """Read weights written by ``classifier_train.save``; refuse another feature version."""
        import json

        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("feature_version") != FEATURE_VERSION or list(meta["structure"]) != list(
                STRUCTURE
            ):
                raise ValueError(f"{path}: weights of another feature version; retrain them")
            return cls(
                classes=tuple(meta["classes"]),
                ngram=data["ngram"].astype(np.float32),
                embed=data["embed"].astype(np.float32),
                struct=data["struct"].astype(np.float32),
                bias=data["bias"].astype(np.float32),
                temperature=float(meta["temperature"]),
                meta=meta,
            )

    def logits(
        self, text: str, embedding: Sequence[float] | None, struct: Sequence[float]
    ) -> NDArray[np.float32]:
        import numpy as np

        ids, values = ngram_counts(text)
        out = self.bias.copy()
        if ids:
            out += np.asarray(values, dtype=np.float32) @ self.ngram[list(ids)]
        if embedding is not None:
            out += np.asarray(embedding, dtype=np.float32) @ self.embed
        out += np.asarray(struct, dtype=np.float32) @ self.struct
        return out

    def probabilities(
        self, text: str, embedding: Sequence[float] | None, struct: Sequence[float]
    ) -> dict[TaskClass, float]:
        """Calibrated class probabilities for one request's features."""
        import numpy as np

        z = self.logits(text, embedding, struct) / self.temperature
        z = np.exp(z - z.max())
        p = z / z.sum()
        return {task: float(p[i]) for i, task in enumerate(self.classes)}


def default_weights() -> Path:
    """The shipped weights (trained on the corpus's train split)."""
    return Path(__file__).with_name("classifier.npz")
