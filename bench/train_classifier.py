"""Train the learned task classifier on the routing corpus and write its weights.

    HF_HUB_OFFLINE=1 python bench/train_classifier.py          # about a minute on 2 cores

Trains on the corpus's train split (``corpus/routing``, see its README for the split rule),
fits the probabilities' temperature and picks the regularisation on the dev split, and writes
``src/memory_router/routing/classifier.npz``. The embeddings come from the float graph of
all-MiniLM-L6-v2, so the weights are the same on every CPU. Prints the dev split's figures;
the test split is measured by ``bench/routing_corpus.py`` only.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.routing_eval.corpus import CORPUS_DIR, load_corpus  # noqa: E402

from memory_router.classifier_train import (  # noqa: E402
    Example,
    base_set,
    examples_of,
    fit,
    save,
    save_base,
)
from memory_router.routing.learned import LearnedModel, default_weights  # noqa: E402
from memory_router.wire.openai import ChatCompletionRequest, parse_request  # noqa: E402


def corpus_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(CORPUS_DIR.glob("*.yaml")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def features(split: str) -> list[Example]:
    cases = load_corpus()[split]
    requests = [parse_request(ChatCompletionRequest, c.case.body) for c in cases]
    return examples_of(requests, [c.case.label for c in cases])  # type: ignore[misc]


def shipped_examples() -> list[Example]:
    """The shipped ``config/task_examples.yaml``, each a user's first message, counted as the
    user's confirmed examples are (``classifier_train.USER_WEIGHT``)."""
    from memory_router.classifier_train import USER_WEIGHT
    from memory_router.settings import load_settings

    settings = load_settings(REPO / "config", environ={}, env_file=None)
    requests, labels = [], []
    for label, texts in settings.task_examples.items():
        for text in texts:
            body = {"model": "m", "messages": [{"role": "user", "content": text}]}
            requests.append(parse_request(ChatCompletionRequest, body))
            labels.append(label)
    return examples_of(requests, labels) * USER_WEIGHT


def accuracy(model: LearnedModel, examples: list[Example], embed: object) -> float:
    vectors = embed([e.text or " " for e in examples])  # type: ignore[operator]
    right = 0
    for example, vector in zip(examples, vectors, strict=True):
        scores = model.probabilities(example.text, vector if example.text else None, example.struct)
        right += max(scores, key=scores.__getitem__) == example.label
    return right / len(examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=default_weights())
    parser.add_argument("--c", type=float, nargs="*", default=[8.0, 16.0, 32.0])
    parser.add_argument(
        "--balanced", choices=["no", "yes", "both"], default="both",
        help="weigh every class the same in the loss (both: try each, keep the better on dev)",
    )  # fmt: skip
    parser.add_argument("--no-examples", action="store_true", help="leave task_examples.yaml out")
    parser.add_argument(
        "--with-candidates", action="store_true",
        help="train on the corpus's candidate writers too (splits.yaml: candidates)",
    )  # fmt: skip
    args = parser.parse_args()

    from memory_router.memory.onnx_embedder import OnnxEmbedder

    started = time.perf_counter()
    embed = OnnxEmbedder(graph="fp32").embed_documents
    train, dev = features("train"), features("dev")
    if args.with_candidates:
        train += features("candidates")
    if not args.no_examples:
        train += shipped_examples()
    print(f"train {len(train)} {dict(Counter(e.label for e in train))}")
    print(f"dev {len(dev)} {dict(Counter(e.label for e in dev))}")
    best: tuple[float, LearnedModel] | None = None
    weighings = {"no": [False], "yes": [True], "both": [False, True]}[args.balanced]
    for balanced in weighings:
        for c in args.c:
            model = fit(train, dev, embed, c=c, balanced=balanced, meta={"corpus": corpus_digest()})
            score = accuracy(model, dev, embed) if dev else 0.0
            print(f"C={c} balanced={balanced}: dev accuracy {score:.1%}, "
                  f"temperature {model.temperature}")  # fmt: skip
            if best is None or score > best[0]:
                best = (score, model)
    assert best is not None
    model = best[1]
    model.meta["dev_accuracy"] = round(best[0], 4)
    save(model, args.out)
    if args.out == default_weights():  # the set `memory-router learn` retrains on
        save_base(train)
        print(f"wrote {base_set()} ({base_set().stat().st_size / 1024:.0f} KiB)")
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB), C={model.meta['c']}, "
          f"balanced={model.meta['balanced']}, "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
