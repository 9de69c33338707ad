"""How much CPU the hypervisor took from this machine while a benchmark phase ran.

On a shared virtual machine, "steal" is time a core was ready to run but the host ran someone
else. It slows every phase it falls in, and unevenly, so each figure is reported with the
steal measured during it (from ``/proc/stat``; ``None`` where that file does not exist).

    with Steal() as steal:
        run_phase()
    steal.percent  # e.g. 3.4
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

__all__ = ["Steal"]


def _ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies over all cores since boot."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice: inside user]
    values = [int(v) for v in fields[1:9]]
    return values[7], sum(values)


class Steal:
    """Steal time as a percentage of all CPU time between ``__enter__`` and ``__exit__``."""

    def __init__(self) -> None:
        self.percent: float | None = None
        self._start: tuple[int, int] | None = None

    def __enter__(self) -> Steal:
        self._start = _ticks()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        end = _ticks()
        if self._start is not None and end is not None and end[1] > self._start[1]:
            stolen, total = end[0] - self._start[0], end[1] - self._start[1]
            self.percent = round(100 * stolen / total, 1)
