"""Training the learned task classifier (``routing.learned``): features, fit, calibration.

A multinomial logistic regression (scikit-learn, imported here only) over the three feature
blocks ``routing.learned`` describes. Deterministic: the same requests, labels and embeddings
give the same weights. Each training request is used twice, once with its embedding and
once without, so the model also scores well when the router runs with no embedder.

The temperature of the softmax is fitted on held-out requests (the corpus's dev split) by
minimising their negative log-likelihood, which calibrates the probabilities that routing by
expected fit weighs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .domain import TASK_CLASSES, TaskClass
from .routing.learned import (
    EMBED_CHARS,
    EMBED_DIM,
    FEATURE_VERSION,
    NGRAM_BITS,
    STRUCTURE,
    LearnedModel,
    ngram_counts,
    structure,
    words_of,
)
from .routing.signals import read_signals
from .wire.openai import ChatCompletionRequest

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from scipy.sparse import csr_matrix

__all__ = ["Example", "base_set", "examples_of", "fit", "retrain_with", "save", "save_base"]

Embed = Callable[[Sequence[str]], list[list[float]]]
EMBED_SCALE = 1.0
"""The embedding block's scale against the n-gram block (both are unit vectors)."""


@dataclass(frozen=True)
class Example:
    """One labelled request, reduced to what the model reads."""

    text: str
    struct: tuple[float, ...]
    label: TaskClass


def examples_of(
    requests: Sequence[ChatCompletionRequest], labels: Sequence[TaskClass]
) -> list[Example]:
    """The features of each labelled request."""
    out = []
    for request, label in zip(requests, labels, strict=True):
        signals = read_signals(request)
        text = words_of(request, signals)
        out.append(Example(text, tuple(structure(request, signals)), label))
    return out


def _matrix(examples: Sequence[Example], embeddings: NDArray[np.float32] | None) -> csr_matrix:
    import numpy as np
    from scipy.sparse import csr_matrix, hstack

    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    for i, example in enumerate(examples):
        ids, weights = ngram_counts(example.text)
        rows.extend([i] * len(ids))
        cols.extend(ids)
        values.extend(weights)
    grams = csr_matrix((values, (rows, cols)), shape=(len(examples), 1 << NGRAM_BITS))
    emb = np.zeros((len(examples), EMBED_DIM), np.float32)
    if embeddings is not None:
        emb = embeddings.astype(np.float32) * EMBED_SCALE
    struct = np.array([e.struct for e in examples], np.float32)
    return hstack([grams, csr_matrix(emb), csr_matrix(struct)], format="csr")


def _embed(examples: Sequence[Example], embed: Embed | None) -> NDArray[np.float32] | None:
    import numpy as np

    if embed is None:
        return None
    texts = [e.text[:EMBED_CHARS].strip() or " " for e in examples]
    vectors = np.asarray(embed(texts), np.float32)
    vectors[[not e.text for e in examples]] = 0.0  # no words, no embedding (as at run time)
    return vectors


def _temperature(logits: NDArray[np.float64], labels: Sequence[int]) -> float:
    """The softmax temperature that minimises the held-out negative log-likelihood."""
    import numpy as np

    best, best_nll = 1.0, float("inf")
    index = np.arange(len(labels))
    for t in np.arange(0.3, 4.01, 0.05):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll = float(-logp[index, labels].mean())
        if nll < best_nll:
            best, best_nll = float(round(t, 2)), nll
    return best


def fit(
    train: Sequence[Example],
    held_out: Sequence[Example],
    embed: Embed | None,
    *,
    c: float = 4.0,
    balanced: bool = False,
    meta: dict[str, Any] | None = None,
) -> LearnedModel:
    """Weights for ``train``, the temperature fitted on ``held_out``. ``balanced``: each
    class weighs the same in the loss however many examples it has."""
    import numpy as np
    from scipy.sparse import vstack
    from sklearn.linear_model import LogisticRegression

    classes = tuple(task for task in TASK_CLASSES if any(e.label == task for e in train))
    index = {task: i for i, task in enumerate(classes)}
    with_emb = _embed(train, embed)
    x = _matrix(train, with_emb)
    if with_emb is not None:
        x = vstack([x, _matrix(train, None)], format="csr")  # and without the embedder
    y = [index[e.label] for e in train] * (2 if with_emb is not None else 1)
    model = LogisticRegression(
        C=c, max_iter=3000, tol=1e-6, class_weight="balanced" if balanced else None
    )
    model.fit(x, y)
    coef = model.coef_.T.astype(np.float32)  # (features, classes)
    grams = 1 << NGRAM_BITS
    learned = LearnedModel(
        classes=classes,
        ngram=coef[:grams],
        embed=coef[grams : grams + EMBED_DIM] * EMBED_SCALE,
        struct=coef[grams + EMBED_DIM :],
        bias=model.intercept_.astype(np.float32),
        temperature=1.0,
        meta={},
    )
    temperature = 1.0
    if held_out:
        held_emb = _embed(held_out, embed)
        logits = np.array(
            [
                learned.logits(e.text, None if held_emb is None else held_emb[i], e.struct)
                for i, e in enumerate(held_out)
            ],
            np.float64,
        )
        temperature = _temperature(logits, [index.get(e.label, 0) for e in held_out])
    info = {
        "feature_version": FEATURE_VERSION,
        "structure": list(STRUCTURE),
        "classes": list(classes),
        "temperature": temperature,
        "c": c,
        "balanced": balanced,
        "train_examples": len(train),
        **(meta or {}),
    }
    return LearnedModel(
        classes, learned.ngram, learned.embed, learned.struct, learned.bias, temperature, info
    )


def save(model: LearnedModel, path: Path) -> None:
    """Write the weights (float16: about a third of a megabyte) and their description."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez_compressed(
            handle,
            ngram=model.ngram.astype(np.float16),
            embed=model.embed.astype(np.float16),
            struct=model.struct.astype(np.float16),
            bias=model.bias.astype(np.float32),
            meta=np.array(json.dumps(model.meta, sort_keys=True)),
        )


def base_set() -> Path:
    """The shipped training set's features (``bench/train_classifier.py`` writes it)."""
    return Path(__file__).parent / "routing" / "classifier_base.jsonl.gz"


def save_base(examples: Sequence[Example], path: Path | None = None) -> None:
    """Write ``examples`` as the base set ``retrain_with`` trains on with the user's."""
    import gzip

    path = path or base_set()
    lines = [
        json.dumps({"text": e.text, "struct": list(e.struct), "label": e.label}, sort_keys=True)
        for e in examples
    ]
    # mtime 0: the same examples give the same bytes.
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(("\n".join(lines) + "\n").encode())


def _read_base(path: Path) -> list[Example]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    if rows and len(rows[0]["struct"]) != len(STRUCTURE):
        raise ValueError(f"{path}: features of another version; retrain the base set")
    return [Example(r["text"], tuple(r["struct"]), r["label"]) for r in rows]


USER_WEIGHT = 3
"""How many times each confirmed example counts against one of the base set's."""


def retrain_with(
    examples: Sequence[tuple[str, str]], out: Path, embed: Embed | None = None
) -> dict[str, Any]:
    """Train the classifier on the shipped base set plus the user's confirmed ``examples``
    (words, class), keep the shipped model's temperature and regularisation, write ``out``.

    The user's words come without the request they were sent in, so each is featured as a
    first message from the user with nothing around it."""
    from .routing.learned import default_weights

    base = _read_base(base_set())
    shipped = LearnedModel.load(default_weights())
    added: list[Example] = []
    for words, label in examples:
        if label not in TASK_CLASSES:
            raise ValueError(f"unknown task class {label!r}: use one of {', '.join(TASK_CLASSES)}")
        request = ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": words}]}
        )
        (example,) = examples_of([request], [label])
        added.extend([example] * USER_WEIGHT)
    if embed is None:
        from .memory.onnx_embedder import OnnxEmbedder

        embed = OnnxEmbedder(graph="fp32").embed_documents
    model = fit(
        [*base, *added], [], embed, c=float(shipped.meta.get("c", 16.0)),
        meta={"user_examples": len(examples), "base": shipped.meta.get("corpus")},
    )  # fmt: skip
    tuned = LearnedModel(
        model.classes, model.ngram, model.embed, model.struct, model.bias,
        shipped.temperature, {**model.meta, "temperature": shipped.temperature},
    )  # fmt: skip
    save(tuned, out)
    return {"weights": str(out), "base_examples": len(base), "user_examples": len(examples)}
