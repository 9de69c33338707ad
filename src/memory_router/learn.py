"""Learning from confirmed misroutes: the user's own examples, and the classifier retrained.

``memory-router review --export`` writes suspected misroutes as candidates; the user confirms
some (``"confirmed": true``, ``proposed_class`` fixed, ``words`` filled in when the log did not
keep them); ``memory-router learn`` reads them here. Confirmed examples accumulate in
``learned_examples.jsonl`` in the user's data folder (de-duplicated by their words: a later
confirmation with another class replaces the earlier), and ``retrain`` turns the whole set
into ``user_task_examples.yaml`` next to it, which the router adds to its labelled examples
at start-up (``settings.load_settings``), and, where ``classifier_train`` offers it, into
retrained weights for the learned classifier.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .domain import TASK_CLASSES, TaskClass
from .locations import USER_CLASSIFIER, USER_TASK_EXAMPLES

__all__ = [
    "LEARNED_EXAMPLES",
    "LEARNED_WEIGHTS",
    "Added",
    "Candidate",
    "CandidateProblem",
    "add_examples",
    "read_candidates",
    "read_learned",
    "retrain",
]

LEARNED_EXAMPLES = "learned_examples.jsonl"
"""Every example the user confirmed, one JSON object a line: words, class, request id."""
LEARNED_WEIGHTS = USER_CLASSIFIER
"""Where ``retrain`` asks the classifier's trainer to write its weights."""


@dataclass(frozen=True)
class Candidate:
    """A confirmed candidate, checked: the user's words and the class they should have had."""

    words: str
    task: TaskClass
    request_id: str | None = None


@dataclass(frozen=True)
class CandidateProblem:
    line: int
    request_id: str | None
    problem: str

    def __str__(self) -> str:
        request = f" (request {self.request_id})" if self.request_id else ""
        return f"line {self.line}{request}: {self.problem}"


def _key(words: str) -> str:
    return " ".join(words.casefold().split())


def read_candidates(path: Path) -> tuple[list[Candidate], int, list[CandidateProblem]]:
    """The confirmed candidates in ``path``, how many lines were left unconfirmed, and what
    is wrong with the confirmed ones that cannot be learned (no words, no or unknown class)."""
    confirmed: list[Candidate] = []
    unconfirmed = 0
    problems: list[CandidateProblem] = []
    classes = ", ".join(TASK_CLASSES)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(CandidateProblem(number, None, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(entry, dict):
            problems.append(CandidateProblem(number, None, "not a JSON object"))
            continue
        request_id = entry.get("request_id")
        request_id = None if request_id is None else str(request_id)
        if entry.get("confirmed") is not True:
            unconfirmed += 1
            continue
        words, task = entry.get("words"), entry.get("proposed_class")
        if not isinstance(words, str) or not words.strip():
            problems.append(
                CandidateProblem(
                    number,
                    request_id,
                    'confirmed but has no "words": the decision log kept no prompt text '
                    "(logging.log_prompts was off); write the user's words in, or set "
                    '"confirmed" to false',
                )
            )
            continue
        found = next((t for t in TASK_CLASSES if t == task), None)
        if found is None:
            what = "no" if task is None else f"unknown class {task!r} in"
            problems.append(
                CandidateProblem(
                    number, request_id, f'{what} "proposed_class": use one of {classes}'
                )
            )
            continue
        confirmed.append(Candidate(words.strip(), found, request_id))
    return confirmed, unconfirmed, problems


def read_learned(data_dir: Path) -> list[dict[str, Any]]:
    """The user's examples so far (``learned_examples.jsonl``), oldest first."""
    path = data_dir / LEARNED_EXAMPLES
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("words"), str):
                entries.append(entry)
    return entries


@dataclass(frozen=True)
class Added:
    """What ``add_examples`` did."""

    added: list[Candidate]
    relabelled: list[Candidate]
    """Already there with another class: now this one."""
    known: int
    """Already there with this class: left as they were."""
    examples: list[tuple[str, str]]
    """The whole set afterwards: (words, class)."""


def add_examples(data_dir: Path, candidates: list[Candidate]) -> Added:
    """Append ``candidates`` to the user's examples, de-duplicated by their words."""
    entries = read_learned(data_dir)
    index = {_key(entry["words"]): i for i, entry in enumerate(entries)}
    added: list[Candidate] = []
    relabelled: list[Candidate] = []
    known = 0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for candidate in candidates:
        entry = {
            "words": candidate.words,
            "class": candidate.task,
            "request_id": candidate.request_id,
            "added": stamp,
        }
        at = index.get(_key(candidate.words))
        if at is None:
            index[_key(candidate.words)] = len(entries)
            entries.append(entry)
            added.append(candidate)
        elif entries[at].get("class") != candidate.task:
            entries[at] = entry
            relabelled.append(candidate)
        else:
            known += 1
    if added or relabelled:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LEARNED_EXAMPLES
        temporary = path.with_suffix(".jsonl.tmp")
        temporary.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
        temporary.replace(path)
    examples = [
        (str(e["words"]), str(e["class"])) for e in entries if e.get("class") in TASK_CLASSES
    ]
    return Added(added, relabelled, known, examples)


def _write_task_examples(examples: list[tuple[str, str]], path: Path) -> None:
    """``examples`` in ``task_examples.yaml``'s format: class -> list of texts."""
    import yaml

    by_class: dict[str, list[str]] = {}
    for words, task in examples:
        texts = by_class.setdefault(task, [])
        if words not in texts:
            texts.append(words)
    ordered = {task: by_class[task] for task in TASK_CLASSES if task in by_class}
    head = (
        "# Written by `memory-router learn` from learned_examples.jsonl: edit that file (or\n"
        "# confirm more candidates) rather than this one. Read by the router at start-up, in\n"
        "# addition to the configured task_examples.yaml.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(ordered, allow_unicode=True, sort_keys=False) if ordered else "{}\n"
    temporary = path.with_suffix(".yaml.tmp")
    temporary.write_text(head + text, encoding="utf-8")
    temporary.replace(path)


def retrain(examples: list[tuple[str, str]], out: Path) -> dict[str, Any]:
    """Make ``examples`` (words, class) take effect: (a) as the user's task examples,
    ``user_task_examples.yaml`` next to ``out`` (the example vote, from the next start-up);
    (b) through ``classifier_train.retrain_with(examples, out)`` where it exists, which
    trains the learned classifier on its base set plus these and writes its weights to
    ``out``. Returns what was done: ``task_examples`` (the file), ``examples`` (how many),
    ``classifier`` (``out``, or None when skipped), ``trained`` (what the trainer returned)
    and ``note`` (why it was skipped)."""
    unknown = sorted({task for _, task in examples if task not in TASK_CLASSES})
    if unknown:
        raise ValueError(f"unknown task classes {unknown}: use one of {', '.join(TASK_CLASSES)}")
    task_examples = out.parent / USER_TASK_EXAMPLES
    _write_task_examples(examples, task_examples)
    result: dict[str, Any] = {
        "examples": len(examples),
        "task_examples": str(task_examples),
        "classifier": None,
        "trained": None,
        "note": None,
    }
    try:  # by name: the trainer and its retrain_with are being written alongside
        trainer = importlib.import_module("memory_router.classifier_train")
    except ImportError as exc:  # it, or its training dependencies (scikit-learn), missing
        result["note"] = f"the learned classifier was not retrained: {exc}"
        return result
    retrain_with = getattr(trainer, "retrain_with", None)
    if retrain_with is None:
        result["note"] = (
            "the learned classifier was not retrained: memory_router.classifier_train has "
            "no retrain_with yet"
        )
        return result
    result["trained"] = retrain_with(examples, out)
    result["classifier"] = str(out)
    return result
