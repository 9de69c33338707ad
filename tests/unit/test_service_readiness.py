"""``/ready``'s answer while the backends change under it (Ollama arriving mid-probe)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from memory_router.backends.base import BackendModel, BackendStatus
from memory_router.service import RouterService
from memory_router.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


class SlowBackend:
    """Answers its probe only when told to, like an Ollama host on a slow link."""

    kind = "ollama"

    def __init__(self, name: str, models: list[str], gate: asyncio.Event) -> None:
        self.name = name
        self._models = models
        self._gate = gate

    async def status(self) -> BackendStatus:
        await self._gate.wait()
        return BackendStatus(self.name, self.kind, answers=True, version="0.13.0")

    async def list_models(self) -> list[BackendModel]:
        await self._gate.wait()
        return [BackendModel(name) for name in self._models]


def test_readiness_holds_while_a_backend_arrives_mid_probe() -> None:
    """The switch to an arriving Ollama adds a backend while a readiness probe is waiting on
    the others: the probe answers for the backends it started with, and does not fail."""
    settings = load_settings(REPO / "config")
    names = [spec.name for spec in settings.models.models]

    async def main() -> tuple[bool, list[str], list[str]]:
        gate = asyncio.Event()
        service = RouterService(settings, {"ollama": SlowBackend("ollama", names, gate)})  # type: ignore[dict-item]
        probe = asyncio.create_task(service.readiness())
        await asyncio.sleep(0.01)  # the probe waits on the first backend
        service.fleet.backends["host2"] = SlowBackend("host2", [], gate)  # type: ignore[assignment]
        gate.set()
        readiness = await probe
        return readiness.ready, [s.name for s in readiness.backends], readiness.missing_models

    ready, probed, missing = asyncio.run(main())
    assert ready is True
    assert probed == ["ollama"]
    assert missing == []
