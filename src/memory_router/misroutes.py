"""Suspected misroutes in the decision log: what went wrong in real use, and why it is suspected.

Read off the records alone (``decision_log``), each request's record carrying, besides its
class and model, a hash of the user's latest words and their count (``words_hash``,
``words``), whether they open with a correction (``correction``) and the key of the task's
first request (``opening``): a task's requests share it, where ``session`` changes after the
first answer. The user's words themselves are there only when ``logging.log_prompts`` is on.

A request is suspected when:

- ``repeat``: the user's next words in its task, right after its answer, are the same
  (the same hash, or near-identical text when prompts are logged);
- ``correction``: they open with a correction ("no,", "that's not what I asked", "nein",
  "non,", "不是", "違う"...);
- ``flip``: its task went class A, then this request's B, then A again (B lasting at most
  ``FLIP_SPAN`` requests);
- ``error``: its outcome was an error;
- ``client_gone_after_load``: it loaded a model and the client left before the answer;
- ``load_served_one``: it loaded a model that served nothing else: evicted before another
  request, or its task's next request went elsewhere and no other request used it;
- ``slow``: its latency was above the log's 95th percentile, or more than 3x its model's
  median, and at least ``SLOW_FLOOR_MS``.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from difflib import SequenceMatcher
from itertools import pairwise
from typing import Any

from .domain import TASK_CLASSES, TaskClass

__all__ = [
    "KINDS",
    "Reason",
    "Suspect",
    "corrects",
    "counts",
    "find_misroutes",
    "parse_duration",
    "recent",
    "words_hash",
]

KINDS = (
    "repeat",
    "correction",
    "flip",
    "error",
    "client_gone_after_load",
    "load_served_one",
    "slow",
)
FLIP_SPAN = 2
"""The most requests of the other class a flip may last (A, B, B, A is still one)."""
SLOW_FLOOR_MS = 1000.0
"""Faster than this is never an outlier: nobody waits on milliseconds."""
NEAR = 0.9
"""Two texts at least this similar (difflib's ratio, normalised) are a repeat."""

_CORRECTION = re.compile(
    r"""^(?:
        (?:no|nope|nah|wrong|incorrect)\b\s*[,.!:;-]   # "no, ...", "wrong."
      | nope\b | not\s+(?:that|this|what\s+i)\b
      | (?:that'?s|that\s+is|this\s+is|it'?s)\s+(?:not|wrong)\b
      | i\s+(?:said|meant|asked)\b | i\s+did\s*n[o']t\s+(?:ask|mean|say|want)\b
      | (?:nein|falsch)\b | das\s+(?:ist|war)\s+(?:nicht|falsch)\b | ich\s+meinte\b
      | non\s*[,.!] | (?:ce|c')\s*n'est\s+pas\b | pas\s+(?:ça|ca)\b | je\s+voulais\b
      | (?:eso|esto)\s+no\b | no\s+es\s+(?:lo|eso)\b | me\s+refer[íi]a\b
      | n[ãa]o\s*[,.!] | n[ãa]o\s+é\s+isso\b
      | non\s+è\b | нет\b | не\s+то\b
      | 不是 | 不对 | 不對 | 错了 | 錯了 | 我的意思是
      | 違う | 違います | ちがう | そうじゃない | いいえ
      | 아니
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_PUNCT = re.compile(r"[^\w\s]")


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def words_hash(text: str) -> str | None:
    """The first 12 hex digits of the SHA-256 of the user's words (case and spacing
    ignored), or None when there are none: a repeat is found without keeping the words."""
    normal = _normal(text)
    return hashlib.sha256(normal.encode()).hexdigest()[:12] if normal else None


def corrects(text: str) -> bool:
    """Whether the user's words open with a correction of the answer before."""
    return bool(_CORRECTION.match(text.replace("’", "'").lstrip(" \t\n\"'«“*>-")))


def _near(a: str, b: str) -> bool:
    a, b = _PUNCT.sub("", _normal(a)), _PUNCT.sub("", _normal(b))
    return bool(a and b) and (a == b or SequenceMatcher(None, a, b).ratio() >= NEAR)


def parse_duration(text: str) -> float:
    """Seconds in ``30m``, ``2h``, ``7d``, ``1w``, ``90s`` or ``1h30m``; ValueError else."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip().lower())
    if not parts or re.sub(r"[\d.\ssmhdw]", "", text.lower()):
        raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 30m, 2h, 7d or 1w")
    return sum(float(number) * units[unit] for number, unit in parts)


def _ts(record: Mapping[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(record["ts"])).timestamp()
    except (KeyError, ValueError):
        return None


def recent(records: Iterable[dict[str, Any]], seconds: float, now: float) -> list[dict[str, Any]]:
    """The records written in the last ``seconds`` before ``now`` (epoch seconds)."""
    return [r for r in records if (ts := _ts(r)) is not None and ts >= now - seconds]


@dataclass(frozen=True)
class Reason:
    kind: str
    """One of ``KINDS``."""
    detail: str
    proposed: TaskClass | None = None
    """The class this reason suggests the request should have had, if any."""


@dataclass
class Suspect:
    """One request suspected of a misroute, with every reason it is suspected."""

    record: dict[str, Any]
    reasons: list[Reason] = field(default_factory=list)

    @property
    def request_id(self) -> str | None:
        value = self.record.get("request_id")
        return None if value is None else str(value)

    @property
    def proposed_class(self) -> TaskClass | None:
        return next((r.proposed for r in self.reasons if r.proposed is not None), None)

    @property
    def words(self) -> str | None:
        """The user's words, when the log kept them (``log_prompts``)."""
        prompt = _signals(self.record).get("prompt")
        return prompt if isinstance(prompt, str) and prompt.strip() else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "ts": self.record.get("ts"),
            "session": self.record.get("session"),
            "class": self.record.get("class"),
            "model": self.record.get("model"),
            "reasons": [
                {"kind": r.kind, "detail": r.detail, "proposed_class": r.proposed}
                for r in self.reasons
            ],
            "proposed_class": self.proposed_class,
            "words": self.words,
        }

    def candidate(self) -> dict[str, Any]:
        """The line ``review --export`` writes, for the user to confirm and ``learn``."""
        return {
            "request_id": self.request_id,
            "session": self.record.get("session"),
            "words": self.words,
            "class_given": self.record.get("class"),
            "proposed_class": self.proposed_class,
            "reason": "; ".join(f"{r.kind}: {r.detail}" for r in self.reasons),
            "confirmed": False,
        }


def _signals(record: Mapping[str, Any]) -> Mapping[str, Any]:
    signals = record.get("signals")
    return signals if isinstance(signals, Mapping) else {}


def _task(record: Mapping[str, Any]) -> str | None:
    """The key of the task a routed record belongs to (its first request's), or None."""
    if not record.get("routed") or record.get("class") is None:
        return None
    opening = _signals(record).get("opening")
    session = record.get("session")
    return str(opening or session) if (opening or session) else None


def _id(record: Mapping[str, Any]) -> str:
    return str(record.get("request_id") or f"{record.get('ts', '?')} ({record.get('model')})")


def _class(value: Any) -> TaskClass | None:
    return next((task for task in TASK_CLASSES if task == value), None)


def _next_words(before: Mapping[str, Any], after: Mapping[str, Any]) -> Reason | None:
    """Why ``after`` (the next request of ``before``'s task) says ``before`` went wrong."""
    a, b = _signals(before), _signals(after)
    if (
        before.get("outcome") not in ("ok", "fallback")
        or b.get("in_tool_loop")
        or not b.get("words", 1)
    ):
        return None  # a retry after an error, or the agent's own loop: not the user
    earlier, later = a.get("messages"), b.get("messages")
    if isinstance(earlier, int) and isinstance(later, int) and later <= earlier:
        return None  # the same conversation again: a client's retry, not the user
    changed = after.get("class") if after.get("class") != before.get("class") else None
    proposed = _class(changed)
    same_hash = a.get("words_hash") is not None and a.get("words_hash") == b.get("words_hash")
    prompts = isinstance(a.get("prompt"), str) and isinstance(b.get("prompt"), str)
    if same_hash or (prompts and _near(a["prompt"], b["prompt"])):
        then = f" (then classed {changed})" if changed else ""
        detail = f"the user repeated it after the answer: {_id(after)}{then}"
        return Reason("repeat", detail, proposed)
    prompt = b.get("prompt")
    if b.get("correction") or (isinstance(prompt, str) and corrects(prompt)):
        quoted = f' "{" ".join(prompt.split())[:60]}"' if isinstance(prompt, str) else ""
        detail = f"the user corrected the answer: {_id(after)}{quoted}"
        return Reason("correction", detail, proposed)
    return None


def _by_task(records: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    tasks: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        if (task := _task(record)) is not None:
            tasks[task].append(index)
    return tasks


def _flips(records: Sequence[dict[str, Any]], indices: list[int]) -> dict[int, Reason]:
    """A, B, A within one task: the B requests, with A proposed."""
    runs: list[tuple[str, list[int]]] = []
    for index in indices:
        task = records[index].get("class")
        if task == "meta":  # housekeeping (titles, summaries) is no change of mind
            continue
        if runs and runs[-1][0] == task:
            runs[-1][1].append(index)
        else:
            runs.append((str(task), [index]))
    found: dict[int, Reason] = {}
    for (before, _), (middle, flipped), (after, _) in zip(runs, runs[1:], runs[2:], strict=False):
        if before == after and len(flipped) <= FLIP_SPAN:
            detail = f"its task went {before} → {middle} → {after}"
            for index in flipped:
                found[index] = Reason("flip", detail, _class(after))
    return found


def _single_loads(records: Sequence[dict[str, Any]]) -> dict[int, Reason]:
    """Loads whose model served nothing else (see the module's docstring)."""
    found: dict[int, Reason] = {}
    for index, record in enumerate(records):
        model = record.get("model")
        if not record.get("caused_load") or not model:
            continue
        task = _task(record)
        elsewhere: dict[str, Any] | None = None
        for later in records[index + 1 :]:
            if later.get("model") == model:
                break  # it served another request
            if model in (later.get("evicted") or ()):
                found[index] = Reason(
                    "load_served_one",
                    f"loaded {model}, which {_id(later)} evicted before it served another request",
                )
                break
            if elsewhere is None and task is not None and _task(later) == task:
                elsewhere = later
        else:
            if elsewhere is not None:
                found[index] = Reason(
                    "load_served_one",
                    f"loaded {model}, but its task's next request {_id(elsewhere)} went to "
                    f"{elsewhere.get('model')} and {model} served nothing else",
                )
    return found


def _slow(records: Sequence[dict[str, Any]]) -> dict[int, Reason]:
    """Latency above the log's p95 (nearest rank), or over 3x the median for its model."""
    latencies = {
        i: float(r["latency_ms"])
        for i, r in enumerate(records)
        if isinstance(r.get("latency_ms"), int | float)
    }
    if not latencies:
        return {}
    ordered = sorted(latencies.values())
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
    per_model: dict[str, list[float]] = defaultdict(list)
    for i, latency in latencies.items():
        per_model[str(records[i].get("model"))].append(latency)
    medians = {m: statistics.median(v) for m, v in per_model.items() if len(v) >= 3}
    found: dict[int, Reason] = {}
    for i, latency in latencies.items():
        if latency < SLOW_FLOOR_MS:
            continue
        model = str(records[i].get("model"))
        why = []
        if latency > p95:
            why.append(f"above the log's p95 ({p95 / 1000:.1f} s)")
        median = medians.get(model)
        if median is not None and latency > 3 * median:
            why.append(f"over 3x the median for {model} ({median / 1000:.1f} s)")
        if why:
            detail = f"{latency / 1000:.1f} s, {' and '.join(why)}"
            if records[i].get("caused_load"):
                load = records[i].get("load_s")
                detail += f"; it loaded {model}" + (f" ({load} s)" if load is not None else "")
            found[i] = Reason("slow", detail)
    return found


def find_misroutes(records: Sequence[dict[str, Any]]) -> list[Suspect]:
    """Every suspected misroute in ``records`` (the log's order), in that order."""
    reasons: dict[int, list[Reason]] = defaultdict(list)
    for indices in _by_task(records).values():
        for before, after in pairwise(indices):
            if (reason := _next_words(records[before], records[after])) is not None:
                reasons[before].append(reason)
        for index, reason in _flips(records, indices).items():
            reasons[index].append(reason)
    for index, record in enumerate(records):
        outcome = str(record.get("outcome") or "")
        if outcome.startswith("error"):
            reasons[index].append(Reason("error", f"outcome {outcome}"))
        elif outcome == "client_gone" and record.get("caused_load"):
            model = record.get("model")
            reasons[index].append(
                Reason(
                    "client_gone_after_load",
                    f"it loaded {model}; the client left before the answer",
                )
            )
    for found in (_single_loads(records), _slow(records)):
        for index, reason in found.items():
            reasons[index].append(reason)
    return [Suspect(records[i], reasons[i]) for i in sorted(reasons)]


def counts(suspects: Iterable[Suspect]) -> dict[str, int]:
    """Suspected requests by reason (a request suspected twice counts under both)."""
    found = {kind: 0 for kind in KINDS}
    for suspect in suspects:
        for kind in {r.kind for r in suspect.reasons}:
            found[kind] = found.get(kind, 0) + 1
    return found
