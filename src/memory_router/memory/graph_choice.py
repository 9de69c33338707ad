"""Which ONNX graph of the embedder this CPU runs well: measured here, not assumed.

Int8 matrix products are computed by the CPU's own kernels, and they differ between CPUs
of one kind. With AVX-512 VNNI an int8 dot product is exact; without it, ONNX Runtime's
AVX2 path multiplies unsigned activations by signed weights into 16-bit sums that can
saturate, so the same int8 graph comes out measurably further from the float model
(cosine min 0.98 on one CPU, 0.97 on another). Weights quantized to 7 bits
(``reduce_range``) cannot saturate that path.

So the first start on a CPU embeds a fixed calibration set with each candidate graph and
with the float graph, and keeps the first candidate that holds the bar; the float graph
holds it by definition. The verdict is cached per model, graph recipe and CPU (its model
name and feature flags), so later starts only read it. The figures travel with the
embedder into the log and ``/v1/memory/status``.

Pure numpy and the standard library: the graphs are built and run by ``onnx_embedder``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "BAR_MEAN",
    "BAR_MIN",
    "CALIBRATION_TEXTS",
    "CANDIDATES",
    "GRAPHS",
    "Choice",
    "cpu_signature",
    "measure",
    "pick",
]

# Every graph the embedder can run; the candidates are tried in this order, fp32 last.
GRAPHS = ("int8", "int8-7bit", "fp32")
CANDIDATES = ("int8", "int8-7bit")

# Cosine to the float graph over the calibration set. Below about 0.97 the shortest texts
# start to drift (14 degrees); the bar keeps a margin above that, and the mean guards the
# bulk of ordinary chunks.
BAR_MIN = 0.975
BAR_MEAN = 0.988

# The shapes a memory bank and its queries hold, and the ones int8 handles worst: empty
# and one-word texts (few tokens, so one scale per run fits them badly), symbols, digits,
# other scripts, code and tables. Fixed: a change here changes every verdict (see _RECIPE
# in onnx_embedder, which keys the cache).
CALIBRATION_TEXTS = (
    "",
    " ",
    "\n\n",
    "hi",
    "yes",
    "TODO",
    "?",
    "#",
    "Status: done.",
    "Update the memory bank.",
    "Where is the retry logic?",
    "How do I run the tests locally?",
    "# Progress\n\n## What works\n\n- Sign-in with passkeys.\n- CSV export.",
    "## Decisions\n\nWe keep SQLite until writes exceed 50 per second.",
    "```go\nfunc (s *Server) Close() error {\n\treturn s.ln.Close()\n}\n```",
    "```ts\nexport const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);\n```",
    "| endpoint | method |\n|---|---|\n| /v1/orders | POST |\n| /v1/orders/{id} | GET |",
    "cargo build --release && ./target/release/indexer --threads 4",
    "ERROR 2026-03-01T10:22:03Z worker-3 panic: runtime error: index out of range [5]",
    "Die Datenbank wird jede Nacht um 02:00 Uhr gesichert.",
    "La aplicación debe funcionar sin conexión durante al menos una semana.",
    "用户可以导出所有数据为 JSON 文件。",
    "この関数はキャッシュを使わずに毎回計算します。",
    "Κάθε αίτημα καταγράφεται με το αναγνωριστικό του.",
    "✅ shipped 🚀 · ⚠️ flaky on CI · ❌ blocked",
    "0.0.1 → 0.2.0 → 1.0.0-rc.3 (2026-11-30)",
    "$ curl -s localhost:8000/health | jq .status",
    '<div class="card"><h2>{{ title }}</h2></div>',
    "SELECT id FROM users WHERE deleted_at IS NULL ORDER BY created_at DESC LIMIT 10;",
    "The scheduler wakes every minute, takes due jobs under a row lock, and runs them.",
    "Payments go through Stripe; refunds older than 90 days are handled by hand.",
    "We chose event sourcing for the ledger so every balance can be replayed from history.",
    "The mobile client caches the last 200 messages per conversation for offline reading.",
    "Known issue: the PDF export cuts tables that span more than one page.",
    "Next: split the monolith's billing module into its own service behind the gateway.",
    "Performance budget: first contentful paint under 1.5 s on a mid-range phone over 4G.",
    "Only administrators may delete a workspace; members can archive it.",
    "Accessibility: every form field has a visible label and an error text.",
    "lorem ipsum " * 40,
    "The build takes eleven minutes because the integration tests start Postgres. " * 6,
)


@dataclass(frozen=True, slots=True)
class Choice:
    """The graph in use, why, and what each graph measured against the float one."""

    graph: str
    reason: str
    measured: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu: str = ""
    bar: dict[str, float] = field(default_factory=lambda: {"min": BAR_MIN, "mean": BAR_MEAN})

    def as_dict(self) -> dict[str, Any]:
        """The choice as plain data, for the log and ``/v1/memory/status``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Choice:
        """Read back a cached verdict; raises ``ValueError`` if it is not one."""
        graph = data.get("graph")
        if graph not in GRAPHS or not isinstance(data.get("reason"), str):
            raise ValueError(f"not an embedder graph verdict: {data!r}")
        return cls(
            graph=graph,
            reason=data["reason"],
            measured={k: dict(v) for k, v in dict(data.get("measured") or {}).items()},
            cpu=str(data.get("cpu", "")),
            bar={k: float(v) for k, v in dict(data.get("bar") or {}).items()},
        )


def _cpu_fields() -> tuple[str, str]:
    """The CPU's model name and its sorted feature flags (Linux), else the platform's word."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), ""
    name = flags = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = " ".join(sorted(value.split()))
        if name and flags:
            break
    return name or platform.machine(), flags


def cpu_signature() -> tuple[str, str]:
    """``(readable name, digest)``: the digest changes with any CPU feature flag."""
    name, flags = _cpu_fields()
    digest = hashlib.sha256(f"{platform.machine()}|{name}|{flags}".encode()).hexdigest()
    marks = [f for f in ("avx512_vnni", "avx_vnni", "avx512f", "avx2") if f in flags.split()]
    readable = f"{name} ({', '.join(marks) or 'no avx2'})" if flags else name
    return readable, digest[:16]


def measure(reference: NDArray[np.float32], candidate: NDArray[np.float32]) -> dict[str, float]:
    """Min and mean cosine between matching rows of two L2-normalised arrays."""
    import numpy as np

    cosines = np.sum(reference * candidate, axis=1)
    return {"min": round(float(cosines.min()), 4), "mean": round(float(cosines.mean()), 4)}


def holds(figures: dict[str, float], bar: dict[str, float]) -> bool:
    """Whether measured figures meet the bar."""
    return figures["min"] >= bar["min"] and figures["mean"] >= bar["mean"]


def pick(
    embed: Callable[[str, Sequence[str]], NDArray[np.float32]],
    *,
    candidates: Sequence[str] = CANDIDATES,
    texts: Sequence[str] = CALIBRATION_TEXTS,
    bar: dict[str, float] | None = None,
    cpu: str = "",
) -> Choice:
    """The first candidate whose vectors stay within ``bar`` of the float graph's.

    ``embed(graph, texts)`` builds (or loads) that graph and returns its normalised
    vectors. Candidates after the first that holds are not built; the float graph answers
    when none holds.
    """
    bar = dict(bar or {"min": BAR_MIN, "mean": BAR_MEAN})
    reference = embed("fp32", texts)
    measured: dict[str, dict[str, float]] = {}
    for graph in candidates:
        measured[graph] = measure(reference, embed(graph, texts))
        if holds(measured[graph], bar):
            figures = measured[graph]
            reason = (
                f"{graph} holds the bar on this CPU: cosine to fp32 min {figures['min']}, "
                f"mean {figures['mean']} (bar {bar['min']} / {bar['mean']})"
            )
            return Choice(graph, reason, measured, cpu, bar)
    worst = ", ".join(f"{g} min {f['min']} mean {f['mean']}" for g, f in measured.items())
    reason = (
        f"no quantized graph holds the bar ({bar['min']} / {bar['mean']}) on this CPU "
        f"({worst}): the float graph is used"
    )
    return Choice("fp32", reason, measured, cpu, bar)


def read_verdict(path: Path) -> Choice | None:
    """A cached verdict, or ``None`` when there is none or it cannot be read."""
    try:
        return Choice.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def write_verdict(path: Path, choice: Choice) -> None:
    """Write a verdict atomically, so a racing reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps(choice.as_dict(), indent=1), encoding="utf-8")
    os.replace(scratch, path)
