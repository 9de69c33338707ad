"""Residency simulation: Cline workloads, through the router, on the emulated reference
machine, under three routing policies.

The workload (``bench/residency_trace.py``) is replayed request by request, streamed like
Cline, through the real router over HTTP, in front of the Ollama emulator set up as the
reference machine (16 GiB VRAM, 128 GiB RAM, the three models at their real sizes, Ollama's
scheduler rules). Each policy gets a fresh emulator and a fresh router, and the same traces:

- ``fixed``: always ``qwen2.5-coder:32b``;
- ``best_fit``: the best task fit, residency ignored (Ollama evicts as it does);
- ``residency``: task fit minus the cost of the switch (ours).

Time is scaled: the emulator loads ``--load-scale`` seconds per GB of weights, the reference
disk reads 2 GB/s, so a reference second is ``2 x load_scale`` seconds here:

    reference_s = measured_s / (2 x load_scale)        (0.02 s/GB: x25)

The router is told the same: ``routing.budget.disk_bytes_per_s = 1e9 / load_scale`` (its
load-time prior matches the emulator before it learns from ``load_duration``), and its
``load_cost_per_s`` (fit per second of loading) is multiplied by ``1 / (2 x load_scale)``,
so that a load costs the same fit it would cost on the reference machine (``--raw-load-cost``
keeps the configured value instead). Other clocks are not scaled: the whole run lasts about
a minute, so no keep_alive runs out and every model counts as recently used.

``--sessions N`` replays N developers' traces at once against the same router and emulator
(``bench/residency_replay.py``): two Cline windows on one machine. Session 0 is the trace of
``--seed`` in ``/home/dev/src/ledgerline`` (``--sessions 1`` is the single developer); session
k > 0 the trace of seed ``seed + 1000 k`` in its own checkout ``/home/dev/src/ledgerline-k``,
so its system prompt, and with it every task's session identity, differs (``--one-checkout``:
both in the same checkout, told apart only by their tasks' first messages). Within a session
requests stay sequential with their think time; a 429 is retried as Cline does. The router's
queue limits are its defaults (``routing.queue``: 1 running and 8 waiting per model).

Figures per policy: load seconds (emulator LoadEvents after the warm-up), loads, num_ctx
reloads, evictions, mean task fit of the chosen model for each request's true label,
agreement of the router's class (decision log) with that label, p50/p95 client latency over
every request of every session, retries after 429 and errors; with several sessions also the
loads that evicted the model the other session had used last, and the slowest requests.

    HF_HUB_OFFLINE=1 ANONYMIZED_TELEMETRY=False .venv/bin/python bench/residency.py
    ... bench/residency.py --seed 3 --tasks 8 --policies best_fit,residency --load-scale 0.02
    ... bench/residency.py --sessions 2 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import contextvars
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere: tests.* is importable

from tests.conftest import RouterThread  # noqa: E402
from tests.ollama_emulator import OllamaEmulator, Script, reference_profile  # noqa: E402
from tests.ollama_emulator.chat import GenerationEndpoints  # noqa: E402
from tests.ollama_emulator.state import BODY  # noqa: E402

from memory_router.decision_log import read_records  # noqa: E402
from memory_router.logs import configure_logging  # noqa: E402
from memory_router.settings import RoutingSettings, load_settings  # noqa: E402
from residency_replay import ScriptBook, Sent, conversation, join_decisions, replay  # noqa: E402
from residency_trace import CONDENSE_AT, WS, TraceItem, build_trace  # noqa: E402

REFERENCE_DISK_GB_S = 2.0
GIB = 1024**3
WARM = "qwen3:30b-a3b"
POLICIES: dict[str, dict[str, Any]] = {
    "fixed": {"policy": "fixed", "fixed_model": "qwen2.5-coder:32b"},
    "best_fit": {"policy": "best_fit"},
    "residency": {"policy": "residency"},
}
TARGET_LOAD_RATIO = 1 / 3
TARGET_FIT_RATIO = 0.95


def _task_fit() -> dict[str, dict[str, float]]:
    models = yaml.safe_load((REPO / "config" / "models.yaml").read_text(encoding="utf-8"))
    return {m["name"]: m["task_fit"] for m in models["models"]}


def start_router(
    workdir: Path, ollama_url: str, policy: str, args: argparse.Namespace
) -> RouterThread:
    """A fresh router (in this process) on the shipped models.yaml, for one policy."""
    config = workdir / "config"
    config.mkdir(parents=True)
    for name in ("models.yaml", "task_examples.yaml"):
        if (REPO / "config" / name).exists():
            shutil.copy(REPO / "config" / name, config / name)
    routing: dict[str, Any] = {
        **POLICIES[policy],
        "warm_pinned": True,
        "load_cost_per_s": args.load_cost_per_s,
        "budget": {
            "vram_bytes": 16 * GIB,
            "ram_bytes": 128 * GIB,
            "disk_bytes_per_s": 1e9 / args.load_scale,
        },
    }
    server = {
        "ollama": {"base_url": ollama_url, "connect_timeout_s": 2},
        "embedded": {"mode": "never"},
        "memory": {"vector_store_path": str(workdir / "vectors")},
        "logging": {
            "level": "WARNING",
            "decision_log": {"path": str(workdir / "decisions.jsonl")},
        },
        "routing": routing,
    }
    (config / "server_config.yaml").write_text(yaml.safe_dump(server), encoding="utf-8")
    settings = load_settings(config, environ={}, env_file=None)
    return RouterThread(settings).start()


def wait_ready(router: RouterThread, emu: OllamaEmulator, timeout: float) -> dict[str, Any]:
    """Wait for the warm-up load of the warm model and for the classifier's examples."""
    started = time.monotonic()
    while time.monotonic() - started < 10 and not any(e.model == WARM for e in emu.loads):
        time.sleep(0.05)
    warmed = time.monotonic() - started
    service = cast(Any, router.server.config.app).app.state.service  # HotPath -> FastAPI
    wants_examples = bool(service.settings.task_examples) and (
        service.settings.config.routing.classifier.embedding
    )
    while wants_examples and getattr(service.engine, "examples", None) is None:
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.2)
    return {
        "warm_loads": [asdict(e) for e in emu.loads],
        "warm_wait_s": round(warmed, 2),
        "example_vote": getattr(service.engine, "examples", None) is not None,
        "ready_s": round(time.monotonic() - started, 2),
    }


def _script(item: TraceItem) -> Script:
    return Script(
        content=item.reply.content,
        tool_calls=[dict(call) for call in item.reply.tool_calls] or None,
        prompt_eval_count=item.prompt_tokens,
        chunk_chars=48,
    )


@contextlib.contextmanager
def scripts_by_conversation(book: ScriptBook) -> Iterator[None]:
    """Make the emulator answer each chat with the reply filed for its conversation instead of
    the next one in its FIFO: with sessions at once, requests reach it in another order. Its
    handler is wrapped so that the request's body is known where it picks the script."""
    handle, next_script = GenerationEndpoints._handle, GenerationEndpoints._next_script
    body: contextvars.ContextVar[Any] = contextvars.ContextVar("residency_body", default=None)

    async def _handle(self: GenerationEndpoints, request: Any, *, chat: bool) -> Any:
        token = body.set(request.get(BODY))
        try:
            return await handle(self, request, chat=chat)
        finally:
            body.reset(token)

    def _next_script(self: GenerationEndpoints, model: str) -> Script:
        current = body.get()
        messages = current.get("messages") if isinstance(current, dict) else None
        item = book.take(conversation(messages)) if messages else None
        return next_script(self, model) if item is None else _script(item)

    GenerationEndpoints._handle = _handle  # type: ignore[method-assign]
    GenerationEndpoints._next_script = _next_script  # type: ignore[method-assign]
    try:
        yield
    finally:
        GenerationEndpoints._handle = handle  # type: ignore[method-assign]
        GenerationEndpoints._next_script = next_script  # type: ignore[method-assign]


def run_policy(
    policy: str, traces: list[list[TraceItem]], args: argparse.Namespace
) -> dict[str, Any]:
    """Replay the sessions' traces at once under one policy, on a fresh emulator and router."""
    config = reference_profile()
    config.load_seconds_per_gb = args.load_scale
    config.token_delay_s = args.token_delay
    book = ScriptBook()
    with (
        tempfile.TemporaryDirectory(prefix=f"residency-{policy}-") as tmp,
        scripts_by_conversation(book),
        OllamaEmulator(config) as emu,
    ):
        workdir = Path(tmp)
        router = start_router(workdir, emu.base_url, policy, args)
        try:
            ready = wait_ready(router, emu, args.ready_timeout)
            warm_loads, warm_unloads = len(emu.loads), len(emu.unloads)
            sent = replay(router.base_url, book, traces)
        finally:
            router.stop()  # flushes the decision log
        loads = emu.loads[warm_loads:]
        unloads = emu.unloads[warm_unloads:]
        records = read_records(workdir / "decisions.jsonl")
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(workdir / "decisions.jsonl", args.keep_logs / f"{policy}.jsonl")
    problems = join_decisions(sent, records)
    if book.misses:
        problems.append(f"{book.misses} chats reached the emulator with no reply filed")
    elapsed = max((s.ended for s in sent), default=0.0)
    return summarize(policy, sent, loads, unloads, ready, elapsed, problems, args)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(round(q * (len(ordered) - 1)), len(ordered) - 1)]


def _between_sessions(answered: list[Sent]) -> dict[str, Any]:
    """Loads that evicted the model another session ran last (thrashing between sessions), the
    loads the router chose to keep a session on its model, those it planned with nothing to
    evict while another session ran on another model (Ollama then evicted), the slowest."""
    by_end = sorted(answered, key=lambda s: s.ended)
    cross = []
    for s in answered:
        for victim in s.evicted or []:
            before = [r for r in by_end if r.model == victim and r.ended <= s.ended and r is not s]
            if before and before[-1].session != s.session:
                cross.append(f"s{s.session}#{s.index} {s.label} -> {s.model} evicts {victim}")
    slowest = sorted(answered, key=lambda s: -s.latency_ms)[:5]
    loaded = [s for s in answered if s.caused_load]
    blind = [
        s
        for s in loaded
        if not s.evicted
        and any(
            o.session != s.session and o.model != s.model and o.started < s.started < o.ended
            for o in answered
        )
    ]
    return {
        "cross_session_evictions": len(cross),
        "cross_session_detail": cross,
        "sticky_loads": sum(bool(s.sticky) for s in loaded),
        "loads_planned_without_eviction": len(blind),
        "slowest": [
            f"s{s.session}#{s.index} {s.note} ({s.label}) -> {s.model}"
            f"{' load' if s.caused_load else ''}: {s.latency_ms:.0f} ms"
            for s in slowest
        ],
        "per_session": {
            n: {
                "requests": sum(s.session == n for s in answered),
                "caused_loads": sum(bool(s.caused_load) for s in answered if s.session == n),
                "p95_ms": round(
                    _percentile([s.latency_ms for s in answered if s.session == n], 0.95), 1
                ),
            }
            for n in sorted({s.session for s in answered})
        },
    }


def summarize(
    policy: str,
    sent: list[Sent],
    loads: list[Any],
    unloads: list[tuple[str, str]],
    ready: dict[str, Any],
    elapsed: float,
    problems: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    fit = _task_fit()
    answered = [s for s in sent if s.status == 200 and s.model in fit]
    fits = [fit[s.model][s.label] for s in answered if s.model is not None]
    load_s = sum(e.duration_s for e in loads)
    classified = [s for s in answered if s.cls is not None]
    latencies = [s.latency_ms for s in answered]
    return {
        "policy": policy,
        "requests": len(sent),
        "retries": sum(s.retries for s in sent),
        "errors": sum(s.status != 200 or s.stream_error for s in sent),
        "errors_by_status": collections.Counter(
            s.status if s.status != 200 else "stream"
            for s in sent
            if s.status != 200 or s.stream_error
        ),
        "loads": len(loads),
        "loads_by_model": collections.Counter(e.model for e in loads),
        "load_s": round(load_s, 3),
        "load_s_reference": round(load_s / (REFERENCE_DISK_GB_S * args.load_scale), 1),
        "num_ctx_reloads": sum(e.reason == "num_ctx_change" for e in loads),
        "evictions": sum(reason in ("evicted", "keep_alive_0") for _, reason in unloads),
        "unloads_by_reason": collections.Counter(reason for _, reason in unloads),
        "mean_fit": round(statistics.fmean(fits), 4),
        "class_agreement": round(
            sum(s.cls == s.label for s in classified) / max(len(classified), 1), 4
        ),
        "p50_ms": round(_percentile(latencies, 0.50), 1),
        "p95_ms": round(_percentile(latencies, 0.95), 1),
        "replay_s": round(elapsed, 1),
        "models": collections.Counter(s.model for s in answered),
        "confusion": collections.Counter(f"{s.label}->{s.cls}" for s in classified),
        **_between_sessions(answered),
        "load_events": [asdict(e) for e in loads],
        "ready": ready,
        "problems": problems,
        "requests_detail": [asdict(s) for s in sent],
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| policy | requests | loads | load s (measured) | load s (reference) | num_ctx reloads "
        "| evictions | mean fit | class agreement | retries | errors | p50 ms | p95 ms |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in results:
        lines.append(
            f"| {r['policy']} | {r['requests']} | {r['loads']} | {r['load_s']:.2f} | "
            f"{r['load_s_reference']:.0f} | {r['num_ctx_reloads']} | {r['evictions']} | "
            f"{r['mean_fit']:.3f} | {r['class_agreement']:.1%} | {r['retries']} | "
            f"{r['errors']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} |"
        )
    return "\n".join(lines)


def targets(by_policy: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ours, best = by_policy.get("residency"), by_policy.get("best_fit")
    if ours is None or best is None:
        return {}
    load_ratio = ours["load_s"] / best["load_s"] if best["load_s"] else float("nan")
    fit_ratio = ours["mean_fit"] / best["mean_fit"]
    return {
        "load_ratio": round(load_ratio, 3),
        "load_ratio_ok": load_ratio <= TARGET_LOAD_RATIO,
        "fit_ratio": round(fit_ratio, 4),
        "fit_ratio_ok": fit_ratio >= TARGET_FIT_RATIO,
        "num_ctx_reloads": ours["num_ctx_reloads"],
        "num_ctx_reloads_ok": ours["num_ctx_reloads"] == 0,
    }


def session_seed(seed: int, session: int, one_checkout: bool = False) -> tuple[int, str]:
    """Session 0 is the single developer's trace; session k its own seed and checkout (or,
    with ``one_checkout``, the same checkout as session 0)."""
    return seed + 1000 * session, WS if session == 0 or one_checkout else f"{WS}-{session}"


def trace_stats(trace: list[TraceItem]) -> dict[str, Any]:
    tokens = [item.prompt_tokens for item in trace if item.note != "title"]
    return {
        "requests": len(trace),
        "tasks": len({item.task for item in trace}),
        "labels": collections.Counter(item.label for item in trace),
        "prompt_tokens": {
            "min": min(tokens),
            "p50": _percentile([float(t) for t in tokens], 0.5),
            "max": max(tokens),
        },
        "condensed": sum(item.note == "condense" for item in trace),
        "condense_at_tokens": CONDENSE_AT,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--sessions", type=int, default=1, help="developers replayed at once")
    parser.add_argument(
        "--one-checkout", action="store_true", help="every session works in the same checkout"
    )
    parser.add_argument("--policies", default="fixed,best_fit,residency")
    parser.add_argument("--load-scale", type=float, default=0.02, help="emulated s per GB")
    parser.add_argument("--token-delay", type=float, default=0.001, help="s per streamed chunk")
    parser.add_argument("--raw-load-cost", action="store_true", help="do not scale the cost")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--keep-logs", type=Path, help="copy each decision log here")
    parser.add_argument("--out", type=Path, help="default bench/results/residency[-Nsessions].json")
    args = parser.parse_args()
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    name = "residency" + (f"-{args.sessions}sessions" if args.sessions > 1 else "")
    name += "-one-checkout" if args.one_checkout else ""
    args.out = args.out or REPO / "bench" / "results" / f"{name}.json"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    configure_logging("WARNING", json_logs=False)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies {sorted(unknown)}: use {', '.join(POLICIES)}")
    time_scale = 1 / (REFERENCE_DISK_GB_S * args.load_scale)
    configured = RoutingSettings().load_cost_per_s
    args.load_cost_per_s = configured if args.raw_load_cost else configured * time_scale

    started = time.perf_counter()
    traces, sessions = [], []
    for n in range(args.sessions):
        seed, workspace = session_seed(args.seed, n, args.one_checkout)
        trace = build_trace(seed, args.tasks, workspace)
        traces.append(trace)
        stats = {"seed": seed, "workspace": workspace, **trace_stats(trace)}
        sessions.append(stats)
        print(
            f"trace{f' (session {n}, {workspace})' if args.sessions > 1 else ''}: seed {seed}, "
            f"{stats['tasks']} tasks, {stats['requests']} requests {dict(stats['labels'])}, "
            f"prompt tokens {stats['prompt_tokens']}, {stats['condensed']} condensed"
        )
    print(
        f"scale: emulator loads {args.load_scale} s/GB; reference disk {REFERENCE_DISK_GB_S} "
        f"GB/s; reference_s = measured_s / (2 x {args.load_scale}) = measured_s x "
        f"{time_scale:g}; router disk_bytes_per_s {1e9 / args.load_scale:.3g}, "
        f"load_cost_per_s {args.load_cost_per_s:g} ({configured:g} per reference second"
        f"{', unscaled' if args.raw_load_cost else ''})"
    )
    results = []
    for policy in policies:
        result = run_policy(policy, traces, args)
        results.append(result)
        print(
            f"{policy}: replay {result['replay_s']} s, requests per model "
            f"{dict(result['models'])}, loads per model {dict(result['loads_by_model'])}, "
            f"ready {result['ready']['ready_s']} s (example vote "
            f"{'on' if result['ready']['example_vote'] else 'off'})"
            + (f", errors {dict(result['errors_by_status'])}" if result["errors"] else "")
            + (f", problems: {result['problems']}" if result["problems"] else "")
        )
        if args.sessions > 1:
            print(
                f"  per session {result['per_session']}; loads evicting the model the other "
                f"session ran last: {result['cross_session_evictions']}, keeping a session on "
                f"its model: {result['sticky_loads']}, planned with nothing to evict while the "
                f"other session ran: {result['loads_planned_without_eviction']}; slowest: "
                + "; ".join(result["slowest"][:3])
            )
    by_policy = {r["policy"]: r for r in results}
    confusion = sorted(results[0]["confusion"].items(), key=lambda kv: -kv[1])
    print("true label -> router class: " + ", ".join(f"{k} {v}" for k, v in confusion))
    checks = targets(by_policy)
    print()
    print(table(results))
    if checks:
        print()
        print(
            f"- load seconds, residency / best_fit: {checks['load_ratio']:.3f} "
            f"(target <= {TARGET_LOAD_RATIO:.3f}): {'met' if checks['load_ratio_ok'] else 'MISSED'}"
        )
        print(
            f"- mean fit, residency / best_fit: {checks['fit_ratio']:.3f} "
            f"(target >= {TARGET_FIT_RATIO}): {'met' if checks['fit_ratio_ok'] else 'MISSED'}"
        )
        print(
            f"- num_ctx reloads, residency: {checks['num_ctx_reloads']} (target 0): "
            f"{'met' if checks['num_ctx_reloads_ok'] else 'MISSED'}"
        )
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        rev = ["git", "rev-parse", "--short", "HEAD"]
        head = subprocess.run(rev, cwd=REPO, capture_output=True)
        commit = head.stdout.decode().strip()
    except OSError:  # no git here: the figures still stand, without their commit
        commit = ""
    document = {
        "command": " ".join(sys.argv),
        "commit": commit,
        "seed": args.seed,
        "tasks": args.tasks,
        "sessions": args.sessions,
        "one_checkout": args.one_checkout,
        "load_scale": args.load_scale,
        "reference_disk_gb_s": REFERENCE_DISK_GB_S,
        "reference_s_formula": f"measured_s / (2 x {args.load_scale})",
        "load_cost_per_s": args.load_cost_per_s,
        "trace": sessions[0] if args.sessions == 1 else sessions,
        "results": results,
        "targets": checks,
        "total_s": round(total, 1),
    }
    args.out.write_text(json.dumps(document, indent=1, default=str), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
