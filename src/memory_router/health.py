"""Which hosts and models are failing, and for how long the router leaves them alone.

A host (or one model on a host) that fails ``cooldown_after`` times in a row is cooled down:
the policy skips it while some other choice exists. The cooldown doubles while it keeps
failing, up to ``cooldown_max_s``. When a host's cooldown ends it is probed (its cheap
``status``) before it takes requests again; a model's cooldown ends with one request let
through, and one success clears it.

Keys are a host name (``gpu2``) for failures of the host itself (refused, reset, timed out),
and ``host/model`` for a model that fails on a host that answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .domain import placement as model_key
from .settings import FailoverSettings

__all__ = ["Cooling", "Health", "model_key"]


@dataclass(slots=True)
class Cooling:
    """One key's failures in a row, and its cooldown if it has one."""

    failures: int = 0
    until: float = 0.0
    """Monotonic time the cooldown ends (0: not cooling)."""
    seconds: float = 0.0
    """Length of the current cooldown."""
    last_error: str = ""
    probing: bool = False


class Health:
    """Failures in a row per host and per model on a host; cooldowns derived from them."""

    def __init__(
        self, settings: FailoverSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._keys: dict[str, Cooling] = {}

    def failed(self, key: str, error: str) -> bool:
        """Count a failure; True when it starts (or lengthens) a cooldown."""
        entry = self._keys.setdefault(key, Cooling())
        entry.failures += 1
        entry.last_error = error[:300]
        entry.probing = False
        if entry.failures < self.settings.cooldown_after:
            return False
        doubled = entry.seconds * 2 if entry.seconds else self.settings.cooldown_s
        entry.seconds = min(doubled, self.settings.cooldown_max_s)
        entry.until = self._clock() + entry.seconds
        return True

    def has_failures(self) -> bool:
        return bool(self._keys)

    def succeeded(self, key: str) -> None:
        if self._keys:
            self._keys.pop(key, None)

    def avoid(self) -> dict[str, str]:
        """Keys to skip now, each with the reason to give."""
        if not self._keys:
            return {}
        now = self._clock()
        out: dict[str, str] = {}
        for key, entry in self._keys.items():
            if entry.until > now or entry.probing:
                left = max(entry.until - now, 0.0)
                out[key] = (
                    f"cooling down after {entry.failures} failures in a row "
                    f"({left:.0f} s left; last: {entry.last_error})"
                )
        return out

    def due_probes(self) -> list[str]:
        """Host keys whose cooldown has ended and that need a probe before use; each is
        marked as probing (skipped) until ``probed`` reports."""
        now = self._clock()
        due = []
        for key, entry in self._keys.items():
            if "/" in key or entry.probing or not entry.until or entry.until > now:
                continue
            entry.probing = True
            due.append(key)
        return due

    def probed(self, key: str, answers: bool, detail: str = "") -> None:
        """A probe's result: a host that answers takes requests again; one that does not
        is cooled down again, for longer."""
        if answers:
            self.succeeded(key)
        else:
            self.failed(key, detail or "the probe got no answer")

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every key with failures, for ``/ready``, ``/metrics`` and ``memory-router status``."""
        now = self._clock()
        return {
            key: {
                "failures": entry.failures,
                "cooling": entry.until > now or entry.probing,
                "cooldown_left_s": round(max(entry.until - now, 0.0), 1),
                "cooldown_s": entry.seconds,
                "probing": entry.probing,
                "last_error": entry.last_error,
            }
            for key, entry in self._keys.items()
        }
