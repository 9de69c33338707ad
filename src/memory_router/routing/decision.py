"""What a routing decision is: a value with its reasons, explainable as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..domain import KeepAlive, TaskClass

__all__ = ["Candidate", "Decision"]

_CONTROL_TO_SPACE = {code: " " for code in [*range(32), 127]}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model the policy considered, and how it scored."""

    model: str
    backend: str
    task_fit: float
    num_ctx: int
    fits: bool
    score: float
    loads: bool = False
    evicts: tuple[str, ...] = ()
    load_s: float = 0.0
    cost: float = 0.0
    """Switch cost in task-fit units (already subtracted from ``score``)."""
    lacks: tuple[str, ...] = ()
    """Capabilities the request needs that the model does not have (then ``fits`` is False)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Which model runs a request, with which context and keep_alive, and why."""

    model: str
    backend: str
    num_ctx: int | None
    keep_alive: KeepAlive | None
    task: TaskClass | None
    reasons: tuple[str, ...]
    routed: bool = True
    signals: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[Candidate, ...] = ()
    loads: bool = False
    """Running it loads (or reloads) the model first."""
    reload: bool = False
    evicts: tuple[str, ...] = ()
    waits_for: tuple[str, ...] = ()
    expected_load_s: float = 0.0
    needed_tokens: int | None = None
    """Prompt (corrected for the model) plus reserved output."""
    prompt_tokens: int | None = None
    """The prompt as estimated (cl100k), before any model's correction."""
    output_tokens: int = 0
    """The output the decision reserved room for."""
    needs: frozenset[str] = frozenset()
    """Capabilities the request needs (images, tools, a suffix)."""
    session: str | None = None
    workspace: str | None = None
    """The workspace the request names (Cline's working directory), if any."""
    tool_style: str | None = None
    """How the client sends tools: ``native`` (tool calls) or ``xml`` (in the text)."""
    decide_ms: float | None = None
    """How long the decision took (routed requests)."""

    def reason_header(self) -> str:
        """A one-line summary for the ``x-router-reason`` header (ASCII, no newlines)."""
        text = "; ".join(self.reasons).encode("ascii", "replace").decode()[:512]
        # Reasons quote client input (tool names): no control character may reach a header.
        # (Printable ASCII has none: the check is cheaper than the translation.)
        return text if text.isprintable() else text.translate(_CONTROL_TO_SPACE)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["needs"] = sorted(self.needs)
        return out
