"""The routing corpus: well formed, large and diverse enough, split so that nothing of the
test split's writers or projects is in train, and every case renders as its client sends it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from memory_router.wire.openai import ChatCompletionRequest, parse_request

from .corpus import CORPUS_DIR, load_corpus

LANGS = {"en", "de", "es", "fr", "pt", "zh", "ja"}
CLASSES = {"memory", "implement", "analyze", "chat", "meta"}


def test_every_writer_file_passes_the_checker() -> None:
    import subprocess
    import sys

    files = sorted(str(p) for p in CORPUS_DIR.glob("w*.yaml"))
    result = subprocess.run(
        [sys.executable, str(CORPUS_DIR / "check.py"), *files],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_splits_keep_writers_and_projects_apart() -> None:
    splits = yaml.safe_load((CORPUS_DIR / "splits.yaml").read_text(encoding="utf-8"))
    writers = [w for members in splits.values() for w in members]
    assert len(writers) == len(set(writers))
    assert {Path(p).stem for p in CORPUS_DIR.glob("w*.yaml")} <= set(writers)
    corpus = load_corpus()
    projects = {name: {c.project for c in cases} for name, cases in corpus.items()}
    learned_from = projects["train"] | projects["dev"] | projects.get("candidates", set())
    assert not projects["test"] & learned_from
    assert not projects["dev"] & (projects["train"] | projects.get("candidates", set()))


def test_the_corpus_is_large_and_diverse() -> None:
    corpus = load_corpus()
    every = [c for cases in corpus.values() for c in cases]
    assert len(every) >= 2000
    assert {c.lang for c in every} >= LANGS
    assert {c.case.label for c in every} == CLASSES
    assert len({c.project for c in every}) >= 10
    clients = Counter(c.client for c in every)
    assert len(clients) >= 7 and clients["cline"] < len(every) * 0.75
    styles = Counter(c.case.style for c in every)
    assert styles["native"] and styles["xml"] and styles["plain"]
    test = corpus["test"]
    assert {c.lang for c in test} == LANGS
    assert all(n >= 30 for n in Counter(c.case.label for c in test).values())


def test_every_case_is_a_valid_request() -> None:
    for cases in load_corpus().values():
        for item in cases:
            request = parse_request(ChatCompletionRequest, item.case.body)
            assert request.messages, item.case.id
            last = request.messages[-1]
            assert last.role in ("user", "tool", "system"), item.case.id
