"""How the learned classifier reads languages it was not trained on: accuracy per language on
writers of the train split left out of training.

    HF_HUB_OFFLINE=1 python bench/routing_languages.py --writers w18 w19 w20 w21

Trains as ``bench/train_classifier.py`` does (the train split and the shipped task examples,
with the shipped weights' regularisation) twice over for the named writers:

- ``none of them``: without any of the named writers (one training);
- ``leave one out``: without that writer only (one training per writer).

Each model is measured on the left-out writer's requests through the router's own
classification (the certain rules, then the learned model, the embedder loaded), per language.
Nothing is written; about two minutes per training on two cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.routing_eval.corpus import CorpusCase, load_corpus  # noqa: E402

from memory_router.classifier_train import Example, examples_of, fit  # noqa: E402
from memory_router.routing.engine import ExampleIndex  # noqa: E402
from memory_router.routing.learned import LearnedModel, default_weights  # noqa: E402
from memory_router.settings import load_settings  # noqa: E402
from memory_router.wire.openai import ChatCompletionRequest, parse_request  # noqa: E402
from routing_corpus import router  # noqa: E402
from train_classifier import shipped_examples  # noqa: E402


def by_language(
    model: LearnedModel, cases: list[CorpusCase], examples: ExampleIndex
) -> dict[str, float]:
    """Accuracy per language of the router classifying ``cases`` with ``model``."""
    classify = router(examples, model)
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for case in cases:
        total[case.lang] += 1
        right[case.lang] += classify(case.case.body) == case.case.label
    return {lang: right[lang] / total[lang] for lang in sorted(total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", nargs="+", required=True, help="writers of the train split")
    args = parser.parse_args()

    from memory_router.memory.onnx_embedder import OnnxEmbedder

    started = time.perf_counter()
    corpus = load_corpus()
    train = corpus["train"]
    unknown = set(args.writers) - {c.writer for c in train}
    if unknown:
        sys.exit(f"not writers of the train split: {', '.join(sorted(unknown))}")
    features: dict[str, list[Example]] = {}
    for writer in sorted({c.writer for c in train}):
        cases = [c for c in train if c.writer == writer]
        requests = [parse_request(ChatCompletionRequest, c.case.body) for c in cases]
        features[writer] = examples_of(requests, [c.case.label for c in cases])  # type: ignore[misc]
    extra = shipped_examples()
    c = float(LearnedModel.load(default_weights()).meta.get("c", 32.0))
    embed = OnnxEmbedder(graph="fp32").embed_documents
    settings = load_settings(REPO / "config", environ={}, env_file=None)
    examples = ExampleIndex(settings.task_examples, OnnxEmbedder().embed_documents)

    def trained_without(left_out: set[str]) -> LearnedModel:
        kept = [e for w, ex in features.items() if w not in left_out for e in ex]
        return fit([*kept, *extra], [], embed, c=c)

    none = trained_without(set(args.writers))
    print(f"C={c}; 'none of them': trained without {', '.join(args.writers)}")
    print("| writer | language | none of them | leave one out |\n|---|---|---|---|")
    for writer in args.writers:
        cases = [case for case in train if case.writer == writer]
        first = by_language(none, cases, examples)
        alone = by_language(trained_without({writer}), cases, examples)
        for lang in first:
            print(f"| {writer} | {lang} | {first[lang]:.1%} | {alone[lang]:.1%} |", flush=True)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
