"""Every benchmark under bench/ still runs, on a tiny load, and writes the figures it promises.

The figures in docs/benchmarks.md come from these scripts; a script that no longer starts
(a refactor elsewhere broke it) would leave the doc describing code nobody can measure.
Timing is not checked here (these machines are noisy): only that each run completes and
reports what the doc quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


def run_bench(script: str, *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_overhead(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    run_bench(
        "overhead.py", "--clients", "4", "--requests", "40", "--streams", "8", "--rounds", "2",
        "--service-ms", "5", "--jitter-ms", "2", "--words", "8", "--chunk-ms", "2",
        "--json", str(out),
    )  # fmt: skip
    figures = read(out)
    for key in ("added_p50_ms", "added_p99_ms", "router_cpu_ms_per_request",
                "floor_added_p50_ms", "throughput_ratio", "stream_rate_ratio_total",
                "burst_added_ms", "burst_added_floor_ms"):  # fmt: skip
        assert isinstance(figures[key], float | int), key
    assert figures["burst_size"] == 4


def test_memory(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    run_bench(
        "memory.py", "--files", "8", "--sections", "3", "--search-at", "400", "--queries", "5",
        "--edits", "1", "--rounds", "2", "--json", str(out),
    )  # fmt: skip
    figures = read(out)
    assert figures["chunks"] > 0 and figures["rounds"] == 2
    assert figures["index_chunks_per_s"] > 0 and figures["plain_encode_chunks_per_s"] > 0
    assert figures["resync_one_file_full_scan_ms"] > 0
    assert figures["search_at_400"]["p50_ms"] > 0
    assert figures["top3_retrieval_percent"]["ours"] >= 90.0


def test_embed_speed(tmp_path: Path) -> None:
    out = tmp_path / "embed.json"
    run_bench(
        "embed_speed.py", "--chunks", "24", "--rounds", "2", "--queries", "4", "--json", str(out)
    )
    figures = read(out)
    assert figures["chunks"] == 24 and figures["speedup"] > 0


def test_routing(tmp_path: Path) -> None:
    out = tmp_path / "routing.json"
    run_bench("routing.py", "--turns", "3", "--json", str(out))
    figures = read(out)
    blind = figures["second held-out set, with examples"]
    assert blind["cases"] >= 90 and 0 < blind["accuracy"] <= 1
    assert "wrong" not in blind  # the blind set's misses are never written
    assert figures["latency"]["turn"]["n"] == 3 and figures["latency"]["turn"]["p50_ms"] > 0
    bounds = figures["second held-out set, LLM classifier bounds"]
    assert 0 < bounds["asked"] < bounds["cases"] == blind["cases"]
    # A vote matters only where it is asked: the perfect one can only help, the wrong one hurt.
    assert bounds["wrong_vote_accuracy"] <= bounds["no_vote_accuracy"]
    assert bounds["no_vote_accuracy"] <= bounds["perfect_vote_accuracy"]


def test_llm_classifier(tmp_path: Path) -> None:
    out = tmp_path / "llm_classifier.json"
    run_bench("llm_classifier.py", "--texts", "3", "--json", str(out))
    figures = read(out)
    assert figures["texts"] == 3 and sum(figures["outcomes"].values()) == 3
    assert figures["asked_p50_ms"] > figures["kept_p50_ms"] > 0


@pytest.mark.parametrize("sessions", [1, 2])
def test_residency_and_its_oracle(tmp_path: Path, sessions: int) -> None:
    out = tmp_path / "residency.json"
    run_bench(
        "residency.py", "--tasks", "1", "--sessions", str(sessions), "--out", str(out),
        "--policies", "best_fit,residency",
    )  # fmt: skip
    document = read(out)
    policies = {result["policy"]: result for result in document["results"]}
    assert set(policies) == {"best_fit", "residency"}
    assert all(result["errors"] == 0 for result in policies.values())
    if sessions == 1:
        text = run_bench(
            "residency_oracle.py", "--tasks", "1", "--seeds", "0", "--measured", str(out)
        )
        assert "measured, seed 0, residency" in text
