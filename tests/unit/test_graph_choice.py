"""Which embedder graph a CPU runs: the measurement and its verdict, on vectors made here.

The vectors stand in for what each graph produces on some CPU: a candidate that drifts
from the float graph (as int8 does on CPUs without VNNI) must be passed over, whatever CPU
runs this test.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from memory_router.memory import graph_choice
from memory_router.memory.graph_choice import Choice, pick, read_verdict, write_verdict

TEXTS = ("a", "b", "c", "d")


def graphs(drift: dict[str, float]) -> tuple[list[str], object]:
    """An ``embed`` whose graph g is the float vectors turned by ``drift[g]`` radians."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(len(TEXTS), 8)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    side = rng.normal(size=(len(TEXTS), 8)).astype(np.float32)
    side -= (side * base).sum(1, keepdims=True) * base  # orthogonal to each row
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    built: list[str] = []

    def embed(graph: str, texts: Sequence[str]) -> NDArray[np.float32]:
        assert tuple(texts) == TEXTS
        built.append(graph)
        angle = drift.get(graph, 0.0)
        out: NDArray[np.float32] = np.cos(angle) * base + np.sin(angle) * side
        return out

    return built, embed


def angle(cosine: float) -> float:
    return float(np.arccos(cosine))


def test_int8_is_kept_where_it_holds_the_bar() -> None:
    built, embed = graphs({"int8": angle(0.99)})
    choice = pick(embed, texts=TEXTS, cpu="cpu with vnni")  # type: ignore[arg-type]
    assert choice.graph == "int8" and choice.cpu == "cpu with vnni"
    assert choice.measured == {"int8": {"min": 0.99, "mean": 0.99}}
    assert built == ["fp32", "int8"]  # the 7-bit graph is not built when int8 holds
    assert "int8 holds the bar" in choice.reason


def test_where_int8_drifts_the_7bit_graph_stands_in() -> None:
    built, embed = graphs({"int8": angle(0.9695), "int8-7bit": angle(0.99)})
    choice = pick(embed, texts=TEXTS)  # type: ignore[arg-type]
    assert choice.graph == "int8-7bit"
    assert choice.measured["int8"]["min"] == pytest.approx(0.9695, abs=1e-4)
    assert built == ["fp32", "int8", "int8-7bit"]


def test_where_no_quantized_graph_holds_the_float_one_runs_and_says_why() -> None:
    _, embed = graphs({"int8": angle(0.9695), "int8-7bit": angle(0.97)})
    choice = pick(embed, texts=TEXTS)  # type: ignore[arg-type]
    assert choice.graph == "fp32"
    assert "no quantized graph holds the bar (0.975 / 0.988)" in choice.reason
    assert "int8 min 0.9695" in choice.reason


def test_the_mean_counts_as_well_as_the_minimum() -> None:
    # Every text at 0.98 holds the minimum; a mean bar above that still rejects it.
    _, embed = graphs({"int8": angle(0.98), "int8-7bit": angle(0.98)})
    choice = pick(embed, texts=TEXTS, bar={"min": 0.975, "mean": 0.985})  # type: ignore[arg-type]
    assert choice.graph == "fp32"


def test_a_verdict_reads_back_and_a_broken_one_is_ignored(tmp_path: Path) -> None:
    choice = Choice("int8-7bit", "why", {"int8": {"min": 0.96, "mean": 0.98}}, "EPYC")
    path = tmp_path / "sub" / "graph-choice.json"
    write_verdict(path, choice)
    assert read_verdict(path) == choice
    assert [p.name for p in path.parent.iterdir()] == ["graph-choice.json"]
    for broken in ("{", '{"graph": "int4", "reason": "x"}', "[]", '"int8"'):
        path.write_text(broken, encoding="utf-8")
        assert read_verdict(path) is None
    assert read_verdict(tmp_path / "missing.json") is None


def test_the_cpu_signature_follows_its_feature_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {"value": ("AMD EPYC", "avx2 fma sse4_2")}
    monkeypatch.setattr(graph_choice, "_cpu_fields", lambda: fields["value"])
    name, digest = graph_choice.cpu_signature()
    assert name == "AMD EPYC (avx2)" and len(digest) == 16
    fields["value"] = ("AMD EPYC", "avx2 avx512f avx512_vnni fma sse4_2")
    other_name, other = graph_choice.cpu_signature()
    assert other != digest and other_name == "AMD EPYC (avx512_vnni, avx512f, avx2)"


def test_the_calibration_set_holds_the_shapes_int8_handles_worst() -> None:
    texts = graph_choice.CALIBRATION_TEXTS
    assert len(texts) >= 40 and len(set(texts)) == len(texts)
    assert sum(len(t.split()) <= 1 for t in texts) >= 8  # empty and one-word texts
    assert any(not t.isascii() for t in texts) and any("```" in t for t in texts)
