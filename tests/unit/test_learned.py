"""The learned classifier: its features, its weights, and retraining on the user's words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memory_router import classifier_train
from memory_router.classifier_train import Example, retrain_with, save
from memory_router.routing.learned import (
    STRUCTURE,
    LearnedModel,
    default_weights,
    ngram_counts,
    structure,
    word_count,
    words_of,
)
from memory_router.routing.signals import read_signals
from memory_router.settings import load_settings
from memory_router.wire.openai import ChatCompletionRequest
from tests.conftest import write_config

RULES = "You are Cline.\n# Rules\n# Cline's Memory Bank\nRead ALL memory bank files at the start."


def request(*messages: dict[str, object], tools: bool = False) -> ChatCompletionRequest:
    body: dict[str, object] = {"model": "cline-memory-router", "messages": list(messages)}
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]
    return ChatCompletionRequest.model_validate(body)


def test_ngrams_are_the_same_in_every_process_and_normalised() -> None:
    ids, values = ngram_counts("Fix the flaky test, bitte")
    assert ids == ngram_counts("fix the FLAKY test, bitte")[0]  # lower case
    assert abs(sum(v * v for v in values) - 1.0) < 1e-9
    assert ngram_counts("") == ((), ())


def test_words_are_counted_in_scripts_written_without_spaces() -> None:
    assert word_count("fix the flaky test, bitte") == 5
    assert word_count("帮我把这个接口改成异步的") == 6  # 12 characters, about 6 words
    thanks = "なるほど、よく分かりました。ありがとうございます！"
    assert word_count(thanks) == 11  # 22 characters; punctuation is no word
    assert word_count("把 timeout 改成 30s") == 4
    assert word_count("") == 0
    long_thanks = request({"role": "user", "content": thanks})
    on = structure(long_thanks, read_signals(long_thanks))
    assert on[STRUCTURE.index("len:6-20")] == 1.0 and on[STRUCTURE.index("len:1")] == 0.0


def test_the_standing_rules_of_the_system_prompt_are_not_a_feature() -> None:
    task = {"role": "user", "content": "<task>\nfix the login redirect\n</task>"}
    with_rules = request({"role": "system", "content": RULES}, task, tools=True)
    without = request({"role": "system", "content": "You are Cline."}, task, tools=True)
    for req in (with_rules, without):
        assert words_of(req, read_signals(req)) == "fix the login redirect"
    assert structure(with_rules, read_signals(with_rules)) == structure(
        without, read_signals(without)
    )


def test_a_trailing_system_instruction_is_read_with_the_users_words() -> None:
    req = request(
        {"role": "user", "content": "how do I parse dates in Go?"},
        {"role": "assistant", "content": "Use time.Parse."},
        {"role": "user", "content": "thanks"},
        {"role": "system", "content": "Summarize the conversation above in one sentence."},
    )
    signals = read_signals(req)
    assert words_of(req, signals) == "thanks\nSummarize the conversation above in one sentence."
    assert structure(req, signals)[STRUCTURE.index("system:trailing")] == 1.0


def test_the_shipped_weights_load_and_give_probabilities() -> None:
    model = LearnedModel.load(default_weights())
    assert set(model.classes) == {"memory", "implement", "analyze", "chat", "meta"}
    assert model.meta["train_examples"] >= 1000 and 0.3 <= model.temperature <= 4.0
    req = request({"role": "user", "content": "Generate a concise, 3-5 word title for the chat."})
    signals = read_signals(req)
    scores = model.probabilities(words_of(req, signals), None, structure(req, signals))
    assert abs(sum(scores.values()) - 1.0) < 1e-6
    assert max(scores, key=scores.__getitem__) == "meta"


def test_weights_of_another_feature_version_are_refused(tmp_path: Path) -> None:
    model = LearnedModel.load(default_weights())
    stale = LearnedModel(
        model.classes, model.ngram, model.embed, model.struct, model.bias, 1.0,
        {**model.meta, "feature_version": 0},
    )  # fmt: skip
    save(stale, tmp_path / "old.npz")
    with pytest.raises(ValueError, match="another feature version; retrain"):
        LearnedModel.load(tmp_path / "old.npz")


def test_retraining_learns_the_users_confirmed_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small base set (the shipped one takes a minute to fit); no embedder.
    def example(text: str, label: str) -> Example:
        req = request({"role": "user", "content": text})
        return classifier_train.examples_of([req], [label])[0]  # type: ignore[list-item]

    base = [
        example(text, label)
        for label, texts in {
            "implement": ["fix the crash in the parser", "add a retry to the client"],
            "analyze": ["explain how the cache works", "why is this query slow"],
            "chat": ["hello there", "thanks, see you tomorrow"],
            "memory": ["update memory bank", "read the memory bank first"],
            "meta": ["Generate a short title for this chat", "Suggest three follow-up questions"],
        }.items()
        for text in texts
    ]
    base_file = tmp_path / "base.jsonl.gz"
    classifier_train.save_base(base, base_file)
    monkeypatch.setattr(classifier_train, "base_set", lambda: base_file)
    words = "the numbers in the quarterly sheet look off"

    out = tmp_path / "data" / "learned_classifier.npz"
    out.parent.mkdir()
    result = retrain_with([(words, "implement")], out, embed=None)
    assert result == {"weights": str(out), "base_examples": 10, "user_examples": 1}
    model = LearnedModel.load(out)
    req = request({"role": "user", "content": words})
    signals = read_signals(req)
    scores = model.probabilities(words_of(req, signals), None, structure(req, signals))
    assert max(scores, key=scores.__getitem__) == "implement"
    assert model.temperature == LearnedModel.load(default_weights()).temperature

    # The router picks the retrained weights up from the user's data folder.
    config = write_config(tmp_path / "config", {"embedded": {"mode": "never"}})
    settings = load_settings(config, environ={"XDG_DATA_HOME": str(tmp_path)}, env_file=None)
    assert settings.config.routing.classifier.weights is None  # tmp_path/memory-router: none
    (tmp_path / "memory-router").mkdir()
    out.rename(tmp_path / "memory-router" / "learned_classifier.npz")
    settings = load_settings(config, environ={"XDG_DATA_HOME": str(tmp_path)}, env_file=None)
    assert settings.config.routing.classifier.weights == (
        tmp_path / "memory-router" / "learned_classifier.npz"
    )
    with np.load(settings.config.routing.classifier.weights) as data:
        assert json.loads(str(data["meta"]))["user_examples"] == 1
    with pytest.raises(ValueError, match="unknown task class 'gossip'"):
        retrain_with([(words, "gossip")], out, embed=None)


class _Fixed:
    """Stands in for the learned model: says what it is told."""

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}

    def probabilities(self, text: str, embedding: object, struct: object) -> dict[str, float]:
        return dict(self.scores)


def test_the_llm_classifier_is_asked_only_when_the_learned_one_is_unsure() -> None:
    from memory_router.routing.engine import RoutingEngine
    from memory_router.routing.llm_vote import vote_key
    from memory_router.routing.policy import View
    from memory_router.settings import load_settings as load

    repo = Path(__file__).resolve().parents[2]
    settings = load(repo / "config", environ={}, env_file=None)
    routing = settings.config.routing.model_copy(
        update={"classifier": settings.config.routing.classifier.model_copy(
            update={"llm": settings.config.routing.classifier.llm.model_copy(
                update={"model": "qwen3:0.6b"})})}
    )  # fmt: skip
    engine = RoutingEngine(settings.models.models, routing, 4096)
    fixed = _Fixed()
    engine.learned = fixed  # type: ignore[assignment]
    words = "the numbers in the quarterly sheet look off"
    req = request({"role": "user", "content": words})
    engine.votes = {vote_key(words): "analyze"}
    signals = read_signals(req)

    fixed.scores = {"implement": 0.45, "analyze": 0.35, "chat": 0.2, "memory": 0.0, "meta": 0.0}
    assert engine.unsure(req, signals)
    decision = engine.decide(req, View(), remember=False)
    assert decision.task == "analyze" and decision.signals["class_via"] == "llm"

    fixed.scores = {"implement": 0.9, "analyze": 0.05, "chat": 0.05, "memory": 0.0, "meta": 0.0}
    assert not engine.unsure(req, signals)
    decision = engine.decide(req, View(), remember=False)
    assert decision.task == "implement" and decision.signals["class_via"] == "learned"
    assert decision.signals["class_scores"]["implement"] == 0.9
    # A certain rule (small talk) is never put to the vote, however unsure the model.
    fixed.scores = {"implement": 0.3, "analyze": 0.3, "chat": 0.4, "memory": 0.0, "meta": 0.0}
    hello = request({"role": "user", "content": "thanks!"})
    assert not engine.unsure(hello, read_signals(hello))
