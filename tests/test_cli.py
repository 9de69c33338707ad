"""The command line: route explains without calling a model; doctor checks the set-up."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from memory_router.cli import app
from tests.conftest import write_config
from tests.ollama_emulator import OllamaEmulator

runner = CliRunner()


def test_route_explains_a_cline_request(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "cline" / "native_turn2.json"
    config = write_config(tmp_path / "config", {"embedded": {"mode": "never"}})
    result = runner.invoke(app, ["route", str(fixture), "--config-dir", str(config)])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision["model"] == "qwen3:30b-a3b"
    assert decision["task"] == "memory"
    assert decision["num_ctx"] == 32768
    assert decision["signals"]["tool_style"] == "native"
    assert {c["model"] for c in decision["candidates"]} == {
        "qwen3:30b-a3b",
        "qwen2.5-coder:32b",
        "llama4:16x17b",
    }


def test_doctor_names_what_to_pull(tmp_path: Path, emulator: OllamaEmulator) -> None:
    models = {
        "models": [
            {
                "name": name,
                "context_window": 8192,
                "num_ctx": 8192,
                "task_fit": {"memory": 1, "implement": 1, "analyze": 1, "chat": 1, "meta": 1},
            }
            for name in ("qwen3:30b-a3b", "phi9:1b")
        ]
    }
    config = write_config(
        tmp_path / "config",
        {"ollama": {"base_url": emulator.base_url}, "embedded": {"mode": "never"}},
        models,
    )
    result = runner.invoke(app, ["doctor", "--config-dir", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "ollama pull phi9:1b" in result.output
    assert "0.13.0" in result.output
