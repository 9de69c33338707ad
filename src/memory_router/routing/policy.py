"""Choosing a model: task fit minus the cost of the switch, within what the host holds.

Pure: everything the choice depends on arrives as values (the catalog, a ``View`` of each
host's residency and each model's profile, the session's previous choice). For every model
whose context can hold the request the policy works out a ``num_ctx`` from the ladder and what
running it would take on its host (``residency.plan``), then scores it:

    score = task_fit - (load_cost_per_s x (load_s + sum over evicted of reload_s x recency)
                        + sum over contested evicted of their session's fit lost)
                       / expected_turns(task)

A load is paid once and serves the turns of the same kind that follow it (an implementation
loop is many requests, a title is one), hence the division. A model that another session is
working with alongside this one (``RoutingEngine.contested``: its request is in flight or its
last answer keeps it working, on another checkout or this one), and that suits its request
best of the models that could serve it, is *contested*: two Cline windows that want different
models, with room for one, would otherwise swap at every request. Evicting it is charged as
that session's fit lost by running on the newcomer for its expected turns (it then shares the
newcomer rather than loading its model back, by the same rule); so the session with more at
stake holds the GPU and the other shares it until its work changes. If the newcomer cannot
serve that session (its context does not fit there), it will load its model back at its next
request: the eviction is charged its reload, and the load as serving one turn.

``recency`` is 1 for a pinned model and halves every ``recency_half_life_s`` since a model's
last use: evicting what the user just used costs its full reload. Evicting a model with
requests in flight is a last resort, charged a long wait.

``num_ctx`` is never shrunk on a loaded model (a changed ``num_ctx`` reloads it); for a model
that must load anyway the largest rung that evicts nothing more is taken, so a growing
conversation does not force a reload later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..domain import TaskClass
from ..errors import ContextLengthExceeded, ModelNotCapable
from ..settings import ModelSpec, RoutingSettings
from .decision import Candidate, Decision
from .residency import Budget, LoadPlan, Profile, Snapshot, plan, room_after

__all__ = [
    "BUSY_WAIT_S",
    "EXPECTED_TURNS",
    "Claim",
    "SessionChoice",
    "View",
    "choose",
    "direct",
    "ladder_for",
    "need_param",
    "passthrough",
    "what_needs",
]

EXPECTED_TURNS: dict[TaskClass, float] = {
    "implement": 8.0,
    "memory": 4.0,
    "analyze": 4.0,
    "chat": 1.0,
    "meta": 1.0,
}
"""Requests of a kind that typically follow one another: how many turns a load serves."""

BUSY_WAIT_S = 60.0
"""Expected wait for a busy model's requests to finish, until request times are measured."""


@dataclass(frozen=True, slots=True)
class View:
    """What the router knows at decision time, per host and per model."""

    snapshots: Mapping[str, Snapshot] = field(default_factory=dict)
    """Residency per backend name; a backend with none (embedded, openai) never loads."""
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    idle_s: Mapping[str, float] = field(default_factory=dict)
    """Seconds since each model's last use through this router."""
    token_ratio: Mapping[str, float] = field(default_factory=dict)
    """Per-model correction of the cl100k estimate."""
    busy_s: Mapping[str, float] = field(default_factory=dict)
    """Expected seconds until a busy model's requests in flight have finished."""
    capabilities: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """What each model takes (``vision``, ``tools``...), where known; unknown: anything."""
    avoid: Mapping[str, str] = field(default_factory=dict)
    """Hosts, and ``host/model`` pairs, to skip while another choice exists (cooling down
    after failures, or failed for this request already), each with the reason."""


@dataclass(frozen=True, slots=True)
class Claim:
    """Another session's hold on the model it is working with, alongside this one."""

    task: TaskClass
    holds: frozenset[str]
    """The models that could serve its request (its context, what it carries): if the
    newcomer is not one of them, it cannot share it and loads its model back."""


@dataclass(frozen=True, slots=True)
class SessionChoice:
    """What a session ran last: kept inside its tool loop."""

    model: str
    task: TaskClass
    num_ctx: int | None
    backend: str | None = None
    """The host it ran on (a pool serves a model from several): the session stays there."""


def ladder_for(spec: ModelSpec, ladder: Sequence[int]) -> list[int]:
    """The context sizes the router may ask for this model, smallest first."""
    rungs = [size for size in ladder if size < spec.num_ctx]
    return [*rungs, spec.num_ctx]


def _recency(idle_s: float, pinned: bool, half_life_s: float) -> float:
    if pinned:
        return 1.0
    return float(0.5 ** (idle_s / half_life_s))


@dataclass(slots=True)  # built three times a request, never shared: no frozen-field cost
class _Option:
    spec: ModelSpec
    needed: int
    num_ctx: int
    load: LoadPlan | None
    load_s: float
    evict_s: float
    cost: float
    score: float


def _victim_costs(snapshot: Snapshot, view: View, settings: RoutingSettings) -> dict[str, float]:
    costs: dict[str, float] = {}
    for resident in snapshot.resident:
        profile = view.profiles.get(resident.model)
        reload_s = profile.load_s if profile else 0.0
        idle = view.idle_s.get(resident.model, resident.idle_s)
        costs[resident.model] = reload_s * _recency(
            idle, resident.pinned or resident.warm, settings.recency_half_life_s
        )
    return costs


def _option(
    spec: ModelSpec,
    task: TaskClass,
    needed: int,
    view: View,
    settings: RoutingSettings,
    residency: bool,
    costs: Mapping[str, float],
    contested: Mapping[str, Sequence[Claim]] | None = None,
    fits: Mapping[str, Mapping[TaskClass, float]] | None = None,
    refused: dict[str, LoadPlan] | None = None,
    likely: Mapping[TaskClass, float] | None = None,
) -> _Option | None:
    """The best way to run ``spec`` for this request, or None if it cannot hold it.

    ``costs``: each resident model's expected cost of being evicted, on ``spec``'s host;
    ``contested``: models other sessions are working with alongside, and their claims;
    ``fits``: every model's task fit (needed with ``contested``); ``refused`` gets the plan
    of a model whose context holds the request but whose host's memory does not; ``likely``:
    the class probabilities, when the classifier gives them (then the fit is expected fit)."""
    if needed > spec.num_ctx:
        return None
    fit = expected_fit(spec, task, likely)
    snapshot = view.snapshots.get(spec.backend)
    profile = view.profiles.get(spec.name)
    if snapshot is None or profile is None:
        # Nothing to load (an upstream that keeps its own models) or nothing known about its
        # size: one context size, the configured one, unless it is loaded larger already.
        loaded = snapshot.find(spec.name) if snapshot is not None else None
        size = loaded.num_ctx if loaded is not None and loaded.num_ctx >= needed else spec.num_ctx
        return _Option(spec, needed, size, None, 0.0, 0.0, 0.0, fit)
    resident = snapshot.find(spec.name)
    if resident is not None and resident.num_ctx >= needed:
        rungs = [resident.num_ctx]  # never shrink a loaded model
    else:
        rungs = [size for size in ladder_for(spec, settings.ctx_ladder) if size >= needed]
    if not rungs:
        return None
    load = plan(snapshot, profile, rungs[0], costs)
    if not load.fits:
        if refused is not None:
            refused[spec.name] = load
        return None
    if load.loads and len(rungs) > 1:
        # The largest context that evicts nothing more: headroom is worth no extra eviction.
        room = room_after(snapshot, load)
        num_ctx = max(rung for rung in rungs if profile.footprint(rung) <= room)
        if num_ctx != rungs[0]:
            load = LoadPlan(
                load.model,
                num_ctx,
                loads=True,
                reload=load.reload,
                evicts=load.evicts,
                waits_for=load.waits_for,
                footprint=profile.footprint(num_ctx),
            )
    load_s = profile.load_s if load.loads else 0.0
    shared = 0.0  # fit that sessions alongside lose by sharing this model instead of theirs
    turns = EXPECTED_TURNS[task]
    charged = list(load.evicts)  # evicted models whose reload is charged
    if contested and fits and not contested.keys().isdisjoint(load.evicts):
        charged = []
        for model in load.evicts:
            claims = contested.get(model, ())
            bounce = not claims or any(spec.name not in claim.holds for claim in claims)
            if claims and bounce:
                turns = 1.0  # it loads its model back at its next request: this serves one
            if bounce:
                charged.append(model)
            for claim in claims:
                if spec.name in claim.holds:
                    lost = fits[model][claim.task] - spec.task_fit[claim.task]
                    shared += max(lost, 0.0) * EXPECTED_TURNS[claim.task]
    evict_s = sum(costs.get(model, 0.0) for model in charged)
    evict_s += sum(view.busy_s.get(model, BUSY_WAIT_S) for model in load.waits_for)
    cost = (settings.load_cost_per_s * (load_s + evict_s) + shared) / turns
    score = fit - cost if residency else fit
    return _Option(spec, needed, load.num_ctx, load, load_s, evict_s, cost, score)


def expected_fit(
    spec: ModelSpec, task: TaskClass, likely: Mapping[TaskClass, float] | None
) -> float:
    """``spec``'s fit for the request: for ``task``, or weighted by the class probabilities
    (an uncertain request is worth most to the model that serves both likely classes)."""
    if not likely:
        return spec.task_fit[task]
    return sum(p * spec.task_fit[cls] for cls, p in likely.items())


def _on_silent_hosts(options: list[_Option], view: View) -> list[_Option]:
    """Options on an Ollama host that did not answer its last ``/api/ps``, or that the view
    says to avoid (cooling down), when some other option remains: those are skipped. If
    every option is on such a host none is skipped, and the request gets the backend's own
    error (a 503 with Retry-After when it is down)."""
    avoid = view.avoid
    silent = [
        o
        for o in options
        if not view.snapshots.get(o.spec.backend, _ANSWERS).known
        or (avoid and _avoided(o.spec, avoid) is not None)
    ]
    return silent if len(silent) < len(options) else []


def _avoided(spec: ModelSpec, avoid: Mapping[str, str]) -> str | None:
    return avoid.get(spec.backend) or avoid.get(f"{spec.backend}/{spec.name}")


def _spread(options: list[_Option], view: View, settings: RoutingSettings) -> None:
    """A model a pool serves from several hosts: charge each host's placement the wait behind
    the requests already running or queued there, so concurrent sessions spread over the
    pool instead of queueing on one host (a load elsewhere is worth it when the wait is
    longer)."""
    hosts: dict[str, int] = {}
    for option in options:
        hosts[option.spec.name] = hosts.get(option.spec.name, 0) + 1
    for i, option in enumerate(options):
        if hosts[option.spec.name] < 2:
            continue
        snapshot = view.snapshots.get(option.spec.backend)
        resident = snapshot.find(option.spec.name) if snapshot is not None else None
        if resident is None or not resident.in_flight:
            continue
        wait_s = resident.in_flight * view.busy_s.get(option.spec.name, BUSY_WAIT_S)
        cost = settings.load_cost_per_s * wait_s
        options[i] = replace(option, cost=option.cost + cost, score=option.score - cost)


def _sorted(names: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(names))


_ANSWERS = Snapshot(Budget(0, 0))  # stands in for a backend with no residency: never silent
_NEEDED_FOR = {"vision": "images", "tools": "tools", "insert": "a suffix (fill in the middle)"}
_PARAM = {"vision": "messages", "insert": "suffix", "tools": "tools"}


def what_needs(needs: frozenset[str], joiner: str = " and ") -> str:
    """What in a request asks for these capabilities, in the user's words."""
    return joiner.join(_NEEDED_FOR.get(need, need) for need in _sorted(needs))


def need_param(needs: frozenset[str]) -> str | None:
    """The request field that carries what needs these capabilities."""
    return next((param for need, param in _PARAM.items() if need in needs), None)


def _not_capable(needs: frozenset[str], rejected: Sequence[Candidate]) -> ModelNotCapable:
    """The error for a request that no configured model can take."""
    what = what_needs(needs)
    lacking = "; ".join(f"{c.model} lacks {', '.join(c.lacks)}" for c in rejected)
    reason = f"the request carries {what}, which no configured model takes ({lacking})"
    return ModelNotCapable(
        f"{reason}: add a model that does to config/models.yaml (for images, a vision model "
        f"such as llama4 or qwen2.5vl, pulled into Ollama), or remove them from the conversation",
        reason=reason,
        param=need_param(needs),
    )


def _gb(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def _too_long(
    needed: int, capable: Sequence[ModelSpec], refused: Mapping[str, LoadPlan], view: View
) -> ContextLengthExceeded:
    """The error for a request no model can hold, naming the limit that bites.

    Either no model's context holds it, or one does but its host's memory cannot hold the
    model at that context (beside what is pinned there): the figures and the setting differ.
    """
    held = [spec for spec in capable if spec.name in refused]
    if not held:
        largest = max(capable, key=lambda spec: spec.num_ctx)
        reason = (
            f"the request needs about {needed} tokens (prompt plus reserved output) but the "
            f"largest local context is {largest.num_ctx} ({largest.name})"
        )
        return ContextLengthExceeded(
            f"{reason}: start a new task or shorten the conversation",
            reason=reason,
            param="messages",
        )
    spec = min(held, key=lambda s: refused[s.name].footprint)
    load = refused[spec.name]
    snapshot = view.snapshots.get(spec.backend)
    budget = snapshot.budget if snapshot is not None else Budget(0, 0)
    has = (
        f"{_gb(budget.total)} for models ({_gb(budget.vram_bytes)} VRAM + "
        f"{_gb(budget.ram_bytes)} RAM - {_gb(budget.reserve_bytes)} reserve)"
    )
    where = "routing.budget" if spec.backend == "ollama" else f"ollama_hosts[{spec.backend}]"
    if load.blocked_by:
        pinned = ", ".join(load.blocked_by)
        reason = (
            f"the request needs about {needed} tokens, which {spec.name}'s context "
            f"({spec.num_ctx}) holds, but at num_ctx {load.num_ctx} it needs "
            f"{_gb(load.footprint)} and host {spec.backend} keeps pinned {pinned} "
            f"(keep_alive -1), which the router never evicts; the host has {has}"
        )
        todo = (
            f"unpin {pinned} (its keep_alive in config/models.yaml), start a new task or "
            f"shorten the conversation"
        )
    else:
        reason = (
            f"the request needs about {needed} tokens, which {spec.name}'s context "
            f"({spec.num_ctx}) holds, but the memory does not: at num_ctx {load.num_ctx} it "
            f"needs {_gb(load.footprint)} and host {spec.backend} has {has}"
        )
        todo = (
            f"if the machine has more memory, state it in {where} (vram_bytes, ram_bytes); "
            f"otherwise start a new task or shorten the conversation"
        )
    return ContextLengthExceeded(f"{reason}: {todo}", reason=reason, param="messages")


def _candidate(option: _Option, task: TaskClass) -> Candidate:
    load = option.load
    return Candidate(
        model=option.spec.name,
        backend=option.spec.backend,
        task_fit=option.spec.task_fit[task],  # the class's; the score weighs the likely ones
        num_ctx=option.num_ctx,
        fits=True,
        score=round(option.score, 4),
        loads=bool(load and load.loads),
        evicts=load.evicts if load else (),
        load_s=round(option.load_s, 2),
        cost=round(option.cost, 4),
    )


def choose(
    task: TaskClass,
    prompt_tokens: int,
    output_tokens: int,
    catalog: Sequence[ModelSpec],
    view: View,
    settings: RoutingSettings,
    reasons: Sequence[str] = (),
    session: SessionChoice | None = None,
    *,
    session_key: str | None = None,
    signals: dict[str, Any] | None = None,
    needs: frozenset[str] = frozenset(),
    contested: Mapping[str, Sequence[Claim]] | None = None,
    likely: Mapping[TaskClass, float] | None = None,
    bank_read: bool = False,
) -> Decision:
    """Pick the model, ``num_ctx`` and keep_alive for a request of class ``task``.

    ``needs``: capabilities the request needs (``ChatCompletionRequest.needs``); a model known
    to lack one is no candidate. ``contested``: models that other sessions are working with
    alongside this one and that suit their requests best, with those sessions' claims.
    ``session_key`` and ``signals`` are carried into the decision as they are (the engine's
    record of the request). ``likely``: the class probabilities, when the classifier gives
    them: each model's fit is then its expected fit over them. ``bank_read``: the agent reads
    the memory bank inside a task's loop (its rules ask for it at the start of every task),
    which does not end the loop: the session keeps its model."""
    residency = settings.policy == "residency"
    fits = {spec.name: spec.task_fit for spec in catalog} if contested else None
    options: list[_Option] = []
    rejected: list[Candidate] = []
    refused: dict[str, LoadPlan] = {}  # context holds it, memory does not
    costs: dict[str, dict[str, float]] = {}  # per host
    for spec in catalog:
        if needs and (lacks := needs - view.capabilities.get(spec.name, needs)):
            fit = spec.task_fit[task]
            rejected.append(
                Candidate(
                    spec.name, spec.backend, fit, spec.num_ctx, False, 0.0, lacks=_sorted(lacks)
                )
            )
            continue
        needed = round(prompt_tokens * view.token_ratio.get(spec.name, 1.0)) + output_tokens
        snapshot = view.snapshots.get(spec.backend)
        if snapshot is not None and spec.backend not in costs:
            costs[spec.backend] = _victim_costs(snapshot, view, settings)
        option = _option(
            spec, task, needed, view, settings, residency, costs.get(spec.backend, {}),
            contested, fits, refused, likely,
        )  # fmt: skip
        if option is None:
            fit = spec.task_fit[task]
            rejected.append(Candidate(spec.name, spec.backend, fit, spec.num_ctx, False, 0.0))
        else:
            options.append(option)
    if len(options) > len({o.spec.name for o in options}):
        _spread(options, view, settings)
    down = _on_silent_hosts(options, view)
    if down:
        options = [o for o in options if all(o is not d for d in down)]
        for o in down:
            fit = o.spec.task_fit[task]
            rejected.append(Candidate(o.spec.name, o.spec.backend, fit, o.num_ctx, False, 0.0))
    if not options:
        lacking = {c.model for c in rejected if c.lacks}
        capable = [spec for spec in catalog if spec.name not in lacking]
        if not capable:
            raise _not_capable(needs, rejected)
        raise _too_long(prompt_tokens + output_tokens, capable, refused, view)
    why = list(reasons)
    why.extend(
        f"{o.spec.name} skipped: its host {o.spec.backend} does not answer"
        if not view.snapshots.get(o.spec.backend, _ANSWERS).known
        else f"{o.spec.name} skipped: {_avoided(o.spec, view.avoid)}"
        for o in down
    )
    evicting = {m for o in options if o.load for m in o.load.evicts} if contested else set()
    if residency and contested and (shared := sorted(contested.keys() & evicting)):
        why.append(
            f"another session is working with {', '.join(shared)} alongside: evicting it "
            f"is charged as the fit that session loses by sharing the model loaded instead"
        )
    why.extend(
        f"{name} skipped: loading it would unload pinned {', '.join(load.blocked_by)} "
        f"(keep_alive -1), which the router never evicts"
        for name, load in refused.items()
        if load.blocked_by
    )
    if rejected and (skipped := [c for c in rejected if c.lacks]):
        why.extend(f"{c.model} skipped: it lacks {', '.join(c.lacks)}" for c in skipped)
    chosen: _Option | None = None
    if settings.policy == "fixed":
        chosen = next((o for o in options if o.spec.name == settings.fixed_model), None)
        if chosen is not None:
            why.append(f"policy fixed: always {chosen.spec.name}")
    if chosen is None and session is not None and residency:
        kept = next(
            (
                o
                for o in options
                if o.spec.name == session.model
                and (session.backend is None or o.spec.backend == session.backend)
            ),
            None,
        )
        # Stay only where staying is free: a model another session's work has evicted since
        # (or one that would need a bigger context) is chosen again on its score.
        same = session.task == task or (task == "memory" and bank_read)
        if kept is not None and same and not (kept.load and kept.load.loads):
            chosen = kept
            why.append(f"the session stays on {kept.spec.name} inside its {task} loop")
    if chosen is None:
        chosen = max(options, key=lambda o: o.score)  # max keeps the first of equal scores
    load = chosen.load
    chosen_fit = expected_fit(chosen.spec, task, likely)
    if likely:
        odds = ", ".join(
            f"{cls} {p:.0%}"
            for cls, p in sorted(likely.items(), key=lambda kv: -kv[1])
            if p >= 0.05
        )
        why.append(f"fit weighed over the likely classes ({odds})")
    if load and load.loads:
        what = "reloads" if load.reload else "loads"
        gone = f", evicting {', '.join(load.evicts)}" if load.evicts else ""
        seconds = f"{chosen.load_s:.0f}" if chosen.load_s >= 10 else f"{chosen.load_s:.1f}"
        why.append(
            f"{task} -> {chosen.spec.name} (fit {chosen_fit:.2f}, {what} "
            f"~{seconds}s at num_ctx {chosen.num_ctx}{gone})"
        )
    else:
        where = "resident" if load else "no load"
        why.append(
            f"{task} -> {chosen.spec.name} (fit {chosen_fit:.2f}, {where}, "
            f"num_ctx {chosen.num_ctx})"
        )
    return Decision(
        model=chosen.spec.name,
        backend=chosen.spec.backend,
        num_ctx=chosen.num_ctx,
        keep_alive=chosen.spec.keep_alive,
        task=task,
        reasons=tuple(why),
        candidates=(*(_candidate(o, task) for o in options), *rejected),
        loads=bool(load and load.loads),
        reload=bool(load and load.reload),
        evicts=load.evicts if load else (),
        waits_for=load.waits_for if load else (),
        expected_load_s=round(chosen.load_s, 2),
        needed_tokens=chosen.needed,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        needs=needs,
        session=session_key,
        signals={} if signals is None else signals,
    )


def direct(
    spec: ModelSpec | Sequence[ModelSpec],
    prompt_tokens: int,
    output_tokens: int,
    view: View,
    settings: RoutingSettings,
    *,
    signals: dict[str, Any] | None = None,
    needs: frozenset[str] = frozenset(),
) -> Decision:
    """The decision for a request that names a concrete model: that model, under the rules
    a routed request gets (its context must hold the request, its host's memory must hold
    it at that context, ``num_ctx`` stays at the size it is loaded at when that holds the
    prompt, pinned models stay). ``spec``: the model, or its placements on a pool's hosts
    (the policy then picks the host)."""
    specs = [spec] if isinstance(spec, ModelSpec) else list(spec)
    # With one model in the catalog the task changes nothing but the words of the reason.
    decision = choose(
        "chat", prompt_tokens, output_tokens, specs, view, settings, signals=signals, needs=needs
    )
    if decision.loads:
        what = "reloads" if decision.reload else "loads"
        gone = f", evicting {', '.join(decision.evicts)}" if decision.evicts else ""
        how = f"{what} ~{decision.expected_load_s:.1f}s at num_ctx {decision.num_ctx}{gone}"
    else:
        how = f"num_ctx {decision.num_ctx}"
    return replace(
        decision,
        task=None,
        routed=False,
        reasons=(*decision.reasons[:-1], f"client asked for {decision.model} ({how})"),
    )


def passthrough(spec: ModelSpec) -> Decision:
    """The decision for a request that names a concrete model: run it as asked."""
    return Decision(
        model=spec.name,
        backend=spec.backend,
        num_ctx=spec.num_ctx,
        keep_alive=spec.keep_alive,
        task=None,
        reasons=(f"client asked for {spec.name}",),
        routed=False,
    )
