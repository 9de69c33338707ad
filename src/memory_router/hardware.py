"""How much memory this machine has for models: VRAM over all GPUs and system RAM.

The residency budget needs two numbers. Configured sizes win; otherwise each source is tried
in turn (NVML, ``nvidia-smi``, then on macOS ``sysctl`` for Apple silicon's unified memory;
RAM from psutil) and a source that fails leaves a note saying why, never an exception, since a
machine without a GPU or without a tool is normal and the router must still start.

``pynvml`` (package ``nvidia-ml-py``) and psutil are imported here and nowhere else, lazily.
"""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .settings import GIB, BudgetSettings

__all__ = ["Hardware", "detect_hardware"]

MIB = 1024**2
NVIDIA_SMI_QUERY = ("--query-gpu=name,memory.total", "--format=csv,noheader,nounits")


@dataclass(frozen=True, slots=True)
class Hardware:
    """Detected (or configured) memory sizes, where they came from, and why sources failed."""

    vram_bytes: int
    ram_bytes: int
    gpus: tuple[str, ...]
    source: str
    notes: tuple[str, ...]


class _Skip(Exception):
    """A source could not answer; the message becomes a note."""


@dataclass(frozen=True, slots=True)
class _Gpus:
    names: tuple[str, ...]
    total_bytes: int
    source: str


def _import_pynvml() -> Any:
    # importlib keeps mypy quiet whether or not nvidia-ml-py (untyped) is installed.
    return importlib.import_module("pynvml")


def detect_hardware(
    budget: BudgetSettings,
    *,
    nvidia_smi: str = "nvidia-smi",
    sysctl: str = "sysctl",
    load_nvml: Callable[[], Any] = _import_pynvml,
    platform: str | None = None,
    timeout_s: float = 5.0,
) -> Hardware:
    """Work out VRAM and RAM for the budget; never raises.

    ``nvidia_smi`` and ``sysctl`` name the executables (a path in tests), ``load_nvml``
    returns the ``pynvml`` module (a fake in tests) and ``platform`` stands in for
    ``sys.platform``, so every path can be exercised on any machine.
    """
    platform = sys.platform if platform is None else platform
    notes: list[str] = []
    sources: list[str] = []
    vram = 0
    gpus: tuple[str, ...] = ()
    if budget.vram_bytes is not None:
        vram = budget.vram_bytes
        sources.append("config")
    else:
        found = _detect_gpus(nvidia_smi, sysctl, load_nvml, platform, timeout_s, notes)
        if found is not None:
            vram, gpus = found.total_bytes, found.names
            sources.append(found.source)
    if budget.ram_bytes is not None:
        ram = budget.ram_bytes
        sources.append("config")
    else:
        ram, ram_source = _detect_ram(sysctl, platform, timeout_s, notes)
        if ram_source:
            sources.append(ram_source)
    return Hardware(
        vram_bytes=vram,
        ram_bytes=ram,
        gpus=gpus,
        source=",".join(dict.fromkeys(sources)),
        notes=tuple(notes),
    )


def _detect_gpus(
    nvidia_smi: str,
    sysctl: str,
    load_nvml: Callable[[], Any],
    platform: str,
    timeout_s: float,
    notes: list[str],
) -> _Gpus | None:
    probes: list[Callable[[], _Gpus]] = [
        lambda: _nvml_gpus(load_nvml),
        lambda: _nvidia_smi_gpus(nvidia_smi, timeout_s),
    ]
    if platform == "darwin":
        probes.append(lambda: _apple_gpu(sysctl, timeout_s, notes))
    for probe in probes:
        try:
            return probe()
        except _Skip as skip:
            notes.append(str(skip))
        except Exception as exc:  # a detection bug must not stop the router from starting
            notes.append(f"GPU probe failed unexpectedly: {type(exc).__name__}: {exc}")
    return None


def _nvml_gpus(load_nvml: Callable[[], Any]) -> _Gpus:
    try:
        nvml = load_nvml()
    except ImportError:
        raise _Skip("NVML: nvidia-ml-py is not installed") from None
    try:
        nvml.nvmlInit()
    except Exception as exc:  # pynvml.NVMLError and its many subclasses; no driver is normal
        raise _Skip(f"NVML: could not initialise ({exc})") from None
    try:
        names: list[str] = []
        total = 0
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            names.append(name.decode() if isinstance(name, bytes) else str(name))
            total += int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
    except Exception as exc:
        raise _Skip(f"NVML: query failed ({exc})") from None
    finally:
        with contextlib.suppress(Exception):  # a failed shutdown only leaks a handle
            nvml.nvmlShutdown()
    if not names:
        raise _Skip("NVML: no GPUs")
    return _Gpus(tuple(names), total, "nvml")


def _run(argv: Sequence[str], timeout_s: float) -> str:
    """Run a tool and return its stdout, or raise ``_Skip`` saying what went wrong."""
    tool = argv[0]
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise _Skip(f"{tool} not found") from None
    except subprocess.TimeoutExpired:
        raise _Skip(f"{tool} timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise _Skip(f"{tool} could not run: {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        reason = f": {detail[0]}" if detail else ""
        raise _Skip(f"{tool} {' '.join(argv[1:])} exited with status {done.returncode}{reason}")
    return done.stdout


def _nvidia_smi_gpus(nvidia_smi: str, timeout_s: float) -> _Gpus:
    output = _run([nvidia_smi, *NVIDIA_SMI_QUERY], timeout_s)
    names: list[str] = []
    total = 0
    for line in output.splitlines():
        if not line.strip():
            continue
        name, _, mib = line.rpartition(",")  # the name might hold a comma; the size cannot
        try:
            size = int(float(mib.strip()))
        except ValueError:
            raise _Skip(f"nvidia-smi printed an unexpected line: {line.strip()[:80]!r}") from None
        if not name.strip() or size < 0:
            raise _Skip(f"nvidia-smi printed an unexpected line: {line.strip()[:80]!r}")
        names.append(name.strip())
        total += size * MIB
    if not names:
        raise _Skip("nvidia-smi listed no GPUs")
    return _Gpus(tuple(names), total, "nvidia-smi")


def _sysctl_int(sysctl: str, key: str, timeout_s: float) -> int:
    text = _run([sysctl, "-n", key], timeout_s).strip()
    try:
        return int(text)
    except ValueError:
        raise _Skip(f"sysctl {key} is not a number: {text[:40]!r}") from None


def _apple_gpu(sysctl: str, timeout_s: float, notes: list[str]) -> _Gpus:
    """Apple silicon: the GPU shares RAM, up to Metal's recommended working set.

    Ollama sizes Metal by ``recommendedMaxWorkingSetSize`` (discover/gpu_info_darwin.m),
    which Python cannot read without Metal bindings. macOS sets it from
    ``iogpu.wired_limit_mb`` when that is non-zero; otherwise it is about 2/3 of RAM up to
    36 GiB and 3/4 above, which is what we assume.
    """
    memsize = _sysctl_int(sysctl, "hw.memsize", timeout_s)  # first: is sysctl there at all
    try:
        arm64 = _sysctl_int(sysctl, "hw.optional.arm64", timeout_s) == 1
    except _Skip:
        arm64 = False  # Intel Macs lack the key
    if not arm64:
        raise _Skip("macOS on Intel: Ollama does not use the GPU")
    try:
        limit_mib = _sysctl_int(sysctl, "iogpu.wired_limit_mb", timeout_s)
    except _Skip as skip:
        notes.append(str(skip))
        limit_mib = 0
    if limit_mib > 0:
        vram = min(limit_mib * MIB, memsize)
        notes.append(f"unified memory: GPU share from iogpu.wired_limit_mb = {limit_mib} MiB")
    else:
        share = "2/3" if memsize <= 36 * GIB else "3/4"
        vram = memsize * 2 // 3 if share == "2/3" else memsize * 3 // 4
        notes.append(
            f"unified memory: GPU share estimated as {share} of {memsize / GIB:.0f} GiB "
            "(macOS's default Metal working set); set routing.budget.vram_bytes to override"
        )
    try:
        name = _run([sysctl, "-n", "machdep.cpu.brand_string"], timeout_s).strip()
    except _Skip:
        name = ""
    return _Gpus((name or "Apple silicon GPU",), vram, "sysctl")


def _detect_ram(sysctl: str, platform: str, timeout_s: float, notes: list[str]) -> tuple[int, str]:
    if platform == "darwin":
        try:
            return _sysctl_int(sysctl, "hw.memsize", timeout_s), "sysctl"
        except _Skip as skip:
            notes.append(str(skip))
    try:
        psutil = importlib.import_module("psutil")  # untyped; imported here only
        return int(psutil.virtual_memory().total), "psutil"
    except Exception as exc:  # ImportError or a platform psutil does not support
        notes.append(f"psutil could not read RAM: {type(exc).__name__}: {exc}")
        return 0, ""
