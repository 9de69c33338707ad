"""Hardware detection: config wins, each source parsed for real, failures become notes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from memory_router.hardware import MIB, detect_hardware
from memory_router.settings import GIB, BudgetSettings

AUTO = BudgetSettings()


def no_nvml() -> Any:
    raise ImportError("No module named 'pynvml'")


def script(tmp_path: Path, name: str, body: str) -> str:
    """An executable shell script in tmp_path, run for real as a subprocess."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def fake_smi(tmp_path: Path, output: str, status: int = 0) -> str:
    """Prints ``output`` and exits ``status``; exits 64 when asked anything but our query."""
    (tmp_path / "smi-output.txt").write_text(output, encoding="utf-8")
    return script(
        tmp_path,
        "nvidia-smi",
        'if [ "$*" != "--query-gpu=name,memory.total --format=csv,noheader,nounits" ]; then\n'
        "  echo unexpected arguments >&2; exit 64\nfi\n"
        f"cat '{tmp_path / 'smi-output.txt'}'\nexit {status}\n",
    )


def fake_sysctl(tmp_path: Path, values: dict[str, str]) -> str:
    cases = "".join(f"  {key}) echo '{value}' ;;\n" for key, value in values.items())
    return script(
        tmp_path,
        "sysctl",
        '[ "$1" = "-n" ] || exit 64\ncase "$2" in\n'
        f"{cases}  *) echo \"sysctl: unknown oid '$2'\" >&2; exit 1 ;;\nesac\n",
    )


def linux(**kwargs: Any) -> dict[str, Any]:
    return {"platform": "linux", "load_nvml": no_nvml, **kwargs}


def test_configured_sizes_win_over_every_source(tmp_path: Path) -> None:
    smi = fake_smi(tmp_path, "NVIDIA GeForce RTX 4090, 24564\n")
    budget = BudgetSettings(vram_bytes=8 * GIB, ram_bytes=32 * GIB)
    hw = detect_hardware(budget, **linux(nvidia_smi=smi))
    assert (hw.vram_bytes, hw.ram_bytes, hw.gpus) == (8 * GIB, 32 * GIB, ())
    assert hw.source == "config"
    assert hw.notes == ()


def test_configured_vram_only_still_detects_ram(tmp_path: Path) -> None:
    hw = detect_hardware(BudgetSettings(vram_bytes=0), **linux(nvidia_smi=str(tmp_path / "x")))
    assert hw.vram_bytes == 0
    assert hw.ram_bytes == psutil.virtual_memory().total
    assert hw.source == "config,psutil"


def test_nvidia_smi_lines_are_parsed_and_summed(tmp_path: Path) -> None:
    smi = fake_smi(tmp_path, "NVIDIA GeForce RTX 4090, 24564\nNVIDIA RTX A4000, 16376\n")
    hw = detect_hardware(AUTO, **linux(nvidia_smi=smi))
    assert hw.vram_bytes == (24564 + 16376) * MIB
    assert hw.gpus == ("NVIDIA GeForce RTX 4090", "NVIDIA RTX A4000")
    assert hw.source == "nvidia-smi,psutil"
    assert hw.notes == ("NVML: nvidia-ml-py is not installed",)


@pytest.mark.parametrize(
    ("output", "status", "expected"),
    [
        ("", 9, "exited with status 9"),
        ("NVIDIA-SMI has failed because it couldn't communicate", 0, "unexpected line"),
        ("NVIDIA GeForce RTX 4090, [N/A]\n", 0, "unexpected line"),
        ("\n", 0, "listed no GPUs"),
    ],
)
def test_failing_or_garbled_nvidia_smi_gives_zero_vram_and_a_note(
    tmp_path: Path, output: str, status: int, expected: str
) -> None:
    hw = detect_hardware(AUTO, **linux(nvidia_smi=fake_smi(tmp_path, output, status)))
    assert hw.vram_bytes == 0
    assert hw.gpus == ()
    assert any(expected in note for note in hw.notes), hw.notes
    assert hw.ram_bytes == psutil.virtual_memory().total


def test_missing_nvidia_smi_gives_a_note(tmp_path: Path) -> None:
    hw = detect_hardware(AUTO, **linux(nvidia_smi=str(tmp_path / "nvidia-smi")))
    assert hw.vram_bytes == 0
    assert f"{tmp_path / 'nvidia-smi'} not found" in hw.notes


def test_hanging_nvidia_smi_times_out_with_a_note(tmp_path: Path) -> None:
    smi = script(tmp_path, "nvidia-smi", "exec sleep 5\n")
    hw = detect_hardware(AUTO, **linux(nvidia_smi=smi, timeout_s=0.3))
    assert hw.vram_bytes == 0
    assert any("timed out after 0.3 s" in note for note in hw.notes), hw.notes


def test_ram_comes_from_psutil() -> None:
    hw = detect_hardware(BudgetSettings(vram_bytes=0), platform="linux")
    assert hw.ram_bytes == psutil.virtual_memory().total > 0
    assert hw.source == "config,psutil"


def test_missing_nvml_is_a_note(tmp_path: Path) -> None:
    hw = detect_hardware(AUTO, **linux(nvidia_smi=str(tmp_path / "none")))
    assert hw.notes[0] == "NVML: nvidia-ml-py is not installed"


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is not None, reason="pynvml installed")
def test_default_nvml_loader_reports_the_missing_package(tmp_path: Path) -> None:
    hw = detect_hardware(AUTO, platform="linux", nvidia_smi=str(tmp_path / "none"))
    assert hw.notes[0] == "NVML: nvidia-ml-py is not installed"


class FakeNvml:
    """The part of pynvml we call, with two GPUs (names as bytes, as older versions return)."""

    def __init__(self, init_error: Exception | None = None) -> None:
        self.init_error = init_error
        self.shut_down = False
        self.gpus: list[tuple[bytes | str, int]] = [
            (b"NVIDIA A100-SXM4-80GB", 80 * GIB),
            ("NVIDIA L4", 24 * GIB),
        ]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes | str:
        return self.gpus[handle][0]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=self.gpus[handle][1], free=0, used=0)


def test_nvml_is_preferred_and_summed(tmp_path: Path) -> None:
    nvml = FakeNvml()
    smi = fake_smi(tmp_path, "Other GPU, 1\n")
    hw = detect_hardware(AUTO, platform="linux", nvidia_smi=smi, load_nvml=lambda: nvml)
    assert hw.vram_bytes == 104 * GIB
    assert hw.gpus == ("NVIDIA A100-SXM4-80GB", "NVIDIA L4")
    assert hw.source == "nvml,psutil"
    assert nvml.shut_down


def test_nvml_init_failure_falls_back_to_nvidia_smi(tmp_path: Path) -> None:
    nvml = FakeNvml(init_error=RuntimeError("Driver Not Loaded"))
    smi = fake_smi(tmp_path, "NVIDIA T4, 15360\n")
    hw = detect_hardware(AUTO, platform="linux", nvidia_smi=smi, load_nvml=lambda: nvml)
    assert hw.vram_bytes == 15360 * MIB
    assert hw.notes == ("NVML: could not initialise (Driver Not Loaded)",)


def darwin(tmp_path: Path, values: dict[str, str]) -> dict[str, Any]:
    return {
        "platform": "darwin",
        "load_nvml": no_nvml,
        "nvidia_smi": str(tmp_path / "no-nvidia-smi"),
        "sysctl": fake_sysctl(tmp_path, values),
    }


APPLE = {"hw.optional.arm64": "1", "machdep.cpu.brand_string": "Apple M2 Pro"}


@pytest.mark.parametrize(
    ("gib", "vram", "share"), [(32, 32 * GIB * 2 // 3, "2/3"), (64, 48 * GIB, "3/4")]
)
def test_apple_silicon_estimates_the_gpu_share(
    tmp_path: Path, gib: int, vram: int, share: str
) -> None:
    values = {**APPLE, "hw.memsize": str(gib * GIB), "iogpu.wired_limit_mb": "0"}
    hw = detect_hardware(AUTO, **darwin(tmp_path, values))
    assert (hw.ram_bytes, hw.vram_bytes) == (gib * GIB, vram)
    assert hw.gpus == ("Apple M2 Pro",)
    assert hw.source == "sysctl"
    assert any(f"estimated as {share} of {gib} GiB" in note for note in hw.notes), hw.notes


def test_apple_silicon_uses_the_wired_limit_when_set(tmp_path: Path) -> None:
    values = {**APPLE, "hw.memsize": str(32 * GIB), "iogpu.wired_limit_mb": "28000"}
    hw = detect_hardware(AUTO, **darwin(tmp_path, values))
    assert hw.vram_bytes == 28000 * MIB
    assert any("iogpu.wired_limit_mb = 28000 MiB" in note for note in hw.notes)


def test_older_macos_without_the_wired_limit_key_estimates(tmp_path: Path) -> None:
    hw = detect_hardware(AUTO, **darwin(tmp_path, {**APPLE, "hw.memsize": str(16 * GIB)}))
    assert hw.vram_bytes == 16 * GIB * 2 // 3
    assert any("iogpu.wired_limit_mb" in note and "status 1" in note for note in hw.notes)


def test_intel_mac_has_no_gpu_budget(tmp_path: Path) -> None:
    hw = detect_hardware(AUTO, **darwin(tmp_path, {"hw.memsize": str(16 * GIB)}))
    assert (hw.vram_bytes, hw.ram_bytes, hw.gpus) == (0, 16 * GIB, ())
    assert "macOS on Intel: Ollama does not use the GPU" in hw.notes
    assert hw.source == "sysctl"


def test_mac_without_sysctl_falls_back_to_psutil(tmp_path: Path) -> None:
    options = {**darwin(tmp_path, {}), "sysctl": str(tmp_path / "no-sysctl")}
    hw = detect_hardware(AUTO, **options)
    assert hw.vram_bytes == 0
    assert hw.ram_bytes == psutil.virtual_memory().total
    assert hw.source == "psutil"
    assert f"{tmp_path / 'no-sysctl'} not found" in hw.notes
