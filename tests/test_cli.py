"""The command line: route explains without calling a model; doctor checks the set-up."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import yaml
from typer.testing import CliRunner

from memory_router.cli import app
from memory_router.errors import RouterError
from tests.conftest import REPO, RouterFactory, free_socket, write_config
from tests.ollama_emulator import OllamaEmulator, Script

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


def test_route_says_the_llm_classifier_was_not_asked(tmp_path: Path) -> None:
    server = {"embedded": {"mode": "never"}, "routing": {"classifier": {"llm": {"model": "q:1b"}}}}
    config = write_config(tmp_path / "config", server)
    request = tmp_path / "request.json"
    words = "Something is off with the invoice totals when currencies differ"
    request.write_text(json.dumps({"messages": [{"role": "user", "content": words}]}))
    result = runner.invoke(app, ["route", str(request), "--config-dir", str(config), "--offline"])
    assert result.exit_code == 0, result.output
    reasons = json.loads(result.output)["reasons"]
    assert "no answer from the LLM classifier q:1b for these words" in reasons


def test_route_offline_keeps_the_capabilities_models_yaml_states(tmp_path: Path) -> None:
    models = yaml.safe_load((REPO / "config" / "models.yaml").read_text("utf-8"))
    for spec in models["models"]:
        vision = spec["name"] == "llama4:16x17b"
        spec["capabilities"] = ["completion", "tools", *(["vision"] if vision else [])]
    config = write_config(tmp_path / "config", {"embedded": {"mode": "never"}}, models)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content = [{"type": "text", "text": "What is wrong on this screenshot?"}, image]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"messages": [{"role": "user", "content": content}]}))
    result = runner.invoke(app, ["route", str(request), "--config-dir", str(config), "--offline"])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision["model"] == "llama4:16x17b"
    assert decision["signals"]["needs"] == ["vision"]
    assert "qwen3:30b-a3b skipped: it lacks vision" in decision["reasons"]


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


def test_doctor_checks_the_llm_classifiers_model(tmp_path: Path, emulator: OllamaEmulator) -> None:
    server = {
        "ollama": {"base_url": emulator.base_url},
        "embedded": {"mode": "never"},
        "routing": {"classifier": {"llm": {"model": "qwen3:0.6b"}}},
    }
    config = write_config(tmp_path / "config", server)
    result = runner.invoke(app, ["doctor", "--config-dir", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "LLM classifier qwen3:0.6b" in result.output
    assert "ollama pull qwen3:0.6b" in result.output
    assert "ollama pull qwen2.5-coder" not in result.output, "the shipped models are pulled"


def test_route_reads_what_ollama_has_loaded(tmp_path: Path, emulator: OllamaEmulator) -> None:
    import httpx

    # The coder is loaded, as if the user had just used it.
    httpx.post(
        emulator.base_url + "/api/chat",
        json={"model": "qwen2.5-coder:32b", "messages": [], "options": {"num_ctx": 32768}},
        timeout=30,
    ).raise_for_status()
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"messages": [{"role": "user", "content": "hi there"}]}))
    config = write_config(
        tmp_path / "config",
        {
            "ollama": {"base_url": emulator.base_url},
            "embedded": {"mode": "never"},
            # The emulator's models are 10,000 times smaller than the real ones: a disk as
            # much slower gives them real load times.
            "routing": {
                "budget": {
                    "vram_bytes": 16 * 1024**3,
                    "ram_bytes": 128 * 1024**3,
                    "disk_bytes_per_s": 2e9 / 10_000,
                }
            },
        },
    )
    live = runner.invoke(app, ["route", str(request), "--config-dir", str(config)])
    assert live.exit_code == 0, live.output
    decision = json.loads(live.output)
    assert decision["task"] == "chat"
    assert decision["model"] == "qwen2.5-coder:32b"  # resident: no load for a chat turn
    assert decision["loads"] is False
    offline = runner.invoke(app, ["route", str(request), "--config-dir", str(config), "--offline"])
    decision = json.loads(offline.output)
    assert decision["model"] == "qwen3:30b-a3b"  # the best fit when nothing is known
    assert (
        decision["reasons"][-1] == "residency and Ollama's model capabilities not read (--offline)"
    )
    # Nothing ran a model: the only chat request is the test's own load.
    assert len([r for r in emulator.requests if r.path == "/api/chat"]) == 1


def test_status_shows_what_a_running_router_serves_and_holds(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    body = {
        "model": "cline-memory-router",
        "messages": [{"role": "user", "content": "Fix the bug"}],
    }
    assert httpx.post(router.base_url + "/v1/chat/completions", json=body).status_code == 200
    config = router.settings.config_dir
    deadline = time.monotonic() + 5  # the answer is counted in a batch, just after it
    while True:
        result = runner.invoke(
            app,
            ["status", "--url", router.base_url, "--config-dir", str(config)],
            env={"COLUMNS": "200"},  # rich wraps cells at the terminal's width
        )
        assert result.exit_code == 0, result.output
        rows = {
            line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line
        }
        coder = rows.get("qwen2.5-coder:32b", "")
        cells = [cell.strip() for cell in coder.split("│")[1:-1]]
        if (cells and cells[5] == "1") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert f"router {router.base_url}: ready" in result.output
    assert "backend ollama (ollama): answers" in result.output
    assert cells[0] == "qwen2.5-coder:32b" and cells[2] == "completion, insert, tools"
    # The emulator's models are 10,000 times smaller than the real ones: 3.5 MB at 32k.
    assert cells[3] == "4 MB at num_ctx 32768" and cells[4:6] == ["0", "1"]
    assert "llama4:16x17b" in rows and rows["llama4:16x17b"].count(" - ") >= 1


def test_status_reports_the_llm_classifier(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    llm = {"model": "qwen3:30b-a3b", "timeout_s": 5}  # a pulled model stands in for a small one
    router = make_router(
        emulator.base_url,
        routing={"classifier": {"embedding": False, "learned": False, "llm": llm}},
    )
    emulator.enqueue(Script("analyze"), Script("ok"), Script("no idea"), Script("ok"))
    for words in ("the invoice totals when currencies differ", "the exports after the upgrade"):
        body = {"model": "cline-memory-router", "messages": [{"role": "user", "content": words}]}
        assert httpx.post(router.base_url + "/v1/chat/completions", json=body).status_code == 200
    result = runner.invoke(
        app,
        ["status", "--url", router.base_url, "--config-dir", str(router.settings.config_dir)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert (
        "LLM classifier qwen3:30b-a3b: asked 2 times, 1 answers named a class, 1 named none, "
        "0 failed" in result.output
    )


def test_status_asks_for_the_key_a_router_wants(
    emulator: OllamaEmulator, make_router: RouterFactory, tmp_path: Path
) -> None:
    router = make_router(emulator.base_url, server={"api_keys": ["sesame"]})
    config = write_config(tmp_path / "other", {"embedded": {"mode": "never"}})  # no keys here
    command = ["status", "--url", router.base_url, "--config-dir", str(config)]
    refused = runner.invoke(app, command, env={"COLUMNS": "200"})
    assert isinstance(refused.exception, RouterError)
    assert "did not accept a request without an API key" in refused.exception.message
    assert "--api-key" in refused.exception.message
    wrong = runner.invoke(app, [*command, "--api-key", "nope"], env={"COLUMNS": "200"})
    assert isinstance(wrong.exception, RouterError)
    assert "did not accept the API key given" in wrong.exception.message
    accepted = runner.invoke(app, [*command, "--api-key", "sesame"], env={"COLUMNS": "200"})
    assert accepted.exit_code == 0, accepted.output
    assert f"router {router.base_url}: ready" in accepted.output


def test_status_says_when_no_router_answers(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", {"embedded": {"mode": "never"}})
    sock = free_socket()  # bound, not listening
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = runner.invoke(app, ["status", "--url", url, "--config-dir", str(config)])
    sock.close()
    assert result.exit_code != 0
    assert isinstance(result.exception, RouterError)
    assert f"no router answers at {url}" in result.exception.message
