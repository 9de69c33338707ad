"""The residency monitor against the emulator: profiles from /api/tags and /api/show, footprints
corrected by /api/ps, load times learned, admission counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from memory_router.backends.ollama import OllamaBackend
from memory_router.domain import placement
from memory_router.errors import RateLimited
from memory_router.monitor import ResidencyMonitor
from memory_router.routing.decision import Decision
from memory_router.routing.residency import Budget
from memory_router.settings import OllamaSettings, RoutingSettings, load_settings
from tests.ollama_emulator import OllamaEmulator

REPO = Path(__file__).resolve().parent.parent
CATALOG = load_settings(REPO / "config", environ={}, env_file=None).models.models
CODER = "qwen2.5-coder:32b"
GIB = 1024**3


def load(emulator: OllamaEmulator, model: str, num_ctx: int) -> None:
    httpx.post(
        emulator.base_url + "/api/chat",
        json={"model": model, "messages": [], "options": {"num_ctx": num_ctx}},
        timeout=30,
    ).raise_for_status()


async def monitor_for(emulator: OllamaEmulator, **routing: object) -> ResidencyMonitor:
    backend = OllamaBackend(OllamaSettings(base_url=emulator.base_url))
    monitor = ResidencyMonitor(
        RoutingSettings.model_validate({"warm_pinned": False, **routing}),
        CATALOG,
        {"ollama": backend},
        {"ollama": Budget(16 * GIB, 128 * GIB)},
    )
    await monitor.start(background=False)
    return monitor


async def close(monitor: ResidencyMonitor) -> None:
    await monitor.aclose()
    for host in monitor.hosts.values():
        await host.backend.aclose()


def test_profiles_come_from_tags_and_show(emulator: OllamaEmulator) -> None:
    async def run() -> None:
        monitor = await monitor_for(emulator, budget={"disk_bytes_per_s": 1e6})
        spec = emulator.config.models[CODER]
        profile = monitor.profiles[CODER]
        assert profile.weights_bytes == spec.weights_bytes
        # /api/show describes the real architecture: 2 x 64 layers x 8 KV heads x 128 x 2.
        assert profile.kv_bytes_per_token == 262144
        assert profile.load_s == pytest.approx(spec.weights_bytes / 1e6)
        assert not profile.measured
        await close(monitor)

    asyncio.run(run())


def test_footprint_is_corrected_by_what_ps_reports(emulator: OllamaEmulator) -> None:
    # The fast emulator profile keeps 16 bytes of KV cache a token, not what /api/show implies.
    spec = emulator.config.models[CODER]

    async def run() -> None:
        monitor = await monitor_for(emulator)
        await asyncio.to_thread(load, emulator, CODER, 32768)
        await monitor.refresh()
        once = monitor.profiles[CODER]
        assert once.measured
        assert once.footprint(32768) == spec.footprint(32768)  # exact where it was seen
        await asyncio.to_thread(load, emulator, CODER, 8192)  # a reload at another size
        await monitor.refresh()
        twice = monitor.profiles[CODER]
        assert twice.kv_bytes_per_token == spec.kv_bytes_per_token
        assert twice.overhead_bytes == spec.overhead_bytes
        assert twice.footprint(65536) == spec.footprint(65536)  # and where it was not
        view = monitor.view()
        (resident,) = view.snapshots["ollama"].resident
        assert (resident.model, resident.num_ctx) == (CODER, 8192)
        await close(monitor)

    asyncio.run(run())


def test_load_time_is_learned_from_load_duration(emulator: OllamaEmulator) -> None:
    async def run() -> None:
        monitor = await monitor_for(emulator, budget={"disk_bytes_per_s": 1e6})
        monitor.learn_load(CODER, 3_000_000, expected=False)  # bookkeeping, no load
        assert not monitor.profiles[CODER].measured
        monitor.learn_load(CODER, 12_000_000_000, expected=True)
        assert monitor.profiles[CODER].load_s == pytest.approx(12.0)
        monitor.learn_load(CODER, 8_000_000_000, expected=True)
        assert monitor.profiles[CODER].load_s == pytest.approx(10.0)
        await close(monitor)

    asyncio.run(run())


def test_admission_counts_and_limits(emulator: OllamaEmulator) -> None:
    decision = Decision(CODER, "ollama", 32768, "30m", "implement", ("r",))

    async def run() -> None:
        monitor = await monitor_for(
            emulator, queue={"max_running_per_model": 1, "max_waiting_per_model": 1}
        )
        first = monitor.admit(decision)
        second = monitor.admit(decision)
        with pytest.raises(RateLimited) as info:
            monitor.admit(decision)
        assert info.value.retry_after == 5
        assert monitor.in_flight[placement("ollama", CODER)] == 2
        first.release()
        first.release()  # once only
        assert monitor.in_flight[placement("ollama", CODER)] == 1
        monitor.admit(decision).release()
        second.release()
        assert monitor.in_flight[placement("ollama", CODER)] == 0
        assert monitor.view().idle_s[CODER] < 1.0
        await close(monitor)

    asyncio.run(run())


def test_two_requests_evicting_each_others_model_do_not_deadlock(
    emulator: OllamaEmulator,
) -> None:
    fast = "qwen3:30b-a3b"
    to_coder = Decision(CODER, "ollama", 32768, "30m", "implement", ("r",), evicts=(fast,))
    to_fast = Decision(fast, "ollama", 32768, -1, "memory", ("r",), evicts=(CODER,))

    async def run() -> None:
        monitor = await monitor_for(emulator)
        first = monitor.admit(to_coder)
        second = monitor.admit(to_fast)  # admitted, waiting for room: not running yet

        async def go(admission: object, decision: Decision, hold_s: float) -> float:
            await monitor.make_room(decision, admission)  # type: ignore[arg-type]
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(hold_s)  # the request runs
            admission.release()  # type: ignore[attr-defined]
            return started

        async with asyncio.timeout(10):
            coder_at, fast_at = await asyncio.gather(
                go(first, to_coder, 0.3), go(second, to_fast, 0.0)
            )
        # One went first; the other waited for it to finish before unloading its model.
        assert abs(coder_at - fast_at) >= 0.3
        assert sorted(model for model, _ in emulator.unload_requests) == sorted([CODER, fast])
        assert all(in_flight == 0 for _, in_flight in emulator.unload_requests)
        await close(monitor)

    asyncio.run(run())


def test_a_refresh_keeps_a_load_admitted_but_not_yet_listed(emulator: OllamaEmulator) -> None:
    fast = "qwen3:30b-a3b"

    async def run() -> None:
        monitor = await monitor_for(emulator)
        await asyncio.to_thread(load, emulator, fast, 32768)
        await monitor.refresh()
        to_coder = Decision(
            CODER, "ollama", 32768, "30m", "implement", ("r",), loads=True, evicts=(fast,)
        )
        admission = monitor.admit(to_coder)
        await monitor.make_room(to_coder, admission)  # unloads qwen3; the coder is not up yet
        await monitor.refresh()
        assert [r.model for r in monitor.view().snapshots["ollama"].resident] == [CODER]
        admission.release()
        await monitor.refresh()  # its request is over and Ollama never loaded it: forgotten
        assert monitor.view().snapshots["ollama"].resident == ()
        await close(monitor)

    asyncio.run(run())


def test_capabilities_come_from_show_unless_models_yaml_states_them(
    emulator: OllamaEmulator,
) -> None:
    stated = [
        spec.model_copy(update={"capabilities": ("completion",)}) if spec.name == CODER else spec
        for spec in CATALOG
    ]
    emulator.config.models["llama4:16x17b"].capabilities = []  # an Ollama that says nothing

    async def run() -> None:
        backend = OllamaBackend(OllamaSettings(base_url=emulator.base_url))
        monitor = ResidencyMonitor(
            RoutingSettings.model_validate({"warm_pinned": False}),
            stated,
            {"ollama": backend},
            {"ollama": Budget(16 * GIB, 128 * GIB)},
        )
        await monitor.start(background=False)
        try:
            assert monitor.capabilities == {
                "qwen3:30b-a3b": frozenset({"completion", "tools", "thinking"}),
                CODER: frozenset({"completion"}),
            }
            assert monitor.view().capabilities is monitor.capabilities
        finally:
            await close(monitor)

    asyncio.run(run())
