"""What the optional LLM classifier adds to a request it is asked about, on a real model.

The embedded llama.cpp model (Gemma 3 270M, base, on this machine's CPU cores) stands in for
the small classifier model: the router's own ``LlmClassifier`` asks it about ``--texts``
distinct user messages that the cheap signals leave open, one after another, and the time of
each question (prompt, answer of up to 8 tokens, parsing) is reported. A second pass over the
same texts shows the kept answers: no model call. No instruction-tuned model can run here, so
the answers themselves say nothing about accuracy (``bench/routing.py`` bounds that).

    HF_HUB_OFFLINE=1 python bench/llm_classifier.py --texts 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from memory_router.backends.embedded import EMBEDDED_MODEL, EmbeddedBackend  # noqa: E402
from memory_router.llm_classifier import LlmClassifier  # noqa: E402
from memory_router.logs import configure_logging  # noqa: E402
from memory_router.routing.engine import RoutingEngine  # noqa: E402
from memory_router.routing.signals import read_signals  # noqa: E402
from memory_router.settings import EmbeddedSettings, LlmClassifierSettings, load_settings  # noqa: E402
from memory_router.wire.openai import ChatCompletionRequest  # noqa: E402

SUBJECTS = (
    "the invoice totals", "the nightly export", "the retry queue", "the login page",
    "the search results", "the cache warm-up", "the billing emails", "the audit trail",
    "the upload limits", "the session timeout",
)  # fmt: skip
SITUATIONS = (
    "when currencies differ",
    "since the upgrade",
    "on slow networks",
    "for new accounts",
)


def open_texts(count: int) -> list[str]:
    """Distinct user messages with no rule or keyword to decide their class."""
    texts = [f"Something is off with {s} {w}" for w in SITUATIONS for s in SUBJECTS]
    return texts[:count]


def request(text: str) -> ChatCompletionRequest:
    body = {"model": "cline-memory-router", "messages": [{"role": "user", "content": text}]}
    return ChatCompletionRequest.model_validate(body)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(count: int) -> dict[str, Any]:
    settings = load_settings(REPO / "config", environ={}, env_file=None)
    llm = LlmClassifierSettings(model=EMBEDDED_MODEL, backend="embedded", timeout_s=60)
    # The rules' path (no learned classifier): these texts are left open by the rules, so
    # the model is asked about each (with the learned classifier it is asked when unsure).
    classifying = settings.config.routing.classifier.model_copy(
        update={"llm": llm, "learned": False}
    )
    routing = settings.config.routing.model_copy(update={"classifier": classifying})
    engine = RoutingEngine(settings.models.models, routing, settings.models.reserved_output_tokens)
    backend = EmbeddedBackend(EmbeddedSettings(n_ctx=4096))
    await backend.start()
    classifier = LlmClassifier(llm, {"embedded": backend}, engine)
    try:
        texts = open_texts(count)
        assert all(not engine.cheap(read_signals(request(t))).decisive for t in texts)
        asked: list[float] = []
        for text in texts:
            started = time.perf_counter()
            await classifier.prepare(request(text))
            asked.append((time.perf_counter() - started) * 1000)
        kept: list[float] = []
        for text in texts:
            started = time.perf_counter()
            await classifier.prepare(request(text))
            kept.append((time.perf_counter() - started) * 1000)
    finally:
        await backend.aclose()
    return {
        "model": EMBEDDED_MODEL,
        "texts": len(texts),
        "asked_p50_ms": round(statistics.median(asked), 1),
        "asked_p95_ms": round(percentile(asked, 0.95), 1),
        "kept_p50_ms": round(statistics.median(kept), 3),
        "outcomes": dict(classifier.outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=40, help="distinct open messages (<= 40)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    configure_logging("WARNING")
    result = asyncio.run(run(args.texts))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
