"""The classifier's example vote with the real embedding model and the shipped examples."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from memory_router.memory.embedder import SentenceTransformerEmbedder
from memory_router.routing.engine import ExampleIndex, RoutingEngine
from memory_router.routing.policy import View
from memory_router.settings import RoutingSettings, load_settings
from memory_router.wire.openai import ChatCompletionRequest
from tests.conftest import REPO, RouterThread, write_config
from tests.ollama_emulator import OllamaEmulator

SETTINGS = load_settings(REPO / "config", environ={}, env_file=None)


@pytest.fixture(scope="module")
def index(embedder: SentenceTransformerEmbedder) -> ExampleIndex:
    return ExampleIndex(SETTINGS.task_examples, embedder.embed_documents)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("come up with a name for this chat", "meta"),
        ("the settings page freezes when I open it twice", "implement"),
        ("good evening", "chat"),
    ],
)
def test_nearest_examples_by_class(index: ExampleIndex, text: str, expected: str) -> None:
    similar = index.similar(text)
    assert set(similar) == {"memory", "implement", "analyze", "chat", "meta"}
    assert max(similar, key=lambda task: similar[task]) == expected


def test_similarities_are_cached_per_text(
    embedder: SentenceTransformerEmbedder, index: ExampleIndex
) -> None:
    calls: list[int] = []

    def counted(texts: Any) -> list[list[float]]:
        calls.append(len(texts))
        return embedder.embed_documents(texts)

    counting = ExampleIndex({"chat": ["hi"]}, counted)
    first = counting.similar("hello there")
    assert counting.similar("hello there") == first
    assert calls == [1, 1]  # the examples once, the query once


def request(text: str) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "cline-memory-router", "messages": [{"role": "user", "content": text}]}
    )


def test_the_engine_asks_the_examples_only_when_words_are_weak(index: ExampleIndex) -> None:
    # The example vote decides where the learned classifier is off.
    routing = RoutingSettings.model_validate({"classifier": {"learned": False}})
    engine = RoutingEngine(SETTINGS.models.models, routing, 4096)
    engine.examples = index
    weak = engine.decide(request("the settings page freezes when I open it"), View())
    assert weak.task == "implement"
    assert weak.signals["class_via"] == "examples"
    assert weak.signals["class_scores"]["example:implement"] > 0.35
    strong = engine.decide(request("Implement pagination and fix the failing test"), View())
    assert strong.signals["class_via"] == "keywords"


def test_the_server_loads_the_examples_at_start_up(
    tmp_path: Path, emulator: OllamaEmulator
) -> None:
    server = {
        "ollama": {"base_url": emulator.base_url},
        "embedded": {"mode": "never"},
        "memory": {"enabled": False, "embedder": "sentence-transformers"},
        "logging": {"level": "WARNING", "decision_log": {"enabled": False}},
        "routing": {"classifier": {"learned": False}},  # the example vote's path
    }
    directory = write_config(tmp_path / "config", server)
    shutil.copy(REPO / "config" / "task_examples.yaml", directory)
    router = RouterThread(load_settings(directory, environ={}, env_file=None)).start()
    body = {
        "model": "cline-memory-router",
        "messages": [{"role": "user", "content": "the settings page freezes when I open it"}],
    }
    try:
        with httpx.Client(base_url=router.base_url, timeout=30) as client:
            deadline = time.monotonic() + 60  # the index is built in the background
            while True:
                decision = client.post("/v1/route/explain", json=body).json()
                if decision["signals"]["class_via"] == "examples" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    finally:
        router.stop()
    assert decision["signals"]["class_via"] == "examples"
    assert decision["task"] == "implement"
