"""Settings: the shipped config, env precedence, URL normalisation, and actionable errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from memory_router.errors import ConfigError
from memory_router.settings import Settings, load_settings, normalize_ollama_url

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config"


def shipped_models() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SHIPPED / "models.yaml").read_text(encoding="utf-8"))
    return data


def make_config(
    directory: Path,
    server_text: str = "{}\n",
    edit_models: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A config dir with the given server_config.yaml text and the shipped models, edited."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "server_config.yaml").write_text(server_text, encoding="utf-8")
    models = shipped_models()
    if edit_models is not None:
        edit_models(models)
    (directory / "models.yaml").write_text(yaml.safe_dump(models), encoding="utf-8")
    return directory


def load(directory: Path, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(directory, environ=environ or {}, env_file=None)


def config_error(directory: Path, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(directory, environ)
    return info.value


# --- the shipped config --------------------------------------------------------------------


def test_shipped_config_loads() -> None:
    settings = load_settings(SHIPPED, environ={}, env_file=None)
    assert settings.config_dir == SHIPPED
    server = settings.config.server
    assert (server.host, server.port, server.api_keys) == ("127.0.0.1", 8000, [])
    assert server.max_body_bytes == 33554432
    assert settings.config.ollama.base_url == "http://127.0.0.1:11434"
    assert settings.config.ollama.enabled is True
    assert settings.config.openai_upstreams == []
    assert settings.config.embedded.mode == "auto"
    assert settings.config.logging.level == "INFO"
    assert settings.config.logging.log_prompts is False
    models = settings.models
    assert models.virtual_model == "cline-memory-router"
    assert models.reserved_output_tokens == 4096
    assert [(m.name, m.num_ctx, m.keep_alive, m.warm) for m in models.models] == [
        ("qwen3:30b-a3b", 32768, "24h", True),
        ("qwen2.5-coder:32b", 32768, "30m", False),
        ("llama4:16x17b", 131072, "10m", False),
    ]
    assert list(models.by_name()) == ["qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"]


def test_empty_server_config_gives_defaults(tmp_path: Path) -> None:
    settings = load(make_config(tmp_path, server_text=""))
    assert settings.config.server.port == 8000
    assert settings.config.ollama.base_url == "http://127.0.0.1:11434"


def test_config_dir_from_router_config_dir_variable(tmp_path: Path) -> None:
    directory = make_config(tmp_path / "cfg", server_text="server: {port: 8123}\n")
    settings = load_settings(None, environ={"ROUTER_CONFIG_DIR": str(directory)}, env_file=None)
    assert settings.config_dir == directory
    assert settings.config.server.port == 8123


# --- environment precedence ----------------------------------------------------------------


def test_ollama_host_bind_address_becomes_loopback_url() -> None:
    settings = load(SHIPPED, {"OLLAMA_HOST": "0.0.0.0:11500"})
    assert settings.config.ollama.base_url == "http://127.0.0.1:11500"


def test_ollama_base_url_wins_over_ollama_host() -> None:
    settings = load(
        SHIPPED, {"OLLAMA_HOST": "0.0.0.0:11500", "OLLAMA_BASE_URL": "http://gpu-box:11434"}
    )
    assert settings.config.ollama.base_url == "http://gpu-box:11434"


def test_router_variables_override_yaml() -> None:
    settings = load(
        SHIPPED,
        {
            "ROUTER_HOST": "0.0.0.0",
            "ROUTER_PORT": "9100",
            "ROUTER_API_KEYS": " key-one, key-two ,,",
            "ROUTER_EMBEDDED": "never",
            "VECTOR_STORE_PATH": "/var/vs",
            "LOG_LEVEL": "debug",
            "ROUTER_LOG_PROMPTS": "true",
        },
    )
    server = settings.config.server
    assert (server.host, server.port) == ("0.0.0.0", 9100)
    assert [key.get_secret_value() for key in server.api_keys] == ["key-one", "key-two"]
    assert settings.config.embedded.mode == "never"
    assert settings.config.memory.vector_store_path == Path("/var/vs")
    assert settings.config.logging.level == "DEBUG"
    assert settings.config.logging.log_prompts is True


def test_empty_variable_does_not_override() -> None:
    settings = load(SHIPPED, {"ROUTER_PORT": "", "OLLAMA_HOST": ""})
    assert settings.config.server.port == 8000
    assert settings.config.ollama.base_url == "http://127.0.0.1:11434"


def test_dotenv_value_is_used_and_real_variable_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ROUTER_PORT=9001\nROUTER_HOST=10.0.0.5\n# a comment\n", encoding="utf-8")
    from_file = load_settings(SHIPPED, environ={}, env_file=env_file)
    assert (from_file.config.server.host, from_file.config.server.port) == ("10.0.0.5", 9001)
    both = load_settings(SHIPPED, environ={"ROUTER_PORT": "9002"}, env_file=env_file)
    assert (both.config.server.host, both.config.server.port) == ("10.0.0.5", 9002)


def test_missing_dotenv_file_is_ignored(tmp_path: Path) -> None:
    settings = load_settings(SHIPPED, environ={}, env_file=tmp_path / "absent.env")
    assert settings.config.server.port == 8000


# --- normalize_ollama_url ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("localhost:11500", "http://localhost:11500"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:11500", "http://127.0.0.1:11500"),
        (":11500", "http://127.0.0.1:11500"),
        ("http://gpu-box:11434", "http://gpu-box:11434"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
        ("  http://gpu-box:11434  ", "http://gpu-box:11434"),
        # As Ollama reads OLLAMA_HOST: an explicit scheme without a port means 80 / 443.
        ("http://localhost", "http://localhost:80"),
        ("[::1]:11500", "http://[::1]:11500"),
        ("http://[::]:11434", "http://127.0.0.1:11434"),
        ("https://ollama.example.com", "https://ollama.example.com:443"),
        ("https://ollama.example.com:8443", "https://ollama.example.com:8443"),
        ("example.com:8080/ollama", "http://example.com:8080/ollama"),
    ],
)
def test_normalize_ollama_url(value: str, expected: str) -> None:
    assert normalize_ollama_url(value) == expected


def test_normalize_ollama_url_path_without_port() -> None:
    assert normalize_ollama_url("http://example.com/ollama") == "http://example.com:80/ollama"
    assert normalize_ollama_url("example.com/ollama") == "http://example.com:11434/ollama"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty Ollama address"),
        ("   /", "empty Ollama address"),
        ("ftp://host", "unsupported scheme 'ftp'"),
        ("host:port", "port 'port' is not a number"),
    ],
)
def test_normalize_ollama_url_rejects(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_ollama_url(value)


# --- ConfigError: server_config.yaml -------------------------------------------------------


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    directory = make_config(tmp_path, server_text="server:\n  port: 8000\n  host: [oops\n")
    error = config_error(directory)
    assert error.source == str(directory / "server_config.yaml")
    assert error.key.startswith("line ")
    assert ", column " in error.key
    assert error.reason.startswith("invalid YAML: ")


def test_top_level_list_is_rejected(tmp_path: Path) -> None:
    error = config_error(make_config(tmp_path, server_text="- a\n- b\n"))
    assert (error.source, error.key, error.reason) == (
        str(tmp_path / "server_config.yaml"),
        "-",
        "the top level must be a mapping of keys",
    )


def test_missing_file_is_named(tmp_path: Path) -> None:
    directory = make_config(tmp_path)
    (directory / "models.yaml").unlink()
    error = config_error(directory)
    assert (error.source, error.key, error.reason) == (
        str(directory / "models.yaml"),
        "-",
        "file not found",
    )


@pytest.mark.parametrize(
    ("server_text", "key", "reason_part"),
    [
        ('server: {port: "abc"}\n', "server.port", "valid integer"),
        ("server: {port: 70000}\n", "server.port", "less than or equal to 65535"),
        ("server: {prot: 8000}\n", "server.prot", "Extra inputs are not permitted"),
        ("telemetry: true\n", "telemetry", "Extra inputs are not permitted"),
        ("ollama: {base_url: 'ftp://x'}\n", "ollama.base_url", "unsupported scheme 'ftp'"),
        ("embedded: {mode: sometimes}\n", "embedded.mode", "'auto', 'always' or 'never'"),
        (
            "openai_upstreams: [{name: 'bad name', base_url: 'http://x'}]\n",
            "openai_upstreams.0.name",
            "should match pattern",
        ),
        ("routing: {policy: fixed}\n", "routing.fixed_model", "policy 'fixed' needs"),
        (
            "routing: {policy: fixed, fixed_model: 'phi9:1b'}\n",
            "routing.fixed_model",
            "one of llama4:16x17b, qwen2.5-coder:32b, qwen3:30b-a3b",
        ),
        ("routing: {policy: cheapest}\n", "routing.policy", "'residency', 'best_fit'"),
        ("routing: {ctx_ladder: [100]}\n", "routing.ctx_ladder", "at least 512"),
        (
            "routing: {escalation: {backend: cloud}}\n",
            "routing.escalation",
            "set both backend and model",
        ),
        (
            "routing: {escalation: {backend: cloud, model: big}}\n",
            "routing.escalation.backend",
            "'cloud' is not an openai_upstreams entry",
        ),
        (
            "routing: {classifier: {llm: {model: 'qwen3:0.6b', backend: gpu2}}}\n",
            "routing.classifier.llm.backend",
            "unknown backend 'gpu2': use one of embedded, ollama",
        ),
        (
            "routing: {classifier: {llm: {model: 'qwen3:0.6b', timeout_s: 0}}}\n",
            "routing.classifier.llm.timeout_s",
            "greater than 0",
        ),
        (
            "routing: {queue: {retry_after_s: 0}}\n",
            "routing.queue.retry_after_s",
            "greater than or equal to 1",
        ),
        (
            "logging: {decision_log: {max_files: 0}}\n",
            "logging.decision_log.max_files",
            "greater than or equal to 1",
        ),
    ],
)
def test_server_config_errors_name_file_and_key(
    tmp_path: Path, server_text: str, key: str, reason_part: str
) -> None:
    error = config_error(make_config(tmp_path, server_text=server_text))
    assert error.source == str(tmp_path / "server_config.yaml")
    assert error.key == key
    assert reason_part in error.reason
    assert str(error) == f"{error.source}: {key}: {error.reason}"


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("ROUTER_PORT", "abc", "server.port"),
        ("ROUTER_PORT", "0", "server.port"),
        ("OLLAMA_HOST", "ftp://x", "ollama.base_url"),
        ("OLLAMA_BASE_URL", "http://h:port", "ollama.base_url"),
        ("LOG_LEVEL", "loud", "logging.level"),
        ("ROUTER_EMBEDDED", "sometimes", "embedded.mode"),
        ("ROUTER_LOG_PROMPTS", "perhaps", "logging.log_prompts"),
    ],
)
def test_bad_environment_value_names_the_variable(name: str, value: str, key: str) -> None:
    error = config_error(SHIPPED, {name: value})
    assert error.source == f"environment variable {name}"
    assert error.key == key


def test_env_override_into_non_mapping_section_names_the_file(tmp_path: Path) -> None:
    error = config_error(make_config(tmp_path, server_text="server: 5\n"), {"ROUTER_PORT": "1"})
    assert (error.source, error.key, error.reason) == (
        str(tmp_path / "server_config.yaml"),
        "server",
        "must be a mapping",
    )


# --- ConfigError: models.yaml --------------------------------------------------------------


def _set(index: int, **values: Any) -> Callable[[dict[str, Any]], None]:
    def edit(models: dict[str, Any]) -> None:
        models["models"][index].update(values)

    return edit


def _fit(index: int, **scores: float) -> Callable[[dict[str, Any]], None]:
    def edit(models: dict[str, Any]) -> None:
        models["models"][index]["task_fit"].update(scores)

    return edit


def _drop_fit(index: int, task: str) -> Callable[[dict[str, Any]], None]:
    def edit(models: dict[str, Any]) -> None:
        del models["models"][index]["task_fit"][task]

    return edit


@pytest.mark.parametrize(
    ("edit", "key", "reason_part"),
    [
        (_fit(0, memory=1.5), "models.0.task_fit", "score for 'memory' must lie between 0 and 1"),
        (_fit(1, chat=-0.1), "models.1.task_fit", "score for 'chat' must lie between 0 and 1"),
        (_drop_fit(0, "meta"), "models.0.task_fit", "missing scores for meta"),
        (_fit(0, review=0.5), "models.0.task_fit.review.[key]", "'memory', 'implement'"),
        (_set(1, num_ctx=65536), "models.1.num_ctx", "65536 exceeds context_window 32768"),
        (_set(2, name="qwen3:30b-a3b"), "models.2.name", "duplicate model 'qwen3:30b-a3b'"),
        (_set(2, name="cline-memory-router"), "models.2.name", "clashes with virtual_model"),
        (
            _set(2, backend="lmstudio"),
            "models.2.backend",
            "unknown backend 'lmstudio': use one of embedded, ollama",
        ),
        (_set(1, keep_alive="5 minutes"), "models.1.keep_alive", "'5 minutes' is not a duration"),
        (_set(1, keep_alive="m5"), "models.1.keep_alive", "'m5' is not a duration"),
        (_set(0, colour="red"), "models.0.colour", "Extra inputs are not permitted"),
        (_set(0, role="boss"), "models.0.role", "'fast', 'coder', 'long_context' or 'general'"),
        (_set(0, num_ctx=0), "models.0.num_ctx", "greater than 0"),
        (lambda m: m.update(models=[]), "models", "at least 1 item"),
    ],
)
def test_models_errors_name_file_and_key(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], key: str, reason_part: str
) -> None:
    error = config_error(make_config(tmp_path, edit_models=edit))
    assert error.source == str(tmp_path / "models.yaml")
    assert error.key == key
    assert reason_part in error.reason


@pytest.mark.parametrize("keep_alive", ["5m", "1h30m", "-1m", "300", "0", 0, -1, 2.5, "1.5h"])
def test_valid_keep_alive_values(tmp_path: Path, keep_alive: str | int | float) -> None:
    settings = load(make_config(tmp_path, edit_models=_set(0, keep_alive=keep_alive)))
    assert settings.models.models[0].keep_alive == keep_alive


def test_upstream_backend_is_known_once_declared(tmp_path: Path) -> None:
    directory = make_config(
        tmp_path,
        server_text="openai_upstreams: [{name: lmstudio, base_url: 'http://127.0.0.1:1234/v1'}]\n",
        edit_models=_set(2, backend="lmstudio"),
    )
    assert load(directory).models.models[2].backend == "lmstudio"


# --- the CLI exits 2 with file, key and reason -----------------------------------------------


def test_serve_with_broken_config_exits_2_naming_file_key_and_reason(tmp_path: Path) -> None:
    bad_dir = make_config(tmp_path / "bad", server_text='server: {port: "abc"}\n')
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ROUTER_", "OLLAMA_", "LOG_LEVEL", "VECTOR_STORE_PATH"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "memory_router", "serve", "--config-dir", str(bad_dir)],
        cwd=tmp_path,  # no stray .env is picked up
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert str(bad_dir / "server_config.yaml") in result.stderr
    assert "server.port" in result.stderr
    assert "Input should be a valid integer" in result.stderr
    assert result.stderr.startswith("memory-router: invalid configuration: ")
    assert "Traceback" not in result.stderr


def test_task_examples_are_read_and_checked(tmp_path: Path) -> None:
    directory = make_config(tmp_path)
    assert load(directory).task_examples == {}
    (directory / "task_examples.yaml").write_text("meta: [name this chat]\n", encoding="utf-8")
    assert load(directory).task_examples == {"meta": ["name this chat"]}
    (directory / "task_examples.yaml").write_text("gossip: [hi]\n", encoding="utf-8")
    error = config_error(directory)
    assert (error.source, error.key) == (str(directory / "task_examples.yaml"), "gossip")
    assert "not a task class" in error.reason
    (directory / "task_examples.yaml").write_text("chat: hi\n", encoding="utf-8")
    assert "must be a list of non-empty strings" in config_error(directory).reason


def test_shipped_task_examples_cover_every_class() -> None:
    examples = load_settings(SHIPPED, environ={}, env_file=None).task_examples
    assert set(examples) == {"memory", "implement", "analyze", "chat", "meta"}
    assert all(len(texts) >= 5 for texts in examples.values())
