"""``memory-router learn``'s parts: reading confirmed candidates, the user's examples,
``retrain``, and the router reading them back at start-up."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from memory_router.errors import ConfigError
from memory_router.learn import (
    Candidate,
    add_examples,
    read_candidates,
    read_learned,
    retrain,
)
from memory_router.settings import load_settings
from tests.conftest import write_config


def candidates(path: Path, *entries: dict[str, Any] | str) -> Path:
    lines = [e if isinstance(e, str) else json.dumps(e) for e in entries]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def entry(request_id: str, words: str | None, cls: str | None, confirmed: bool) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "session": "s",
        "words": words,
        "class_given": "chat",
        "proposed_class": cls,
        "reason": "flip: ...",
        "confirmed": confirmed,
    }


def test_confirmed_candidates_are_read_and_the_rest_counted(tmp_path: Path) -> None:
    path = candidates(
        tmp_path / "c.jsonl",
        entry("r1", " tidy the helpers ", "implement", True),
        entry("r2", "hello", "chat", False),
        "",
        entry("r3", "what does it do", "analyze", True),
    )
    confirmed, unconfirmed, problems = read_candidates(path)
    assert confirmed == [
        Candidate("tidy the helpers", "implement", "r1"),
        Candidate("what does it do", "analyze", "r3"),
    ]
    assert unconfirmed == 1 and problems == []


def test_what_cannot_be_learned_is_said_with_its_line(tmp_path: Path) -> None:
    path = candidates(
        tmp_path / "c.jsonl",
        entry("r1", None, "implement", True),
        entry("r2", "hi", "gossip", True),
        entry("r3", "hi", None, True),
        "{not json",
        entry("r5", None, "gossip", False),  # unconfirmed: not checked
    )
    _, unconfirmed, problems = read_candidates(path)
    assert [str(p) for p in problems] == [
        'line 1 (request r1): confirmed but has no "words": the decision log kept no prompt '
        'text (logging.log_prompts was off); write the user\'s words in, or set "confirmed" '
        "to false",
        "line 2 (request r2): unknown class 'gossip' in \"proposed_class\": use one of memory, "
        "implement, analyze, chat, meta",
        'line 3 (request r3): no "proposed_class": use one of memory, implement, analyze, '
        "chat, meta",
        "line 4: not valid JSON (Expecting property name enclosed in double quotes)",
    ]
    assert unconfirmed == 1


def test_examples_are_added_once_and_a_new_class_replaces_the_old(tmp_path: Path) -> None:
    first = add_examples(tmp_path, [Candidate("Tidy the helpers", "implement", "r1")])
    assert [c.request_id for c in first.added] == ["r1"]
    second = add_examples(
        tmp_path,
        [
            Candidate("tidy  the helpers", "implement", "r9"),  # the same words
            Candidate("why is it slow", "chat", "r2"),
            Candidate("why is it slow", "analyze", "r3"),  # changed their mind
        ],
    )
    assert second.known == 1 and [c.request_id for c in second.added] == ["r2"]
    assert [c.request_id for c in second.relabelled] == ["r3"]
    assert second.examples == [("Tidy the helpers", "implement"), ("why is it slow", "analyze")]
    assert [(e["words"], e["class"]) for e in read_learned(tmp_path)] == second.examples


def test_retrain_writes_the_user_task_examples_and_says_when_it_cannot_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = "memory_router.classifier_train"  # as it was before retrain_with
    monkeypatch.setitem(sys.modules, trainer, types.ModuleType(trainer))
    out = tmp_path / "data" / "learned_classifier.npz"
    done = retrain([("tidy the helpers", "implement"), ("hi", "chat")], out)
    written = tmp_path / "data" / "user_task_examples.yaml"
    assert yaml.safe_load(written.read_text()) == {
        "implement": ["tidy the helpers"],
        "chat": ["hi"],
    }
    assert done["task_examples"] == str(written) and done["examples"] == 2
    assert done["classifier"] is None and "has no retrain_with yet" in done["note"]
    assert not out.exists()
    monkeypatch.setitem(sys.modules, trainer, None)  # cannot be imported (no scikit-learn)
    assert "was not retrained" in retrain([("hi", "chat")], out)["note"]
    with pytest.raises(ValueError, match="unknown task classes \\['gossip'\\]"):
        retrain([("hi", "gossip")], out)


def test_retrain_hands_the_examples_to_the_trainer_when_it_has_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[tuple[str, str]], Path]] = []

    def retrain_with(examples: list[tuple[str, str]], out: Path) -> dict[str, Any]:
        calls.append((examples, out))
        return {"accuracy": 0.9}

    trainer = types.ModuleType("memory_router.classifier_train")
    trainer.retrain_with = retrain_with  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, trainer.__name__, trainer)
    out = tmp_path / "learned_classifier.npz"
    done = retrain([("hi", "chat")], out)
    assert calls == [([("hi", "chat")], out)]
    assert done["classifier"] == str(out) and done["trained"] == {"accuracy": 0.9}
    assert done["note"] is None


def test_the_router_adds_the_user_examples_from_the_data_folder(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", {"embedded": {"mode": "never"}})
    (config / "task_examples.yaml").write_text("chat: [hello there]\nmeta: [name this chat]\n")
    data = tmp_path / "xdg" / "memory-router"
    data.mkdir(parents=True)
    (data / "user_task_examples.yaml").write_text(
        "chat: [hello there, how are you]\nanalyze: [why is it slow]\n"
    )
    environ = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    examples = load_settings(config, environ=environ, env_file=None).task_examples
    assert examples == {
        "chat": ["hello there", "how are you"],
        "meta": ["name this chat"],
        "analyze": ["why is it slow"],
    }
    # An environment naming no home has no data folder (tests pass environ={}).
    assert "analyze" not in load_settings(config, environ={}, env_file=None).task_examples
    (data / "user_task_examples.yaml").write_text("gossip: [hi]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ=environ, env_file=None)
    assert info.value.source == str(data / "user_task_examples.yaml")
