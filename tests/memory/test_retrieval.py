"""Retrieval quality with the real model: paraphrased questions must find their file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memory_router.memory.embedder import SentenceTransformerEmbedder
from memory_router.memory.indexer import sync_bank
from memory_router.memory.store import VectorStore
from memory_router.memory.types import Bank
from tests.memory.conftest import write_bank

# (question, the file whose facts answer it). Worded as a user would ask, not copied.
QUESTIONS: list[tuple[str, str]] = [
    ("Who is the app meant for and in which waters?", "projectbrief"),
    ("How many days must the app keep working offline?", "projectbrief"),
    ("How many tide stations are covered?", "projectbrief"),
    ("What month is the 1.0 release planned for?", "projectbrief"),
    ("What user numbers are we aiming for?", "projectbrief"),
    ("Are weather forecasts part of the product?", "projectbrief"),
    ("What accident motivated building this?", "productContext"),
    ("Why are the existing tide apps not good enough?", "productContext"),
    ("How does the user pick a safe time to leave?", "productContext"),
    ("How big are the buttons, for people in gloves?", "productContext"),
    ("What is the team focused on at the moment?", "activeContext"),
    ("Which date library did we switch to recently?", "activeContext"),
    ("Was there a bug with daylight saving time?", "activeContext"),
    ("Which kayak club will try out the app?", "activeContext"),
    ("Will there be a server that computes predictions?", "activeContext"),
    ("How is the code split between the interface and the core?", "systemPatterns"),
    ("How many constituents does the tide engine add up?", "systemPatterns"),
    ("How are route edits undone?", "systemPatterns"),
    ("Which components does the route planner rely on?", "systemPatterns"),
    ("What language and UI framework is the app written in?", "techContext"),
    ("What commands set up a development environment?", "techContext"),
    ("What is the maximum app size?", "techContext"),
    ("Where does the harmonic data come from and what licence applies?", "techContext"),
    ("How much battery may GPS tracking use?", "techContext"),
    ("Which features already work?", "progress"),
    ("What remains to be built?", "progress"),
    ("How many beta testers are there?", "progress"),
    ("What are the known issues right now?", "progress"),
    ("Is the Android app crashing anywhere?", "progress"),
]

REEF_FILES = {
    "projectbrief.md": """\
# Project Brief: Reefwatch

Reefwatch counts bleached coral colonies from underwater drone footage.

## Goals

Survey 30 reef transects on the Ningaloo coast every month.
""",
    "progress.md": """\
# Progress

## Current Status

The colony classifier reaches 91% precision on the March survey.
""",
}


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> Iterator[tuple[VectorStore, Bank, Bank]]:
    root = tmp_path_factory.mktemp("retrieval")
    store = VectorStore.open(path=root / "store")
    harbor = write_bank(root / "harborlight")
    reef = write_bank(root / "reefwatch", REEF_FILES)
    for bank in (harbor, reef):
        sync_bank(bank, store, embedder, max_bytes=100_000, max_tokens=400)
    yield store, harbor, reef
    store.close()


def test_questions_find_their_file_in_the_top_three(
    indexed: tuple[VectorStore, Bank, Bank], embedder: SentenceTransformerEmbedder
) -> None:
    store, harbor, _ = indexed
    misses = []
    for question, stem in QUESTIONS:
        hits = store.query(embedder.embed_query(question), 3, workspace=str(harbor.workspace))
        assert len(hits) == 3
        files = [Path(hit.file).stem for hit in hits]
        if stem not in files:
            misses.append(f"{question!r}: wanted {stem}, got {files}")
    score = 1 - len(misses) / len(QUESTIONS)
    print(f"retrieval top-3: {len(QUESTIONS) - len(misses)}/{len(QUESTIONS)} = {score:.0%}")
    print("\n".join(misses))
    assert score >= 0.9, misses


def test_search_in_one_workspace_or_across_all(
    indexed: tuple[VectorStore, Bank, Bank], embedder: SentenceTransformerEmbedder
) -> None:
    store, harbor, reef = indexed
    coral = embedder.embed_query("How many reef transects get surveyed each month?")
    everywhere = store.query(coral, 3)
    assert (everywhere[0].workspace, everywhere[0].file) == (
        str(reef.workspace),
        "memory-bank/projectbrief.md",
    )
    assert everywhere[0].heading_path == ("Project Brief: Reefwatch", "Goals")
    assert (everywhere[0].first_line, everywhere[0].last_line) == (5, 7)
    assert "Ningaloo" in everywhere[0].text
    assert 0.3 < everywhere[0].score <= 1.0
    assert [h.score for h in everywhere] == sorted((h.score for h in everywhere), reverse=True)

    only_harbor = store.query(coral, 5, workspace=str(harbor.workspace))
    assert len(only_harbor) == 5
    assert {h.workspace for h in only_harbor} == {str(harbor.workspace)}
    assert only_harbor[0].score < everywhere[0].score

    tides = embedder.embed_query("How many tide stations does the app predict?")
    assert store.query(tides, 1)[0].workspace == str(harbor.workspace)
    only_reef = store.query(tides, 10, workspace=str(reef.workspace))
    assert {h.workspace for h in only_reef} == {str(reef.workspace)}
    assert len(only_reef) == 3  # every chunk the reef bank has
    assert sorted(store.workspaces()) == sorted([str(harbor.workspace), str(reef.workspace)])
