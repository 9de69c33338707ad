"""How much memory each Ollama host gives the models: stated, or detected on this machine.

A host's memory can be detected only where the router runs on it: the main Ollama when its
address is a loopback one. For Ollama on another machine (``OLLAMA_HOST=gpu-box:11434``) the
user states it, with the keys an ``ollama_hosts`` entry has; until then the router says so at
start-up and plans no evictions of its own there (Ollama still evicts as it must).
"""

from __future__ import annotations

import structlog

from .addresses import is_loopback_url
from .routing.residency import Budget
from .settings import Settings

__all__ = ["UNKNOWN_BYTES", "host_budgets", "is_loopback_url", "main_budget"]

log = structlog.get_logger("memory_router.service")

UNKNOWN_BYTES = 1 << 50
"""Stands in for the memory of a remote host nobody stated: the router evicts nothing."""


def main_budget(settings: Settings, notes: list[str]) -> Budget:
    """The main Ollama's memory: stated (``ollama.*_bytes``, then ``routing.budget``), else
    detected, but only for a loopback Ollama. A note for the user lands in ``notes``."""
    config = settings.config.routing.budget
    ollama = settings.config.ollama
    vram = ollama.vram_bytes if ollama.vram_bytes is not None else config.vram_bytes
    ram = ollama.ram_bytes if ollama.ram_bytes is not None else config.ram_bytes
    reserve = ollama.reserve_bytes if ollama.reserve_bytes is not None else config.reserve_bytes
    if vram is not None and ram is not None:
        return Budget(vram, ram, reserve)
    if not is_loopback_url(ollama.base_url):
        note = (
            f"Ollama at {ollama.base_url} runs on another machine, whose memory cannot be "
            f"detected from here: state it as ollama.vram_bytes and ollama.ram_bytes (or "
            f"routing.budget). Until then the router plans no evictions of its own and leaves "
            f"them to Ollama"
        )
        if note not in notes:
            notes.append(note)
            log.warning("budget_unknown", note=note)
        return Budget(
            UNKNOWN_BYTES if vram is None else vram, UNKNOWN_BYTES if ram is None else ram, reserve
        )
    from .hardware import detect_hardware

    found = detect_hardware(config)
    vram = found.vram_bytes if vram is None else vram
    ram = found.ram_bytes if ram is None else ram
    log.info("budget", vram=vram, ram=ram, source=found.source, notes=list(found.notes))
    return Budget(vram, ram, reserve)


def host_budgets(settings: Settings, hosts: list[str], notes: list[str]) -> dict[str, Budget]:
    """The budget of each named Ollama host: an ``ollama_hosts`` entry's own, else the main
    Ollama's (``main_budget``)."""
    stated = {h.name: h for h in settings.config.ollama_hosts}
    budgets: dict[str, Budget] = {}
    for name in hosts:
        if name in stated:
            host = stated[name]
            budgets[name] = Budget(host.vram_bytes, host.ram_bytes, host.reserve_bytes)
        else:
            budgets[name] = main_budget(settings, notes)
    return budgets
