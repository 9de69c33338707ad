"""The ONNX int8 embedder agrees with sentence-transformers and keeps retrieval quality."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memory_router.memory import onnx_embedder
from memory_router.memory.embedder import SentenceTransformerEmbedder
from memory_router.memory.onnx_embedder import OnnxEmbedder

TEXTS = [
    "Conflict resolution uses CRDTs: last-writer-wins registers keyed by a hybrid clock.",
    "Run pnpm install then pnpm dev; the relay runs locally with go run ./relay.",
    "Crews on fishing boats lose signal twenty miles offshore.",
    "short",
    "The app bundle must stay under 30 MB because crews download it over satellite links. " * 3,
    "## Known issues\nReordering tasks quickly on iOS sometimes duplicates a task.",
    "Compaction can take forty seconds on phones with more than 50,000 events.",
    "Push notifications when a task is assigned to you are not built yet.",
    "Ünïcödé text, emoji 🙂 and CJK 漢字 embed without errors.",
    "SELECT * FROM tasks WHERE due < now() ORDER BY priority DESC;",
]


@pytest.fixture(scope="module")
def fast() -> OnnxEmbedder:
    return OnnxEmbedder()


@pytest.fixture(scope="module")
def plain() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


def test_agrees_with_sentence_transformers(
    fast: OnnxEmbedder, plain: SentenceTransformerEmbedder
) -> None:
    ours = np.array(fast.embed_documents(TEXTS))
    theirs = np.array(plain.embed_documents(TEXTS))
    assert ours.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-3)
    cosines = (ours * theirs).sum(axis=1)
    # int8 weights: each vector stays within a few degrees of the float model's.
    assert cosines.min() >= 0.97, cosines
    query = np.array(fast.embed_query(TEXTS[0]))
    assert float(query @ ours[0]) == pytest.approx(1.0, abs=1e-3)


def test_order_is_kept_when_batching_by_length(fast: OnnxEmbedder) -> None:
    single = np.array([fast.embed_documents([text])[0] for text in TEXTS])
    batched = np.array(fast.embed_documents(TEXTS))
    similarity = batched @ single.T
    # Each batched vector is its own text's (dynamic int8 scales activations per batch, so
    # batch mates move a vector slightly, never onto another text's).
    assert list(similarity.argmax(axis=1)) == list(range(len(TEXTS)))
    assert similarity.diagonal().min() >= 0.98
    assert fast.embed_documents([]) == []


def test_long_text_is_truncated_not_fatal(fast: OnnxEmbedder) -> None:
    (vector,) = fast.embed_documents(["word " * 5000])
    assert len(vector) == 384


def test_second_instance_loads_the_cache_without_exporting(
    fast: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast.embed_query("warm")  # the module fixture exported (or found) the cached model

    def no_export(*args: object, **kwargs: object) -> dict[str, int]:
        raise AssertionError("exported again instead of using the cache")

    monkeypatch.setattr(onnx_embedder, "export_onnx", no_export)
    again = OnnxEmbedder()
    assert len(again.embed_query("hello")) == 384
    assert any(onnx_embedder.cache_dir().rglob("*.onnx"))


def test_import_is_light() -> None:
    code = (
        "import sys, memory_router.memory.onnx_embedder as m, memory_router.memory.embedder; "
        "print(sorted(n for n in ('torch', 'onnxruntime', 'tokenizers', 'onnx') "
        "if n in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
    assert Path(onnx_embedder.__file__).name == "onnx_embedder.py"
