"""The loop from real use, end to end: a router in front of the Ollama emulator serves a
scripted session over HTTP; ``memory-router review`` finds its misroutes in the decision log,
``review --export`` writes them as candidates, ``learn`` adds the confirmed ones to the
user's examples, and a router started afterwards routes by them."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from memory_router.cli import app
from memory_router.settings import load_settings
from tests.conftest import RouterFactory, RouterThread, write_config
from tests.ollama_emulator import OllamaEmulator, Script

VIRTUAL = "cline-memory-router"
FAST, CODER, LONG = "qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"
VAGUE = "the dates come from the billing export"  # no rule decides it: chat by default
runner = CliRunner()


class Task:
    """One conversation (a Cline task): each turn sends the whole history so far."""

    def __init__(self, router: RouterThread) -> None:
        self.router = router
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a coding assistant."}
        ]

    def say(self, request_id: str, text: str) -> httpx.Response:
        self.messages.append({"role": "user", "content": text})
        reply = httpx.post(
            self.router.base_url + "/v1/chat/completions",
            json={"model": VIRTUAL, "messages": self.messages, "stream": False},
            headers={"x-request-id": request_id},
            timeout=60,
        )
        if reply.status_code == 200:
            answer = reply.json()["choices"][0]["message"]["content"]
            self.messages.append({"role": "assistant", "content": answer})
        return reply


def routed_to(reply: httpx.Response) -> str:
    assert reply.status_code == 200, reply.text
    return reply.headers["x-router-model"]


def by_kind(report: dict[str, Any]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for suspect in report["suspects"]:
        for reason in suspect["reasons"]:
            kinds.setdefault(reason["kind"], []).append(suspect["request_id"])
    return kinds


def review(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["review", *args, "--json"])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_review_export_learn_and_the_next_start(
    emulator: OllamaEmulator,
    make_router: RouterFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rules and the example vote route this session (the learned classifier reads the
    # vague words as implementation already): the scenario needs a flip to find.
    router = make_router(
        emulator.base_url,
        logging={"log_prompts": True},
        # An error must reach the log as one: no retry or fallback turns it into an answer.
        routing={"classifier": {"learned": False}, "failover": {"retries": 0, "fallback": False}},
    )
    dates = Task(router)  # a repeat right after the answer, then a correction
    assert routed_to(dates.say("a1", "write a function that parses ISO dates")) == CODER
    assert routed_to(dates.say("a2", "write a function that parses ISO dates")) == CODER
    assert routed_to(dates.say("a3", "no, that's not what I asked: use the datetime module"))
    design = Task(router)  # a load that serves one request: its task goes elsewhere next
    assert routed_to(design.say("d1", "review the architecture and explain its trade-offs")) == LONG
    assert routed_to(design.say("d2", "now add a --verbose flag to the cli")) == CODER
    parser = Task(router)  # implement, chat, implement: a flip and back
    assert routed_to(parser.say("b1", "refactor the parser module to use dataclasses")) == CODER
    assert routed_to(parser.say("b2", VAGUE)) == FAST
    assert routed_to(parser.say("b3", "now rename the Parser class to DateParser")) == CODER
    emulator.enqueue(Script(status=500, error="model crashed"))  # an error
    assert Task(router).say("c1", "hello, how are you today?").status_code == 502
    router.stop()  # flushes the decision log
    log = tmp_path / "decisions0.jsonl"

    report = review("--log", str(log))
    assert report["records"] == 9
    assert by_kind(report) == {
        "repeat": ["a1"],
        "correction": ["a2"],
        "load_served_one": ["d1"],
        "flip": ["b2"],
        "error": ["c1"],
    }
    suspects = {s["request_id"]: s for s in report["suspects"]}
    assert suspects["a2"]["proposed_class"] == "chat"  # what the correction was classed
    assert suspects["b2"]["proposed_class"] == "implement"  # where the task settled
    assert suspects["b2"]["words"] == VAGUE
    assert "error:502" in suspects["c1"]["reasons"][0]["detail"]
    assert "went to qwen2.5-coder:32b" in suspects["d1"]["reasons"][0]["detail"]
    assert review("--log", str(log), "--since", "1h")["records"] == 9
    table = runner.invoke(app, ["review", "--log", str(log)])
    assert table.exit_code == 0 and "9 records read, 5 suspected: repeat 1" in table.output

    candidates_file = tmp_path / "candidates.jsonl"
    exported = runner.invoke(app, ["review", "--log", str(log), "--export", str(candidates_file)])
    assert exported.exit_code == 0, exported.output
    candidates = [json.loads(line) for line in candidates_file.read_text().splitlines()]
    assert [c["request_id"] for c in candidates] == ["a1", "a2", "d1", "b2", "c1"]
    assert candidates[3] == {
        "request_id": "b2",
        "session": candidates[3]["session"],
        "words": VAGUE,
        "class_given": "chat",
        "proposed_class": "implement",
        "reason": "flip: its task went implement → chat → implement",
        "confirmed": False,
    }
    assert candidates[1]["words"] == "write a function that parses ISO dates"
    assert not any(c["confirmed"] for c in candidates)

    # The user confirms two (fixing one's class), and confirms one with a class that is none.
    candidates[1].update(confirmed=True, proposed_class="implement")
    candidates[3].update(confirmed=True)
    candidates[4].update(confirmed=True, proposed_class="gossip")
    write = candidates_file.write_text
    write("".join(json.dumps(c) + "\n" for c in candidates))
    data = tmp_path / "xdg" / "memory-router"
    trained: list[tuple[list[tuple[str, str]], Path]] = []

    def retrain_with(examples: list[tuple[str, str]], out: Path) -> dict[str, Any]:
        trained.append((examples, out))
        return {}

    trainer = types.ModuleType("memory_router.classifier_train")  # training is not tested here
    trainer.retrain_with = retrain_with  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, trainer.__name__, trainer)
    refused = runner.invoke(app, ["learn", str(candidates_file), "--data-dir", str(data)])
    assert refused.exit_code == 1
    assert "line 5 (request c1): unknown class 'gossip'" in refused.output
    assert "use one of memory, implement, analyze, chat, meta" in refused.output
    assert not (data / "learned_examples.jsonl").exists() and trained == []

    candidates[4].update(confirmed=False)
    write("".join(json.dumps(c) + "\n" for c in candidates))
    learned = runner.invoke(app, ["learn", str(candidates_file), "--data-dir", str(data)])
    assert learned.exit_code == 0, learned.output
    assert (
        "added 2 example(s)" in learned.output and "3 unconfirmed entries skipped" in learned.output
    )
    examples = [
        json.loads(line) for line in (data / "learned_examples.jsonl").read_text().splitlines()
    ]
    assert [(e["words"], e["class"], e["request_id"]) for e in examples] == [
        ("write a function that parses ISO dates", "implement", "a2"),
        (VAGUE, "implement", "b2"),
    ]
    assert trained == [
        ([(e["words"], "implement") for e in examples], data / "learned_classifier.npz")
    ]
    again = runner.invoke(app, ["learn", str(candidates_file), "--data-dir", str(data)])
    assert "2 confirmed example(s) were there already" in again.output
    assert len((data / "learned_examples.jsonl").read_text().splitlines()) == 2  # no duplicates

    # A router started with that data folder routes the vague words by the learned example.
    server: dict[str, Any] = {
        "ollama": {"base_url": emulator.base_url},
        "embedded": {"mode": "never"},
        "logging": {"level": "WARNING", "decision_log": {"enabled": False}},
        "routing": {"budget": {"vram_bytes": 16 * 1024**3, "ram_bytes": 128 * 1024**3}},
    }
    server["routing"]["classifier"] = {"learned": False}  # the example vote this time
    config = write_config(tmp_path / "config-after", server)
    settings = load_settings(config, environ={"XDG_DATA_HOME": str(data.parent)}, env_file=None)
    assert VAGUE in settings.task_examples["implement"]
    after = RouterThread(settings).start()
    try:
        body = {"model": VIRTUAL, "messages": [{"role": "user", "content": VAGUE}]}
        explained = httpx.post(after.base_url + "/v1/route/explain", json=body, timeout=120)
        decision = explained.json()
        assert decision["task"] == "implement", decision["reasons"]
        assert "closest to the labelled implement examples (cosine 1.00)" in decision["reasons"]
    finally:
        after.stop()


def test_without_prompts_repeats_are_found_and_words_must_be_written_in(
    emulator: OllamaEmulator, make_router: RouterFactory, tmp_path: Path
) -> None:
    router = make_router(emulator.base_url)  # log_prompts off: no words in the log
    dates = Task(router)
    for request_id, text in (
        ("a1", "write a function that parses ISO dates"),
        ("a2", "Write a function that parses  ISO dates"),  # case and spacing aside, the same
        ("a3", "nein, das ist nicht, was ich wollte"),
    ):
        assert dates.say(request_id, text).status_code == 200
    router.stop()
    log = tmp_path / "decisions0.jsonl"
    assert "parses" not in log.read_text()
    assert by_kind(review("--log", str(log))) == {"repeat": ["a1"], "correction": ["a2"]}

    candidates_file = tmp_path / "candidates.jsonl"
    assert runner.invoke(app, ["review", "--log", str(log), "--export", str(candidates_file)])
    first, second = (json.loads(line) for line in candidates_file.read_text().splitlines())
    assert first["words"] is None and second["words"] is None
    first.update(confirmed=True, proposed_class="implement")
    candidates_file.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    data = tmp_path / "data"
    refused = runner.invoke(app, ["learn", str(candidates_file), "--data-dir", str(data)])
    assert refused.exit_code == 1
    assert 'line 1 (request a1): confirmed but has no "words"' in refused.output
    assert "logging.log_prompts was off" in refused.output
    assert not data.exists()
