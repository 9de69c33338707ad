"""Classification on the routing corpus and the evaluation sets, per class and per language.

For each set: accuracy, recall per class and per language, the confusion matrix, and the
expected-fit loss (over cases: the task fit of the best model for the true class minus the fit,
for the true class, of the model the router's class choice would run, with the shipped
``models.yaml``; residency aside). The sets: the corpus's dev and test splits
(``corpus/routing``, split by writer and project, see its README), and the three existing
sets of ``tests/routing_eval``. The test split's misses are never printed: no change can be
fitted to them.

    HF_HUB_OFFLINE=1 python bench/routing_corpus.py [--json bench/results/routing_corpus.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.routing_eval import load_cases  # noqa: E402
from tests.routing_eval.corpus import load_corpus  # noqa: E402
from tests.routing_eval.holdout import load_holdout  # noqa: E402
from tests.routing_eval.holdout2 import languages, load_holdout2  # noqa: E402

from memory_router.domain import TASK_CLASSES  # noqa: E402
from memory_router.routing.engine import ExampleIndex, RoutingEngine  # noqa: E402
from memory_router.routing.learned import LearnedModel, default_weights  # noqa: E402
from memory_router.routing.policy import View  # noqa: E402
from memory_router.settings import ModelSpec, load_settings  # noqa: E402
from memory_router.wire.openai import ChatCompletionRequest, parse_request  # noqa: E402

Item = tuple[str, str, str, dict[str, Any]]  # id, label, language, body
Classify = Callable[[dict[str, Any]], str]


def sets() -> dict[str, list[Item]]:
    corpus = load_corpus()
    langs = languages()
    out: dict[str, list[Item]] = {}
    for split in ("dev", "test"):
        out[f"corpus {split}"] = [
            (c.case.id, c.case.label, c.lang, c.case.body) for c in corpus[split]
        ]
    out["development set"] = [(c.id, c.label, "en", c.body) for c in load_cases()]
    out["first held-out set"] = [(c.id, c.label, "en", c.body) for c in load_holdout()]
    out["second held-out set"] = [
        (c.id, c.label, langs.get(c.id, "en"), c.body) for c in load_holdout2()
    ]
    return out


def best_for(catalog: Sequence[ModelSpec], task: str) -> ModelSpec:
    return max(catalog, key=lambda spec: spec.task_fit[task])  # type: ignore[index]


def fit_loss(catalog: Sequence[ModelSpec], label: str, got: str) -> float:
    """Fit lost for the true class by running the model best for the class given."""
    best = best_for(catalog, label).task_fit[label]  # type: ignore[index]
    return best - best_for(catalog, got).task_fit[label]  # type: ignore[index]


def measure(items: list[Item], classify: Classify, catalog: Sequence[ModelSpec]) -> dict[str, Any]:
    confusion: Counter[tuple[str, str]] = Counter()
    by_lang: Counter[tuple[str, bool]] = Counter()
    loss = 0.0
    wrong = []
    for cid, label, lang, body in items:
        got = classify(body)
        confusion[(label, got)] += 1
        by_lang[(lang, got == label)] += 1
        loss += fit_loss(catalog, label, got)
        if got != label:
            wrong.append({"id": cid, "label": label, "got": got})
    total = len(items)
    right = sum(n for (label, got), n in confusion.items() if label == got)
    recall = {}
    for task in TASK_CLASSES:
        labelled = sum(n for (label, _), n in confusion.items() if label == task)
        recall[task] = confusion[(task, task)] / labelled if labelled else None
    langs = sorted({lang for lang, _ in by_lang})
    lang_recall = {
        lang: by_lang[(lang, True)] / (by_lang[(lang, True)] + by_lang[(lang, False)])
        for lang in langs
    }
    return {
        "cases": total,
        "accuracy": right / total if total else None,
        "recall": recall,
        "languages": lang_recall,
        "expected_fit_loss": loss / total if total else None,
        "confusion": {f"{a}->{b}": n for (a, b), n in sorted(confusion.items())},
        "wrong": wrong,
    }


def router(examples: ExampleIndex | None, model: LearnedModel | None) -> Classify:
    """The router's classifier: with a learned model (the shipped weights, or others), or
    without one (the rules, keyword scores and the examples' vote, as before the learned
    model). Each request is classified by a fresh engine, as a request that opens a session."""
    settings = load_settings(REPO / "config", environ={}, env_file=None)
    routing = settings.config.routing.model_copy(
        update={"classifier": settings.config.routing.classifier.model_copy(
            update={"learned": False})}
    )  # fmt: skip

    def classify(body: dict[str, Any]) -> str:
        engine = RoutingEngine(settings.models.models, routing, 4096)
        engine.examples, engine.learned = examples, model
        request = parse_request(ChatCompletionRequest, body)
        return str(engine.decide(request, View(), remember=False).signals["class"])

    return classify


def report(name: str, result: dict[str, Any], blind: bool) -> None:
    print(f"\n### {name}: {result['accuracy']:.1%} of {result['cases']}, "
          f"expected-fit loss {result['expected_fit_loss']:.4f}")  # fmt: skip
    print("| class | recall |\n|---|---|")
    for task, value in result["recall"].items():
        print(f"| {task} | {'-' if value is None else f'{value:.1%}'} |")
    print("| language | accuracy |\n|---|---|")
    for lang, value in result["languages"].items():
        print(f"| {lang} | {value:.1%} |")
    print("confusion:", ", ".join(f"{k} {v}" for k, v in result["confusion"].items() if
                                  k.split("->")[0] != k.split("->")[1]))  # fmt: skip
    if not blind:
        for miss in result["wrong"][:40]:
            print(f"  miss {miss['id']}: {miss['label']} -> {miss['got']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--sets", nargs="*", help="only these sets (names as printed)")
    args = parser.parse_args()

    from memory_router.memory.onnx_embedder import OnnxEmbedder

    settings = load_settings(REPO / "config", environ={}, env_file=None)
    catalog = settings.models.models
    examples = ExampleIndex(settings.task_examples, OnnxEmbedder().embed_documents)
    classifiers = {
        "rules and examples": router(examples, None),
        "learned": router(examples, LearnedModel.load(default_weights())),
    }
    results: dict[str, Any] = {}
    for set_name, items in sets().items():
        if args.sets and set_name not in args.sets:
            continue
        for clf_name, classify in classifiers.items():
            result = measure(items, classify, catalog)
            blind = set_name == "corpus test"
            report(f"{set_name}, {clf_name}", result, blind)
            if blind:
                result.pop("wrong")
            results[f"{set_name}, {clf_name}"] = result
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
