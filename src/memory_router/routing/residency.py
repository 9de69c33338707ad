"""The residency model: what a backend's memory holds now, and what loading a model would do.

Pure values and functions. ``Snapshot`` is what the router knows about one Ollama host at the
moment of a decision (its budget, the loaded runners, which of them have requests in flight);
``plan`` says what running a model at a context size there would cost: nothing (already
loaded at that size), a load, a reload (a changed ``num_ctx``), and which resident models must
go first. Placement follows Ollama's scheduler: the first model may spill from VRAM to RAM,
a model loaded beside others must fit in free VRAM, at most ``max_loaded`` runners.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Budget",
    "LoadPlan",
    "Profile",
    "Resident",
    "Snapshot",
    "kv_bytes_from_show",
    "plan",
    "room_after",
]

DEFAULT_OVERHEAD = 600_000_000
"""Per-runner bytes beyond weights and KV cache (compute graph, buffers) until measured."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Memory the models may use on one host."""

    vram_bytes: int
    ram_bytes: int
    reserve_bytes: int = 0
    """Kept free on top of everything (taken from RAM)."""

    @property
    def total(self) -> int:
        return max(self.vram_bytes + self.ram_bytes - self.reserve_bytes, 0)


@dataclass(frozen=True, slots=True)
class Profile:
    """What the router knows about one model's memory and load time."""

    model: str
    weights_bytes: int
    kv_bytes_per_token: int
    overhead_bytes: int = DEFAULT_OVERHEAD
    load_s: float = 0.0
    """Expected seconds to load: measured ``load_duration`` when known, else size / disk."""
    measured: bool = False
    """True once footprint or load time has been corrected by what the backend reported."""

    def footprint(self, num_ctx: int) -> int:
        """Resident bytes of this model loaded at ``num_ctx``."""
        return self.weights_bytes + self.kv_bytes_per_token * num_ctx + self.overhead_bytes


@dataclass(frozen=True, slots=True)
class Resident:
    """A runner loaded on the host (from ``/api/ps`` plus the router's own counts)."""

    model: str
    num_ctx: int
    size: int
    size_vram: int
    in_flight: int = 0
    """Requests the router has running or queued on it."""
    idle_s: float = math.inf
    """Seconds since the router last used it (``inf``: not through this router)."""
    pinned: bool = False
    """keep_alive -1: the user wants it kept; the router never evicts it."""
    warm: bool = False
    """Kept in preference (``ModelSpec.warm``): evicting it costs its full reload."""
    expires_at: str | None = None
    """When Ollama unloads it if unused (``/api/ps``), for display."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One host at the moment of a decision."""

    budget: Budget
    resident: tuple[Resident, ...] = ()
    max_loaded: int = 3
    strict_gpu_fit: bool = True
    """Ollama on a GPU: a model loaded beside others must fit in free VRAM."""
    known: bool = True
    """False when the host could not be read (no /api/ps): plans then assume nothing loaded."""

    def find(self, model: str) -> Resident | None:
        return next((r for r in self.resident if r.model == model), None)


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What running a model at a context size on a host would take."""

    model: str
    num_ctx: int
    loads: bool
    """A load (or reload) happens before the first token."""
    reload: bool = False
    """The model is resident at another ``num_ctx``: Ollama unloads and reloads it."""
    evicts: tuple[str, ...] = ()
    """Resident models that must be unloaded first, in order."""
    waits_for: tuple[str, ...] = ()
    """Of those, the ones with requests in flight: the load waits for them to drain."""
    fits: bool = True
    """False when the model cannot be loaded at this size even on an empty host."""
    footprint: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    blocked_by: tuple[str, ...] = ()
    """Pinned models that would have to go for it to fit: the router never evicts them."""


def plan(
    snapshot: Snapshot,
    profile: Profile,
    num_ctx: int,
    victim_order: Mapping[str, float] | None = None,
) -> LoadPlan:
    """What it takes to run ``profile``'s model at ``num_ctx`` on the host.

    ``victim_order`` gives each resident model's expected cost of being evicted (lower goes
    first); models with requests in flight go last, and only when nothing else frees room.
    """
    current = snapshot.find(profile.model)
    if current is not None and current.num_ctx == num_ctx:
        return LoadPlan(profile.model, num_ctx, loads=False, footprint=current.size)
    need = profile.footprint(num_ctx)
    if need > snapshot.budget.total:
        return _refused(profile, num_ctx, need, f"the host has {snapshot.budget.total / 1e9:.1f}")
    # A pinned model (keep_alive -1) stays: the user asked for it to be kept.
    pinned = [r for r in snapshot.resident if r.model != profile.model and r.pinned]
    others = [r for r in snapshot.resident if r.model != profile.model and not r.pinned]
    costs = victim_order or {}
    # Idle models first, cheapest to lose first; busy ones only as a last resort.
    others.sort(key=lambda r: (r.in_flight > 0, costs.get(r.model, 0.0), r.model))
    evicts: list[Resident] = []
    while not _fits(snapshot, [*pinned, *others], need):
        if not others:
            kept = tuple(r.model for r in pinned)
            return _refused(profile, num_ctx, need, f"beside pinned {', '.join(kept)}", kept)
        evicts.append(others.pop(0))
    others = [*pinned, *others]
    # Keep any victim whose going turned out not to be needed (a cheap one taken first that
    # freed too little, where a later one freed enough), the dearest first.
    for victim in reversed(evicts[:-1]):
        if _fits(snapshot, [*others, victim], need):
            others.append(victim)
            evicts.remove(victim)
    return LoadPlan(
        profile.model,
        num_ctx,
        loads=True,
        reload=current is not None,
        evicts=tuple(r.model for r in evicts),
        waits_for=tuple(r.model for r in evicts if r.in_flight > 0)
        + ((profile.model,) if current is not None and current.in_flight > 0 else ()),
        footprint=need,
    )


def _refused(
    profile: Profile, num_ctx: int, need: int, why: str, pinned: tuple[str, ...] = ()
) -> LoadPlan:
    """The plan of a model that cannot load at ``num_ctx`` on the host."""
    note = f"needs {need / 1e9:.1f} GB, {why}"
    return LoadPlan(
        profile.model, num_ctx, loads=True, fits=False, footprint=need, blocked_by=pinned,
        notes=(note,),
    )  # fmt: skip


def _fits(snapshot: Snapshot, staying: Sequence[Resident], need: int) -> bool:
    return need <= _room(snapshot, staying)


def _room(snapshot: Snapshot, staying: Sequence[Resident]) -> int:
    """The largest footprint a model may have to load beside ``staying`` (-1: none)."""
    if not staying:
        return snapshot.budget.total
    if len(staying) >= snapshot.max_loaded:
        return -1
    if snapshot.strict_gpu_fit:
        return snapshot.budget.vram_bytes - sum(r.size_vram for r in staying)
    return snapshot.budget.total - sum(r.size for r in staying)


def room_after(snapshot: Snapshot, load: LoadPlan) -> int:
    """The largest footprint ``load``'s model could have with the same evictions.

    A bigger context needs the same evictions or more (victims go in a fixed order), so every
    context size whose footprint is within this needs exactly ``load``'s."""
    gone = set(load.evicts)
    staying = [r for r in snapshot.resident if r.model != load.model and r.model not in gone]
    return min(_room(snapshot, staying), snapshot.budget.total)


def kv_bytes_from_show(model_info: Mapping[str, Any], bytes_per_element: int = 2) -> int | None:
    """KV-cache bytes per token from ``/api/show``'s ``model_info``, or None if not derivable.

    2 (K and V) x block_count x head_count_kv x head_dim x bytes per element (f16: 2).
    """
    arch = model_info.get("general.architecture")
    if not isinstance(arch, str):
        return None
    blocks = model_info.get(f"{arch}.block_count")
    heads = model_info.get(f"{arch}.attention.head_count")
    kv_heads = model_info.get(f"{arch}.attention.head_count_kv", heads)
    key_len = model_info.get(f"{arch}.attention.key_length")
    value_len = model_info.get(f"{arch}.attention.value_length", key_len)
    if isinstance(kv_heads, list):  # some architectures list a count per layer
        kv_heads = max(kv_heads) if kv_heads else None
    if not isinstance(blocks, int) or not isinstance(kv_heads, int):
        return None
    if isinstance(key_len, int) and isinstance(value_len, int):
        per_head = key_len + value_len
    else:
        embedding = model_info.get(f"{arch}.embedding_length")
        if not isinstance(embedding, int) or not isinstance(heads, int) or heads <= 0:
            return None
        per_head = 2 * (embedding // heads)
    return blocks * kv_heads * per_head * bytes_per_element
