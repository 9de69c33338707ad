"""A fast, cheap Ollama-shaped upstream for measuring the router's own overhead.

It speaks just enough of Ollama's native API for the router's hot path: ``POST /api/chat``
(non-streamed: one JSON object after ``--service-ms`` +/- ``--jitter-ms``; streamed: NDJSON
chunks every ``--chunk-ms``, then the final ``done`` object), and ``/api/version``,
``/api/tags``, ``/api/show``, ``/api/ps``. Replies are pre-rendered bytes over a raw asyncio
protocol, so the upstream itself costs next to nothing and the comparison isolates what the
router adds. Shapes follow reference/ollama-api.md.

It describes the three models of config/models.yaml at their real sizes and architectures, with
the chat model loaded at ``num_ctx`` 32768 (as ``/api/ps`` shows a warm Ollama), so the router
does per request the residency work it does in front of a real one.

    python bench/fast_upstream.py --port 11500 --service-ms 100 --chunks 64 --chunk-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
from typing import Any

MODEL = "qwen3:30b-a3b"
NUM_CTX = 32768
# name: weights bytes, architecture, blocks, attention heads, KV heads, head size
_PULLED = {
    "qwen3:30b-a3b": (18_556_685_248, "qwen3moe", 48, 32, 4, 128),
    "qwen2.5-coder:32b": (19_851_336_256, "qwen2", 64, 40, 8, 128),
    "llama4:16x17b": (67_436_862_784, "llama4", 48, 40, 8, 128),
}


def _show(name: str) -> bytes:
    _, arch, blocks, heads, kv_heads, head = _PULLED[name]
    info = {
        "general.architecture": arch,
        f"{arch}.block_count": blocks,
        f"{arch}.attention.head_count": heads,
        f"{arch}.attention.head_count_kv": kv_heads,
        f"{arch}.attention.key_length": head,
        f"{arch}.attention.value_length": head,
    }
    return json.dumps({"capabilities": ["completion", "tools"], "model_info": info}).encode()


def _loaded(name: str, num_ctx: int) -> dict[str, object]:
    weights, _, blocks, _, kv_heads, head = _PULLED[name]
    size = weights + num_ctx * 2 * blocks * kv_heads * 2 * head
    return {
        "name": name,
        "model": name,
        "size": size,
        "size_vram": min(size, 16 * 1024**3),
        "context_length": num_ctx,
        "expires_at": "2318-08-01T00:00:00Z",  # keep_alive -1
    }


SHOW = {name.encode(): _show(name) for name in _PULLED}
STATIC = {
    "/api/version": b'{"version":"0.13.0"}',
    "/api/ps": json.dumps({"models": [_loaded(MODEL, NUM_CTX)]}).encode(),
    "/api/tags": json.dumps(
        {"models": [{"name": n, "model": n, "size": w[0]} for n, w in _PULLED.items()]}
    ).encode(),
}
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"([^"]+)"')


def _final(words: int) -> dict[str, object]:
    return {
        "model": MODEL,
        "created_at": "2026-11-21T10:00:00.1Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "total_duration": 100_000_000,
        "load_duration": 1_334_875,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342_546,
        "eval_count": words,
        "eval_duration": 90_000_000,
    }


_SEED = re.compile(rb'"seed":\s*(\d+)')


def service_ms(seed: int, base_ms: float, jitter_ms: float) -> float:
    """The service time for a request with this seed: base +/- jitter, uniform, repeatable."""
    return max(0.0, base_ms + random.Random(seed).uniform(-jitter_ms, jitter_ms))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def render(words: int) -> tuple[bytes, list[bytes], bytes]:
    """The non-streamed body, the streamed content lines, and the streamed final line."""
    pieces = [f"w{i} " for i in range(words)]
    whole = _final(words)
    whole["message"] = {"role": "assistant", "content": "".join(pieces)}
    lines = [
        _dumps(
            {
                "model": MODEL,
                "created_at": "2026-11-21T10:00:00.1Z",
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
        )
        + b"\n"
        for piece in pieces
    ]
    return _dumps(whole), lines, _dumps(_final(words)) + b"\n"


class Upstream(asyncio.Protocol):
    def __init__(self, config: argparse.Namespace, rendered: tuple[bytes, list[bytes], bytes]):
        self.config = config
        self.whole, self.lines, self.final = rendered
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            body, self.buffer = self.buffer[head_end + 4 : end], self.buffer[end:]
            asyncio.get_running_loop().create_task(self.answer(head.split(" ")[1], body))

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    async def answer(self, path: str, body: bytes) -> None:
        if path in STATIC:
            self.write(_head("application/json", len(STATIC[path])) + STATIC[path])
            return
        if path == "/api/show":
            match = _MODEL_FIELD.search(body)
            show = SHOW.get(match.group(1) if match else b"", b'{"error":"model not found"}')
            self.write(_head("application/json", len(show)) + show)
            return
        streamed = b'"stream":false' not in body.replace(b" ", b"")
        if not streamed:
            # Real answers vary in length; the jitter also keeps clients from moving in lockstep.
            # It is a function of the request's seed, so a client can subtract it exactly.
            match = _SEED.search(body)
            seed = int(match.group(1)) if match else 0
            await asyncio.sleep(
                service_ms(seed, self.config.service_ms, self.config.jitter_ms) / 1000
            )
            self.write(_head("application/json", len(self.whole)) + self.whole)
            return
        self.write(_head("application/x-ndjson", None))
        for line in self.lines:
            await asyncio.sleep(self.config.chunk_ms / 1000)
            self.write(_chunk(line))
        self.write(_chunk(self.final) + b"0\r\n\r\n")


def _head(content_type: str, length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{size}\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def serve(config: argparse.Namespace) -> None:
    rendered = render(config.chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(config, rendered), "127.0.0.1", config.port)
    print(f"fast upstream on http://127.0.0.1:{config.port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=11500)
    parser.add_argument("--service-ms", type=float, default=100.0)
    parser.add_argument("--jitter-ms", type=float, default=50.0, help="uniform +/- on service")
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--chunk-ms", type=float, default=2.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
