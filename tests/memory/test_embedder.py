"""Embedders: the packaged MiniLM, Ollama's /api/embed over a real socket, the factory."""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from structlog.testing import capture_logs

from memory_router.errors import BackendError, BackendUnavailable
from memory_router.memory.embedder import (
    OllamaEmbedder,
    SentenceTransformerEmbedder,
    make_embedder,
)
from memory_router.settings import MemorySettings


def test_minilm_vectors_are_normalised_and_deterministic(
    embedder: SentenceTransformerEmbedder,
) -> None:
    docs = embedder.embed_documents(["slack water at the narrows", "battery budget", "x"])
    assert [len(v) for v in docs] == [384, 384, 384]
    assert all(math.isclose(sum(x * x for x in v), 1.0, abs_tol=1e-4) for v in docs)
    query = embedder.embed_query("slack water at the narrows")
    assert query == pytest.approx(docs[0], abs=1e-5)
    assert embedder.embed_documents([]) == []
    assert embedder.name == "all-MiniLM-L6-v2 (sentence-transformers)"
    assert embedder.dimension == 384


class FakeOllama(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []
    status: ClassVar[int] = 200
    reply: ClassVar[Any] = None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOllama.requests.append({"path": self.path, "body": body})
        if FakeOllama.status != 200:
            payload: Any = {"error": f'model "{body["model"]}" not found, try pulling it first'}
        elif FakeOllama.reply is not None:
            payload = FakeOllama.reply
        else:  # vectors of length 3, not normalised: the client must normalise them
            payload = {"embeddings": [[3.0, 4.0, float(len(t))] for t in body["input"]]}
        data = json.dumps(payload).encode()
        self.send_response(FakeOllama.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ollama_url() -> Iterator[str]:
    FakeOllama.requests = []
    FakeOllama.status = 200
    FakeOllama.reply = None
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_ollama_embedder_request_and_normalisation(ollama_url: str) -> None:
    embedder = OllamaEmbedder(ollama_url + "/", "all-minilm", batch_size=2)
    assert (embedder.name, embedder.dimension) == ("all-minilm (ollama)", 0)
    vectors = embedder.embed_documents(["a", "bb", "ccc"])
    assert FakeOllama.requests == [
        {"path": "/api/embed", "body": {"model": "all-minilm", "input": ["a", "bb"]}},
        {"path": "/api/embed", "body": {"model": "all-minilm", "input": ["ccc"]}},
    ]
    norm = math.sqrt(9 + 16 + 1)
    assert vectors[0] == pytest.approx([3 / norm, 4 / norm, 1 / norm])
    assert embedder.dimension == 3
    assert embedder.embed_query("hi") == pytest.approx([x / math.sqrt(29) for x in (3.0, 4.0, 2.0)])


def test_ollama_missing_model_says_how_to_pull(ollama_url: str) -> None:
    FakeOllama.status = 404
    embedder = OllamaEmbedder(ollama_url, "nomic-embed-text")
    with pytest.raises(BackendError, match=r"run `ollama pull nomic-embed-text`") as info:
        embedder.embed_query("hi")
    assert 'model "nomic-embed-text" not found' in info.value.message


def test_ollama_malformed_answers(ollama_url: str) -> None:
    embedder = OllamaEmbedder(ollama_url, "m")
    FakeOllama.reply = {"embeddings": [[1.0]]}
    with pytest.raises(BackendError, match="returned 1 embeddings for 2 inputs"):
        embedder.embed_documents(["a", "b"])
    FakeOllama.reply = {"embeddings": [[]]}
    with pytest.raises(BackendError, match="empty or malformed embedding"):
        embedder.embed_query("a")


def test_ollama_unreachable() -> None:
    embedder = OllamaEmbedder("http://127.0.0.1:9", "all-minilm", timeout_s=2)
    with pytest.raises(
        BackendUnavailable, match=r"Ollama is not reachable at http://127\.0\.0\.1:9"
    ):
        embedder.embed_query("hi")


def test_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    ollama = make_embedder(MemorySettings(embedder="ollama", ollama_embed_model="e5"), "http://h:1")
    assert isinstance(ollama, OllamaEmbedder)
    assert (ollama.base_url, ollama.model) == ("http://h:1", "e5")
    local = make_embedder(MemorySettings(embedder="sentence-transformers"), "http://h:1")
    assert isinstance(local, SentenceTransformerEmbedder)
    # No ONNX module: fall back to the same weights through sentence-transformers, loudly.
    monkeypatch.setitem(sys.modules, "memory_router.memory.onnx_embedder", None)
    with capture_logs() as logs:
        fallback = make_embedder(MemorySettings(embedder="onnx"), "http://h:1")
    assert isinstance(fallback, SentenceTransformerEmbedder)
    assert [(log["event"], log["log_level"]) for log in logs] == [
        ("onnx_embedder_unavailable", "warning")
    ]
    assert logs[0]["fallback"] == "all-MiniLM-L6-v2 (sentence-transformers)"
