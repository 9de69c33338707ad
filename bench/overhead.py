"""What the router adds: the same load sent straight to an upstream and through the router.

The upstream (``bench/fast_upstream.py``) runs in its own process and answers like a fast local
model at almost no CPU cost: a whole answer after a fixed service time, or a stream of chunks
at a fixed interval. The router runs in its
own process too, in front of it. The load generator sends, in alternating rounds:

- direct: Ollama-native ``/api/chat`` bodies, exactly what the router would send;
- routed: OpenAI ``/v1/chat/completions`` bodies for ``cline-memory-router``;
- floor (non-streamed only): the same OpenAI bodies through ``bench/bare_relay.py``, the least
  a Python relay on the same server stack does, so what the router adds can be read against
  what any Python relay adds on this machine.

Non-streamed: each request carries a seed that fixes the upstream's service time, so the
client subtracts it and keeps only the overhead (network, parsing, and for the routed target
the router); the difference of those overheads' p50/p99 is what the router adds. Each round
starts its clients over one mean service time, as closed-loop clients with random service
times are spread in steady state: started at the same instant, a round's first 32 requests
would queue behind each other and, at 3.2% of a 1,000-request round, be its p99. That burst is
measured on its own: ``--bursts`` times, every client's request at once, and the last
answer's overhead.
Streamed: content chunks per second per stream, and in total; the ratio is the relay rate.

    python bench/overhead.py                      # 32 clients, the figures in docs/benchmarks.md
    python bench/overhead.py --clients 8 --requests 400 --streams 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from fast_upstream import service_ms
from steal import Steal

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
MODEL = "qwen3:30b-a3b"  # where the router sends a plain chat turn under config/models.yaml
PROMPT = [
    {"role": "system", "content": "You are a helpful coding assistant."},
    {"role": "user", "content": "What is the difference between a list and a tuple?"},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def start_upstream(port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, str(REPO / "bench" / "fast_upstream.py"), "--port", str(port),
        "--service-ms", str(args.service_ms), "--jitter-ms", str(args.jitter_ms),
        "--chunks", str(args.words),
        "--chunk-ms", str(args.chunk_ms),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)


def start_floor(port: int, upstream: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, str(REPO / "bench" / "bare_relay.py"), "--port", str(port),
        "--upstream", f"http://127.0.0.1:{upstream}",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)


def start_router(port: int, upstream: int, workdir: Path) -> subprocess.Popen[bytes]:
    config = workdir / "config"
    config.mkdir()
    (config / "models.yaml").write_text((REPO / "config/models.yaml").read_text())
    (config / "server_config.yaml").write_text(
        json.dumps(
            {
                "server": {"port": port},
                "ollama": {"base_url": f"http://127.0.0.1:{upstream}"},
                "embedded": {"mode": "never"},
                # The fast upstream runs every request at once: no admission limit to hit.
                "routing": {
                    "queue": {"max_running_per_model": 64, "max_waiting_per_model": 1024},
                    "warm_pinned": False,
                    # The reference machine's memory, which the upstream's /api/ps reports
                    # against (the chat model loaded, part of it in VRAM).
                    "budget": {"vram_bytes": 16 * 1024**3, "ram_bytes": 128 * 1024**3},
                },
                "logging": {"decision_log": {"path": str(workdir / "decisions.jsonl")}},
            }
        )
    )
    command = [sys.executable, "-m", "memory_router", "serve", "--config-dir", str(config)]
    log = (workdir / "router.log").open("wb")
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log)


@dataclass
class Target:
    name: str
    url: str
    body: dict[str, Any]
    seed_in_options: bool

    def payload(self, seed: int) -> bytes:
        body = dict(self.body)
        if self.seed_in_options:
            body["options"] = {**body["options"], "seed": seed}
        else:
            body["seed"] = seed
        return json.dumps(body).encode()


def targets(upstream: int, router: int, floor: int | None, stream: bool) -> list[Target]:
    """Direct, then through the bare relay (non-streamed only), then through the router."""
    direct = {
        "model": MODEL,
        "messages": PROMPT,
        "stream": stream,
        "options": {"num_ctx": 32768},
        "keep_alive": -1,
    }
    routed: dict[str, Any] = {"model": "cline-memory-router", "messages": PROMPT, "stream": stream}
    if stream:
        routed["stream_options"] = {"include_usage": True}
    base = "http://127.0.0.1"
    chosen = [Target("direct", f"{base}:{upstream}/api/chat", direct, seed_in_options=True)]
    if floor is not None and not stream:
        chosen.append(
            Target("floor", f"{base}:{floor}/v1/chat/completions", routed, seed_in_options=False)
        )
    chosen.append(
        Target("router", f"{base}:{router}/v1/chat/completions", routed, seed_in_options=False)
    )
    return chosen


class Seeds:
    """Request seeds, shared by both targets so each sees the same service times."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next


async def one_request(
    session: aiohttp.ClientSession, target: Target, seed: int, args: argparse.Namespace
) -> float:
    """Latency minus the upstream's own (known) service time for this seed."""
    started = time.perf_counter()
    async with session.post(target.url, data=target.payload(seed)) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{target.name}: HTTP {response.status}")
    elapsed = time.perf_counter() - started
    return elapsed - service_ms(seed, args.service_ms, args.jitter_ms) / 1000


async def one_stream(session: aiohttp.ClientSession, target: Target) -> tuple[int, float]:
    """Content chunks received, and the time from the first to the last of them."""
    first = last = 0.0
    chunks = 0
    async with session.post(target.url, data=target.payload(0)) as response:
        async for line in response.content:
            if b'"content":"w' in line:
                last = time.perf_counter()
                first = first or last
                chunks += 1
    return chunks, last - first


async def run_load(
    clients: int, count: int, work: Callable[[], Awaitable[T]], ramp_s: float = 0.0
) -> tuple[list[T], float]:
    """``count`` calls of ``work`` by ``clients`` closed-loop clients.

    With ``ramp_s``, client i sends its first request i/clients of ``ramp_s`` after the
    start: clients whose answers take a random time are spread over it in steady state, and
    a ramp of one mean service time starts each round in that state instead of with every
    client's request arriving at the same instant (that burst is measured on its own)."""
    results: list[T] = []
    remaining = count

    async def worker(index: int) -> None:
        nonlocal remaining
        if ramp_s:
            await asyncio.sleep(ramp_s * index / clients)
        while remaining > 0:
            remaining -= 1
            results.append(await work())

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    return results, time.perf_counter() - started


async def bursts(
    session: aiohttp.ClientSession, target: Target, args: argparse.Namespace, seeds: Seeds
) -> list[float]:
    """For each of ``args.bursts`` bursts, ``args.clients`` requests sent at the same instant:
    the overhead of the last one answered (what the burst queued behind)."""
    worst: list[float] = []
    for _ in range(args.bursts):
        await asyncio.sleep(0.3)  # let the previous load drain
        done = await asyncio.gather(
            *(one_request(session, target, seeds.take(), args) for _ in range(args.clients))
        )
        worst.append(max(done))
    return worst


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    args: argparse.Namespace,
    upstream: int,
    router: int,
    pids: dict[str, int],
    floor: int | None,
) -> dict[str, object]:
    # Idle connections are dropped before uvicorn's own 5 s keep-alive timeout closes them:
    # otherwise a request sent on a connection the server is closing at that moment fails
    # (rounds keep the other targets' connections idle for several seconds).
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    timeout = aiohttp.ClientTimeout(total=120)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    latencies: dict[str, list[float]] = {"direct": [], "floor": [], "router": []}
    elapsed: dict[str, float] = {"direct": 0.0, "floor": 0.0, "router": 0.0}
    rates: dict[str, list[float]] = {"direct": [], "router": []}
    totals: dict[str, tuple[int, float]] = {"direct": (0, 0.0), "router": (0, 0.0)}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as s:
        plain = targets(upstream, router, floor, stream=False)
        streamed = targets(upstream, router, floor, stream=True)
        for target in plain:  # warm up connections and caches
            await run_load(
                args.clients, args.clients * 2, lambda t=target: one_request(s, t, 0, args)
            )
        for target in streamed:
            await run_load(args.clients, args.clients, lambda t=target: one_stream(s, t))
        per_round = args.requests // args.rounds
        cpu = {name: 0.0 for name in pids}  # the relays' own CPU time under the load
        for _ in range(args.rounds):
            for target in plain:
                seeds = Seeds()  # the same seed sequence (so service times) for both targets
                pid = pids.get(target.name)
                cpu_before = cpu_seconds(pid) if pid else 0.0
                done, seconds = await run_load(
                    args.clients,
                    per_round,
                    lambda t=target, seq=seeds: one_request(s, t, seq.take(), args),
                    ramp_s=args.service_ms / 1000,
                )
                if pid:
                    cpu[target.name] += cpu_seconds(pid) - cpu_before
                latencies[target.name].extend(done)
                elapsed[target.name] += seconds
        burst_worst: dict[str, list[float]] = {}
        for target in plain:
            burst_worst[target.name] = await bursts(s, target, args, Seeds())
        per_round = args.streams // args.rounds
        for _ in range(args.rounds):
            for target in streamed:
                done_streams, seconds = await run_load(
                    args.clients, per_round, lambda t=target: one_stream(s, t)
                )
                rates[target.name].extend(n / span for n, span in done_streams if span > 0)
                chunks, spent = totals[target.name]
                totals[target.name] = (chunks + sum(n for n, _ in done_streams), spent + seconds)

    def ms(value: float) -> float:
        return round(value * 1000, 3)

    result: dict[str, object] = {"clients": args.clients, "requests": args.requests}
    result["router_cpu_ms_per_request"] = round(cpu["router"] * 1000 / len(latencies["router"]), 3)
    for name in ("direct", "router"):
        # Latency beyond the upstream's own service time: network, parsing, the router.
        result[f"{name}_overhead_p50_ms"] = ms(pct(latencies[name], 0.50))
        result[f"{name}_overhead_p99_ms"] = ms(pct(latencies[name], 0.99))
        result[f"{name}_rps"] = round(len(latencies[name]) / elapsed[name], 1)
        result[f"{name}_stream_chunks_per_s_median"] = round(statistics.median(rates[name]), 1)
        chunks, spent = totals[name]
        result[f"{name}_stream_chunks_per_s_total"] = round(chunks / spent, 1)
    result["added_p50_ms"] = round(
        result["router_overhead_p50_ms"] - result["direct_overhead_p50_ms"],  # type: ignore[operator]
        3,
    )
    result["added_p99_ms"] = round(
        result["router_overhead_p99_ms"] - result["direct_overhead_p99_ms"],  # type: ignore[operator]
        3,
    )
    if args.bursts:
        # A burst: every client's request at the same instant. The last answer waits for the
        # relay's CPU of all the others; the median over the bursts, beyond the direct path's.
        worst = {name: statistics.median(values) for name, values in burst_worst.items()}
        result["burst_size"] = args.clients
        result["burst_last_direct_ms"] = ms(worst["direct"])
        result["burst_last_router_ms"] = ms(worst["router"])
        result["burst_added_ms"] = ms(worst["router"] - worst["direct"])
        if "floor" in worst:
            result["burst_added_floor_ms"] = ms(worst["floor"] - worst["direct"])
    if latencies["floor"]:
        # The bare relay in the same run: what a Python relay adds here before any routing.
        floor_p50, floor_p99 = pct(latencies["floor"], 0.50), pct(latencies["floor"], 0.99)
        result["floor_added_p50_ms"] = ms(floor_p50 - pct(latencies["direct"], 0.50))
        result["floor_added_p99_ms"] = ms(floor_p99 - pct(latencies["direct"], 0.99))
        result["floor_rps"] = round(len(latencies["floor"]) / elapsed["floor"], 1)
        result["floor_cpu_ms_per_request"] = round(cpu["floor"] * 1000 / len(latencies["floor"]), 3)
        result["router_beyond_floor_p50_ms"] = ms(pct(latencies["router"], 0.50) - floor_p50)
    result["throughput_ratio"] = round(result["router_rps"] / result["direct_rps"], 3)  # type: ignore[operator]
    result["stream_rate_ratio_median"] = round(
        result["router_stream_chunks_per_s_median"] / result["direct_stream_chunks_per_s_median"],  # type: ignore[operator]
        3,
    )
    result["stream_rate_ratio_total"] = round(
        result["router_stream_chunks_per_s_total"] / result["direct_stream_chunks_per_s_total"],  # type: ignore[operator]
        3,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4000, help="non-streamed, per target")
    parser.add_argument("--streams", type=int, default=320, help="streamed, per target")
    parser.add_argument("--rounds", type=int, default=4, help="alternations direct/router")
    parser.add_argument("--words", type=int, default=64, help="chunks in each streamed answer")
    parser.add_argument("--service-ms", type=float, default=100.0, help="non-streamed answer time")
    parser.add_argument("--jitter-ms", type=float, default=50.0, help="+/- on the service time")
    parser.add_argument("--chunk-ms", type=float, default=10.0, help="time between stream chunks")
    parser.add_argument(
        "--bursts", type=int, default=5, help="bursts of --clients simultaneous requests"
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the bare relay (bench/bare_relay.py)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    upstream_port, router_port, floor_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env_note = os.environ.get("LOG_LEVEL", "INFO")
        upstream = start_upstream(upstream_port, args)
        router = start_router(router_port, upstream_port, Path(tmp))
        floor = None if args.no_floor else start_floor(floor_port, upstream_port)
        processes = [p for p in (router, floor, upstream) if p is not None]
        try:
            wait_http(f"http://127.0.0.1:{upstream_port}/api/version")
            wait_http(f"http://127.0.0.1:{router_port}/ready")
            if floor is not None:
                wait_http(f"http://127.0.0.1:{floor_port}/ready")
            floor_at = None if floor is None else floor_port
            pids = {"router": router.pid} | ({} if floor is None else {"floor": floor.pid})
            with Steal() as steal:
                result = asyncio.run(measure(args, upstream_port, router_port, pids, floor_at))
            # CPU the hypervisor took meanwhile: a run with more than a few percent is noisy.
            result["steal_percent"] = steal.percent
        finally:
            # SIGTERM, not SIGINT: a shell ignores SIGINT in background jobs and their children,
            # so a bench started with `&` could not stop its upstream.
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    result["router_log_level"] = env_note
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
