"""The choice: task fit minus switch cost on the reference machine's real model sizes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from memory_router.domain import TaskClass
from memory_router.errors import ContextLengthExceeded
from memory_router.routing.decision import Decision
from memory_router.routing.policy import (
    EXPECTED_TURNS,
    Claim,
    SessionChoice,
    View,
    _option,
    choose,
    ladder_for,
)
from memory_router.routing.residency import Budget, LoadPlan, Profile, Resident, Snapshot, plan
from memory_router.settings import ModelSpec, RoutingSettings, load_settings
from tests.ollama_emulator import reference_profile

REPO = Path(__file__).resolve().parents[2]
CATALOG: list[ModelSpec] = load_settings(REPO / "config", environ={}, env_file=None).models.models
CATALOG_BY_NAME = {spec.name: spec for spec in CATALOG}
FAST, CODER, LONG = "qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"
EVERY = frozenset({FAST, CODER, LONG})
GIB = 1024**3
BUDGET = Budget(16 * GIB, 128 * GIB, 2 * GIB)
DISK = 2e9  # bytes per second: the load-time prior


def profiles() -> dict[str, Profile]:
    """The emulator's reference sizes, as the monitor would read them from Ollama."""
    return {
        name: Profile(
            name,
            spec.weights_bytes,
            spec.kv_bytes_per_token,
            spec.overhead_bytes,
            load_s=spec.weights_bytes / DISK,
        )
        for name, spec in reference_profile().models.items()
    }


def resident(model: str, num_ctx: int = 32768, **extra: object) -> Resident:
    profile = profiles()[model]
    size = profile.footprint(num_ctx)
    defaults: dict[str, object] = {"size_vram": min(size, 16 * GIB), "idle_s": 5.0}
    defaults.update(extra)
    return Resident(model, num_ctx, size, **defaults)  # type: ignore[arg-type]


def view(*loaded: Resident, budget: Budget = BUDGET) -> View:
    return View(snapshots={"ollama": Snapshot(budget, tuple(loaded))}, profiles=profiles())


def decide(
    task: TaskClass,
    the_view: View,
    prompt: int = 3000,
    policy: str = "residency",
    session: SessionChoice | None = None,
    **settings: object,
) -> Decision:
    config = RoutingSettings.model_validate({"policy": policy, **settings})
    return choose(task, prompt, 4096, CATALOG, the_view, config, (), session)


def test_best_fit_ignores_what_is_loaded() -> None:
    decision = decide("meta", view(resident(CODER)), policy="best_fit")
    assert decision.model == FAST
    assert decision.loads is True
    assert decision.evicts == (CODER,)


def test_a_one_off_housekeeping_turn_stays_on_the_resident_coder() -> None:
    decision = decide("meta", view(resident(CODER)))
    assert decision.model == CODER
    assert decision.loads is False
    fast = next(c for c in decision.candidates if c.model == FAST)
    assert fast.loads and fast.evicts == (CODER,)
    assert fast.score < 0.60  # fit 0.95 minus a load and the coder's reload


def test_an_implementation_loop_is_worth_loading_the_coder() -> None:
    decision = decide("implement", view(resident(FAST, warm=True)))
    assert decision.model == CODER
    assert decision.evicts == (FAST,)
    assert "loads ~9.9s at num_ctx 32768, evicting qwen3:30b-a3b" in decision.reasons[-1]


def test_analysis_stays_on_a_resident_model_rather_than_load_the_largest() -> None:
    assert decide("analyze", view(resident(CODER))).model == CODER
    assert decide("analyze", view(resident(FAST))).model == FAST
    # With nothing loaded, nothing is evicted: the best fit is worth its load.
    assert decide("analyze", view()).model == LONG


def fast_cost(loaded: Resident) -> float:
    decision = decide("memory", view(loaded))
    return next(c.cost for c in decision.candidates if c.model == FAST)


def test_evicting_a_model_idle_for_long_costs_little() -> None:
    fresh = fast_cost(resident(CODER, idle_s=1.0))
    stale = fast_cost(resident(CODER, idle_s=6 * 3600.0))
    only_load = 0.03 * (profiles()[FAST].load_s) / 4  # memory work: four turns a load
    assert stale == pytest.approx(only_load, abs=1e-3)
    assert fresh == pytest.approx(only_load + 0.03 * profiles()[CODER].load_s / 4, abs=2e-3)
    # A warm model costs its full reload however long it has been idle.
    warm = fast_cost(resident(CODER, idle_s=6 * 3600.0, warm=True))
    assert warm == pytest.approx(fresh, abs=2e-3)


def test_num_ctx_is_never_shrunk_on_a_loaded_model() -> None:
    decision = decide("implement", view(resident(CODER, 32768)), prompt=100)
    assert decision.num_ctx == 32768
    assert decision.loads is False


def test_a_loaded_model_too_small_for_the_prompt_is_reloaded_larger() -> None:
    the_view = view(resident(CODER, 8192))
    decision = decide("implement", the_view, prompt=9000)
    assert decision.model == CODER
    assert decision.reload is True
    assert decision.num_ctx == 32768


def test_a_cold_model_gets_the_largest_rung_that_evicts_nothing_more() -> None:
    # Nothing else loaded: the whole ladder up to the configured num_ctx is free headroom.
    assert decide("implement", view(), prompt=100).num_ctx == 32768
    # With no GPU room to spare beside a busy model, a small rung keeps it resident.
    roomy = Budget(19 * GIB + 23_500_000_000, 128 * GIB, 0)  # coder fits only at 8192
    busy = resident(FAST, 8192, in_flight=1, size_vram=19 * GIB)
    decision = decide("implement", view(busy, budget=roomy), prompt=100)
    assert decision.model == CODER
    assert decision.evicts == ()
    assert decision.num_ctx == 8192


def test_ladder_is_capped_at_the_configured_num_ctx() -> None:
    coder = next(spec for spec in CATALOG if spec.name == CODER)
    assert ladder_for(coder, [8192, 16384, 32768, 65536, 131072]) == [8192, 16384, 32768]
    long = next(spec for spec in CATALOG if spec.name == LONG)
    assert ladder_for(long, [8192, 100000]) == [8192, 100000, 131072]


def test_a_busy_model_is_evicted_only_as_a_last_resort() -> None:
    busy_coder = resident(CODER, in_flight=2)
    decision = decide("memory", view(busy_coder), policy="best_fit")
    assert decision.model == FAST
    assert decision.waits_for == (CODER,)
    # The residency policy charges the wait: it serves memory work on the busy coder.
    assert decide("memory", view(busy_coder)).model == CODER


def test_a_session_keeps_its_model_inside_its_loop() -> None:
    the_view = view(resident(FAST, warm=True, idle_s=1.0))
    kept = SessionChoice(FAST, "implement", 32768)
    decision = decide("implement", the_view, session=kept)
    assert decision.model == FAST
    assert "the session stays on qwen3:30b-a3b inside its implement loop" in decision.reasons
    # A new kind of work is a decision point again.
    changed = decide("analyze", the_view, session=SessionChoice(CODER, "implement", 32768))
    assert changed.model == FAST


def test_a_session_does_not_keep_a_model_its_context_outgrew() -> None:
    kept = SessionChoice(CODER, "implement", 32768)
    decision = decide("implement", view(resident(CODER)), prompt=40000, session=kept)
    assert decision.model == LONG


def test_fixed_policy_always_runs_the_fixed_model() -> None:
    decision = decide("meta", view(resident(FAST)), policy="fixed", fixed_model=CODER)
    assert decision.model == CODER
    assert f"policy fixed: always {CODER}" in decision.reasons


def test_nothing_fits_names_the_largest_local_context() -> None:
    with pytest.raises(ContextLengthExceeded) as info:
        decide("analyze", view(), prompt=131072)
    assert info.value.code == "context_length_exceeded"
    assert "the largest local context is 131072 (llama4:16x17b)" in info.value.message


def test_token_correction_moves_a_model_out_of_reach() -> None:
    # 30,000 cl100k tokens fit the coder's 32768; a tokenizer counting 20% more does not.
    the_view = View(profiles=profiles(), token_ratio={CODER: 1.2})
    assert decide("implement", View(), prompt=28000).model == CODER
    assert decide("implement", the_view, prompt=28000).model == LONG


def test_a_session_does_not_reload_its_model_over_a_busy_one() -> None:
    # Another session evicted the fast model and is running on the coder now.
    busy = view(resident(CODER, in_flight=1))
    decision = decide("memory", busy, prompt=9000, session=SessionChoice(FAST, "memory", 32768))
    assert decision.model == CODER
    assert decision.loads is False


def test_a_load_that_waits_for_a_busy_model_still_gets_headroom() -> None:
    busy = view(resident(CODER, in_flight=1))
    decision = decide("memory", busy, prompt=9000, policy="best_fit")
    assert decision.model == FAST
    assert decision.waits_for == (CODER,)
    assert decision.num_ctx == 32768  # not the smallest rung that holds 13k tokens


def test_the_wait_for_a_busy_model_is_what_its_requests_take() -> None:
    busy = resident(CODER, in_flight=1)
    slow = View(snapshots=view(busy).snapshots, profiles=profiles(), busy_s={CODER: 300.0})
    quick = View(snapshots=view(busy).snapshots, profiles=profiles(), busy_s={CODER: 0.5})
    fast_cost = {
        name: next(c.cost for c in decide("memory", v).candidates if c.model == FAST)
        for name, v in (("slow", slow), ("quick", quick))
    }
    assert fast_cost["slow"] > fast_cost["quick"]
    assert decide("memory", quick).model == FAST  # a short wait is worth the better fit
    assert decide("memory", slow).model == CODER


def _walk(
    snapshot: Snapshot, profile: Profile, rungs: list[int], costs: dict[str, float]
) -> LoadPlan | None:
    """Every rung planned, smallest first, kept while the evictions stay the same."""
    best = None
    for rung in rungs:
        load = plan(snapshot, profile, rung, costs)
        if not load.fits:
            break
        if best is not None and (load.evicts, load.waits_for) != (best.evicts, best.waits_for):
            break
        best = load
    return best


@pytest.mark.parametrize("seed", range(300))
def test_the_context_size_is_the_largest_that_evicts_nothing_more(seed: int) -> None:
    # Against planning every rung one by one, on random hosts (sizes, in-flight requests,
    # placement rules) and random models.
    rng = random.Random(seed)
    names = [f"m{i}" for i in range(4)]
    loaded = tuple(
        Resident(
            name,
            rng.choice([4096, 8192, 32768]),
            size := rng.randint(1, 40) * GIB,
            rng.randint(0, size),
            in_flight=rng.choice([0, 0, 1, 3]),
            idle_s=rng.uniform(0, 600),
        )
        for name in rng.sample(names, rng.randint(0, 3))
    )
    budget = Budget(rng.randint(0, 48) * GIB, rng.randint(0, 128) * GIB, rng.randint(0, 4) * GIB)
    snapshot = Snapshot(budget, loaded, rng.randint(1, 3), rng.random() < 0.5)
    name = rng.choice(names)
    profile = Profile(name, rng.randint(1, 70) * GIB, rng.choice([0, 24_576, 262_144]))
    spec = next(s for s in CATALOG if s.name == CODER).model_copy(
        update={"name": name, "num_ctx": rng.choice([32768, 131072, 262144])}
    )
    needed = rng.randint(100, 140_000)
    settings = RoutingSettings()
    costs = {r.model: rng.uniform(0, 30) for r in loaded}
    the_view = View({"ollama": snapshot}, {name: profile})
    option = _option(spec, "implement", needed, the_view, settings, True, costs)
    current = snapshot.find(name)
    if needed > spec.num_ctx:
        assert option is None
        return
    if current is not None and current.num_ctx >= needed:
        rungs = [current.num_ctx]
    else:
        rungs = [size for size in ladder_for(spec, settings.ctx_ladder) if size >= needed]
    expected = _walk(snapshot, profile, rungs, costs)
    if expected is None:
        assert option is None
        return
    assert option is not None and option.load is not None
    assert option.num_ctx == expected.num_ctx
    assert option.load == expected


def test_the_context_size_stays_within_the_hosts_total_memory() -> None:
    # VRAM beside a CPU-only runner is free, but the host's total (VRAM plus RAM less the
    # reserve) is smaller: no rung past the total, though it would fit in the free VRAM.
    snapshot = Snapshot(Budget(16 * GIB, 0, 2 * GIB), (Resident("other", 8192, GIB, 0),))
    profile = Profile("m", 8 * GIB, 65_536, overhead_bytes=0)  # +0.5 GiB per 8k of context
    spec = next(s for s in CATALOG if s.name == CODER).model_copy(
        update={"name": "m", "num_ctx": 131072}
    )
    the_view = View({"ollama": snapshot}, {"m": profile})
    option = _option(spec, "implement", 4000, the_view, RoutingSettings(), True, {})
    assert option is not None
    assert option.num_ctx == 65536  # 12 GiB; 131072 would be 16 GiB, over the total of 14
    assert option.load == plan(snapshot, profile, 65536, {})


def test_a_silent_host_is_skipped_only_while_another_answers() -> None:
    # The coder's host missed its last /api/ps; this machine answers.
    spec = {**CATALOG_BY_NAME[CODER].model_dump(), "backend": "gpu2"}
    catalog = [CATALOG_BY_NAME[FAST], ModelSpec.model_validate(spec), CATALOG_BY_NAME[LONG]]
    here = Snapshot(BUDGET, (resident(FAST, warm=True),))
    silent = Snapshot(BUDGET, known=False)
    settings = RoutingSettings.model_validate({"policy": "residency"})
    the_view = View({"ollama": here, "gpu2": silent}, profiles())
    decision = choose("implement", 3000, 4096, catalog, the_view, settings)
    assert decision.model != CODER
    assert f"{CODER} skipped: its host gpu2 does not answer" in decision.reasons
    assert not next(c for c in decision.candidates if c.model == CODER).fits
    # Every host silent: nothing is skipped, and the backend answers 503 with Retry-After.
    dark = View({"ollama": Snapshot(BUDGET, known=False), "gpu2": silent}, profiles())
    assert choose("implement", 3000, 4096, catalog, dark, settings).model == CODER


def test_a_model_another_workspace_works_with_is_shared_rather_than_swapped() -> None:
    """Two Cline windows, room for one model: the coder is resident and the other window is
    in its implementation loop on it. Memory work here stays on the coder instead of
    evicting it (the other window would lose 0.25 of fit for 8 turns; this one gains 0.35
    for 4)."""
    the_view = view(resident(CODER, idle_s=1.0))
    alone = decide("memory", the_view)
    assert alone.model == FAST and alone.evicts == (CODER,)
    config = RoutingSettings()
    shared = choose(
        "memory",
        3000,
        4096,
        CATALOG,
        the_view,
        config,
        (),
        contested={CODER: [Claim("implement", EVERY)]},
    )
    assert shared.model == CODER and not shared.loads
    assert (
        "another session is working with qwen2.5-coder:32b alongside: evicting it is "
        "charged as the fit that session loses by sharing the model loaded instead"
    ) in shared.reasons
    fast = next(c for c in shared.candidates if c.model == FAST)
    assert fast.cost > next(c for c in alone.candidates if c.model == FAST).cost


def test_the_session_with_more_at_stake_takes_the_gpu() -> None:
    """The other way round: the fast model is resident for the other window's memory work.
    An implementation loop here is worth more than its memory turns: the coder loads."""
    the_view = view(resident(FAST, warm=True, idle_s=1.0))
    config = RoutingSettings()
    taken = choose(
        "implement",
        3000,
        4096,
        CATALOG,
        the_view,
        config,
        (),
        contested={FAST: [Claim("memory", EVERY)]},
    )
    assert taken.model == CODER and taken.evicts == (FAST,)
    # A model the other window would leave anyway costs it nothing.
    alone = choose("implement", 3000, 4096, CATALOG, the_view, config, ())
    coder = [next(c for c in d.candidates if c.model == CODER) for d in (taken, alone)]
    assert coder[0].cost > coder[1].cost
    # The charge: this load, plus the fit the other window loses by sharing the coder for
    # its memory turns (0.95 - 0.60 over 4); not the fast model's reload, as it shares.
    expected = (
        config.load_cost_per_s * profiles()[CODER].load_s + 0.35 * EXPECTED_TURNS["memory"]
    ) / EXPECTED_TURNS["implement"]
    assert coder[0].cost == pytest.approx(expected, abs=1e-4)


def test_the_engine_shares_the_coder_with_a_window_implementing_on_it() -> None:
    from memory_router.routing.engine import RoutingEngine
    from tests.unit.test_classify import in_workspace, request, user

    the_view = view(resident(CODER, idle_s=1.0))
    ask = "What does the memory bank say about auth?"
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    assert engine.decide(in_workspace("/src/b", ask), the_view, remember=False).model == FAST
    fix = "Refactor app/billing.py to use Decimal and fix the failing test"
    assert engine.decide(in_workspace("/src/a", fix), the_view).model == CODER
    shared = engine.decide(in_workspace("/src/b", ask), the_view)
    assert shared.task == "memory" and shared.model == CODER
    assert shared.signals["contested"] == [CODER]  # in the decision log
    # The window that is implementing is not held back by its own memory work.
    system = {"role": "system", "content": "You are Cline.\nCurrent Working Directory: /src/a\n"}
    done = {"role": "assistant", "content": "Done: billing uses Decimal, the test passes."}
    update = request(system, user(f"<task>\n{fix}\n</task>"), done, user("update memory bank"))
    own = engine.decide(update, the_view)
    assert own.task == "memory" and own.model == FAST


def test_the_engine_shares_the_coder_with_a_second_window_on_one_checkout() -> None:
    from memory_router.routing.engine import RoutingEngine
    from tests.unit.test_classify import in_workspace

    the_view = view(resident(CODER, idle_s=1.0))
    ask = in_workspace("/src/a", "What does the memory bank say about auth?")
    fix = in_workspace("/src/a", "Refactor app/billing.py to use Decimal and fix the failing test")
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    implementing = engine.decide(fix, the_view)
    assert implementing.model == CODER and implementing.session is not None
    engine.replied(implementing.session, working=True)  # it edits a file: back in a moment
    shared = engine.decide(ask, the_view)  # another task in the checkout meanwhile
    assert shared.model == CODER and shared.signals["contested"] == [CODER]
    assert any("another session is working with" in reason for reason in shared.reasons)
    # The implementation's answer hands the turn to its user: that task is done, and a
    # task started now is the same developer's next one, free to swap to the fast model.
    engine.replied(implementing.session, working=False)
    alone = engine.decide(in_workspace("/src/a", "Follow your custom instructions."), the_view)
    assert alone.model == FAST and "contested" not in alone.signals


def test_a_session_that_cannot_share_the_newcomer_is_not_evicted_for_a_swap() -> None:
    """The other window's conversation fits only llama4: evicting it would have that window
    load llama4 back at its next request, so the load here would serve one turn and the
    eviction costs llama4's reload. Implementation here shares llama4 instead."""
    the_view = view(resident(LONG, idle_s=0.0))  # just used: its reload counts in full
    config = RoutingSettings()
    alone = choose("implement", 3000, 4096, CATALOG, the_view, config, ())
    assert alone.model == CODER
    claim = {LONG: [Claim("analyze", frozenset({LONG}))]}
    kept = choose("implement", 3000, 4096, CATALOG, the_view, config, (), contested=claim)
    assert kept.model == LONG and not kept.loads
    coder = next(c for c in kept.candidates if c.model == CODER)
    profile = profiles()
    expected = config.load_cost_per_s * (profile[CODER].load_s + profile[LONG].load_s)
    assert coder.cost == pytest.approx(expected, abs=1e-4)  # over one turn, reload included


# --- pinned models, the limit that bites, concrete models --------------------------------


def test_a_pinned_model_is_never_evicted_and_the_choice_says_why() -> None:
    # The fast model is pinned (keep_alive -1) and fills the GPU: the coder and the long
    # model would each have to unload it, so an implementation turn runs beside it, on it.
    the_view = view(resident(FAST, pinned=True))
    decision = decide("implement", the_view)
    assert decision.model == FAST and decision.evicts == () and not decision.loads
    for other in (CODER, LONG):
        assert (
            f"{other} skipped: loading it would unload pinned {FAST} (keep_alive -1), "
            f"which the router never evicts"
        ) in decision.reasons
    # best_fit ignores what is loaded, but not a pin.
    assert decide("implement", the_view, policy="best_fit").evicts == ()
    # Merely warm, the same model is evicted for the coder's loop.
    assert decide("implement", view(resident(FAST, warm=True))).evicts == (FAST,)


def test_a_plan_never_lists_a_pinned_model_among_its_victims() -> None:
    pinned, idle = resident(FAST, pinned=True, idle_s=1e6), resident(CODER, idle_s=1e6)
    snapshot = Snapshot(Budget(48 * GIB, 128 * GIB, 2 * GIB), (pinned, idle), strict_gpu_fit=False)
    load = plan(snapshot, profiles()[LONG], 131072)
    assert FAST not in load.evicts
    blocked = plan(Snapshot(BUDGET, (pinned,)), profiles()[CODER], 32768)
    assert not blocked.fits and blocked.blocked_by == (FAST,) and blocked.evicts == ()


def test_when_memory_and_not_context_bites_the_error_says_so() -> None:
    # 72k tokens: only the long model's context (131072) holds them. On a 24 GB machine its
    # weights alone do not fit, whatever the context: the memory is the limit, not the context.
    small = Budget(24 * GIB, 0, 2 * GIB)
    with pytest.raises(ContextLengthExceeded) as caught:
        decide("analyze", view(budget=small), prompt=72765)
    message = caught.value.message
    assert "which llama4:16x17b's context (131072) holds, but the memory does not" in message
    assert "at num_ctx 131072 it needs 87.4 GiB" in message
    assert "host ollama has 22.0 GiB for models (24.0 GiB VRAM + 0.0 GiB RAM" in message
    assert "state it in routing.budget (vram_bytes, ram_bytes)" in message
    assert "largest local context" not in message
    # Beyond every context, the context is the limit.
    with pytest.raises(ContextLengthExceeded, match="the largest local context is 131072"):
        decide("analyze", view(), prompt=140000)


def test_when_a_pin_holds_the_memory_the_error_names_it() -> None:
    with pytest.raises(ContextLengthExceeded) as caught:
        decide("analyze", view(resident(FAST, pinned=True)), prompt=72765)
    assert f"keeps pinned {FAST} (keep_alive -1), which the router never evicts" in (
        caught.value.message
    )
    assert f"unpin {FAST}" in caught.value.message


def test_a_named_model_gets_the_routed_rules() -> None:
    from memory_router.routing.policy import direct

    config = RoutingSettings()
    coder = CATALOG_BY_NAME[CODER]
    # Loaded at 16384, a prompt that fits stays at 16384 rather than reloading at 32768.
    loaded = view(resident(CODER, 16384))
    decision = direct(coder, 3000, 4096, loaded, config)
    assert (decision.model, decision.num_ctx, decision.loads) == (CODER, 16384, False)
    assert decision.routed is False and decision.task is None
    assert decision.reasons[-1] == f"client asked for {CODER} (num_ctx 16384)"
    # Too long for its context: refused, as a routed request would be.
    with pytest.raises(ContextLengthExceeded, match=r"largest local context is 32768 \("):
        direct(coder, 67222, 4096, loaded, config)
    # It loads like a routed choice would: evicting what is in the way, never a pin.
    evicting = direct(coder, 3000, 4096, view(resident(FAST, warm=True)), config)
    assert evicting.loads and evicting.evicts == (FAST,)
    assert "loads ~9.9s at num_ctx 32768, evicting qwen3:30b-a3b" in evicting.reasons[-1]
    with pytest.raises(ContextLengthExceeded, match="keeps pinned"):
        direct(coder, 3000, 4096, view(resident(FAST, pinned=True)), config)


def test_a_pool_spreads_concurrent_work_and_keeps_a_session_on_its_host() -> None:
    coder = CATALOG_BY_NAME[CODER]
    pool = [coder.model_copy(update={"backend": host}) for host in ("ollama", "gpu2")]
    config = RoutingSettings()

    def on(busy_here: int, busy_there: int) -> View:
        return View(
            snapshots={
                "ollama": Snapshot(BUDGET, (resident(CODER, in_flight=busy_here),)),
                "gpu2": Snapshot(BUDGET, (resident(CODER, in_flight=busy_there),)),
            },
            profiles=profiles(),
        )

    idle = choose("implement", 3000, 4096, pool, on(0, 0), config)
    assert idle.backend == "ollama"  # equal: the first host of the pool
    assert choose("implement", 3000, 4096, pool, on(1, 0), config).backend == "gpu2"
    assert choose("implement", 3000, 4096, pool, on(2, 1), config).backend == "gpu2"
    assert choose("implement", 3000, 4096, pool, on(1, 2), config).backend == "ollama"
    # A session in its tool loop stays where it runs while that host holds the model.
    session = SessionChoice(CODER, "implement", 32768, backend="gpu2")
    kept = choose("implement", 3000, 4096, pool, on(0, 1), config, (), session)
    assert kept.backend == "gpu2"
