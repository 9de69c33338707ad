"""What the service says and does while it starts, and what it knows of a host's memory:
``/ready``'s states, no routing before the classifier is ready, the context a client should
use, and a remote Ollama's budget."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from memory_router import budgets, hardware
from memory_router.api.ops import model_list
from memory_router.backends.base import BackendModel, BackendStatus
from memory_router.routing.residency import Budget
from memory_router.service import RouterService
from memory_router.settings import Settings, load_settings
from memory_router.wire.openai import ChatCompletionRequest
from tests.conftest import write_config

REPO = Path(__file__).resolve().parents[2]
GIB = 1024**3


def shipped(**environ: str) -> Settings:
    return load_settings(REPO / "config", environ=environ, env_file=None)


class Answering:
    """A backend that answers its probe and lists ``models``."""

    def __init__(self, name: str, kind: str, models: Sequence[str]) -> None:
        self.name, self.kind, self._models = name, kind, list(models)

    async def status(self) -> BackendStatus:
        return BackendStatus(self.name, self.kind, answers=True)

    async def list_models(self) -> list[BackendModel]:
        return [BackendModel(name) for name in self._models]


def test_the_embedded_fallback_is_degraded_and_lists_what_is_missing() -> None:
    settings = shipped()
    service = RouterService(settings, {"embedded": Answering("embedded", "embedded", ["gemma"])})  # type: ignore[dict-item]
    service.fleet.embedded_fallback = True
    service.fleet.catalog = []  # the embedded model's own entry is not a configured model
    readiness = asyncio.run(service.readiness())
    assert readiness.status == "degraded" and readiness.ready is False
    assert readiness.missing_models == [spec.name for spec in settings.models.models]
    assert readiness.missing_models == ["qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"]


def test_ready_needs_the_classifier_loaded_and_nothing_routes_before_it() -> None:
    settings = shipped()
    names = [spec.name for spec in settings.models.models]
    service = RouterService(settings, {"ollama": Answering("ollama", "ollama", names)})  # type: ignore[dict-item]
    release = threading.Event()

    def embedder() -> object:
        def embed(texts: Sequence[str]) -> list[list[float]]:
            release.wait(10)  # the embedder is still loading
            return [[float(len(t) % 7), 1.0, float("?" in t)] for t in texts]

        return embed

    request = ChatCompletionRequest.model_validate(
        {"model": "cline-memory-router", "messages": [{"role": "user", "content": "hi"}]}
    )

    async def main() -> list[str]:
        seen: list[str] = []
        service.examples_pending()
        loading = asyncio.create_task(
            service.load_examples(settings.task_examples, embedder)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.05)
        seen.append((await service.readiness()).status)

        async def route() -> None:
            await service.routing_ready()
            seen.append("routed" if service.engine.examples is not None else "routed blind")

        routing = asyncio.create_task(route())
        await asyncio.sleep(0.2)
        assert not routing.done()  # waits for the examples rather than route on keywords
        release.set()
        await loading
        await routing
        seen.append((await service.readiness()).status)
        service.decide_chat(request, remember=False)
        return seen

    assert asyncio.run(main()) == ["starting", "routed", "ready"]


def test_a_classifier_that_fails_to_load_does_not_hold_routing_forever() -> None:
    service = RouterService(shipped())

    def broken() -> object:
        raise RuntimeError("no embedder here")

    async def main() -> None:
        service.examples_pending()
        await service.load_examples({"chat": ["hello"]}, broken)  # type: ignore[arg-type]
        await asyncio.wait_for(service.routing_ready(), 1)

    asyncio.run(main())
    assert any("did not load" in note for note in service.fleet.notes)


def test_the_virtual_model_reports_the_window_a_client_should_use() -> None:
    service = RouterService(shipped())
    virtual = model_list(service.virtual_model, service.fleet)[0]
    assert virtual["id"] == "cline-memory-router"
    assert virtual["context_length"] == 32768  # every model the router chooses holds it
    assert virtual["max_context_length"] == 131072
    # The README tells Cline users the same number.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    typed = re.search(r"\| Context Window Size \| `(\d+)`", readme)
    assert typed is not None and int(typed.group(1)) == virtual["context_length"]


def no_detection(*args: object, **kwargs: object) -> object:
    raise AssertionError("detected this machine's memory for another machine's Ollama")


@pytest.mark.parametrize(
    "url", ["http://gpu-box:11434", "http://192.0.2.10:11434", "https://ollama.example.com"]
)
def test_a_remote_ollama_is_not_given_this_machines_memory(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(hardware, "detect_hardware", no_detection)
    notes: list[str] = []
    budget = budgets.main_budget(shipped(OLLAMA_HOST=url), notes)
    assert budget.vram_bytes == budget.ram_bytes == budgets.UNKNOWN_BYTES
    (note,) = notes
    assert "runs on another machine" in note and "ollama.vram_bytes" in note
    # Stated, it is used as stated; the note is gone.
    server = {"ollama": {"vram_bytes": 24 * GIB, "ram_bytes": 64 * GIB}}
    directory = write_config(tmp_path / "config", server)
    stated = load_settings(directory, environ={"OLLAMA_HOST": url}, env_file=None)
    notes.clear()
    assert budgets.main_budget(stated, notes) == Budget(24 * GIB, 64 * GIB, 2 * GIB)
    assert notes == []


def test_a_loopback_ollama_gets_this_machines_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = hardware.detect_hardware

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hardware, "detect_hardware", counting)
    for url in ("http://127.0.0.1:11434", "http://localhost:11434", "http://[::1]:11434"):
        notes: list[str] = []
        budget = budgets.main_budget(shipped(OLLAMA_HOST=url), notes)
        assert budget.ram_bytes < budgets.UNKNOWN_BYTES and notes == []
    assert len(calls) == 3
