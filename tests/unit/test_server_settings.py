"""What ``serve`` hands uvicorn: the keep-alive, and where it may listen without API keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

import memory_router.api.app
import memory_router.logs
from memory_router.cli import app, exposure_refusal
from memory_router.errors import RouterError
from memory_router.settings import ServerSettings, load_settings
from tests.conftest import write_config

runner = CliRunner()


def settings_of(
    tmp_path: Path, server: dict[str, Any], environ: dict[str, str] | None = None
) -> ServerSettings:
    directory = write_config(tmp_path / "config", {"server": server})
    return load_settings(directory, environ=environ or {}, env_file=None).config.server


# --- keep-alive -----------------------------------------------------------------------------


def test_keep_alive_outlasts_common_clients_by_default(tmp_path: Path) -> None:
    # httpx, and so the openai SDK, keeps idle connections 5 s; browsers and proxies longer.
    assert settings_of(tmp_path, {}).keep_alive_s == 75


def test_keep_alive_is_configurable(tmp_path: Path) -> None:
    assert settings_of(tmp_path, {"keep_alive_s": 120}).keep_alive_s == 120


def test_keep_alive_must_be_positive(tmp_path: Path) -> None:
    from memory_router.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        settings_of(tmp_path, {"keep_alive_s": 0})
    assert info.value.key == "server.keep_alive_s"


# --- listening beyond loopback --------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.2", "127.255.0.1", "::1", "[::1]", "localhost", "LocalHost"]
)
def test_loopback_without_keys_is_fine(host: str) -> None:
    assert exposure_refusal(ServerSettings(host=host)) is None


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "[::]", "192.168.1.20", "10.0.0.1", "my-box", ""]
)
def test_beyond_loopback_without_keys_is_refused(host: str) -> None:
    refusal = exposure_refusal(ServerSettings(host=host))
    assert refusal is not None
    assert "server.api_keys" in refusal and "ROUTER_API_KEYS" in refusal


def test_beyond_loopback_with_keys_or_the_opt_out_is_fine() -> None:
    assert exposure_refusal(ServerSettings(host="0.0.0.0", api_keys=["k"])) is None  # type: ignore[list-item]
    opted_out = ServerSettings(host="0.0.0.0", allow_unauthenticated_remote=True)
    assert exposure_refusal(opted_out) is None


def test_opt_out_from_the_environment(tmp_path: Path) -> None:
    environ = {"ROUTER_ALLOW_UNAUTHENTICATED_REMOTE": "true"}
    assert settings_of(tmp_path, {}, environ).allow_unauthenticated_remote is True
    assert settings_of(tmp_path, {}).allow_unauthenticated_remote is False


class Recorded:
    """uvicorn's server and the logging set-up replaced: nothing listens, nothing is global.
    Each run records the settings the server was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list[dict[str, Any]] = []
        monkeypatch.setattr(uvicorn, "run", lambda app, **kw: self.runs.append(kw))
        monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets=None: self._ran(server))
        monkeypatch.setattr(memory_router.logs, "configure_logging", lambda *a, **kw: None)
        monkeypatch.setattr(memory_router.api.app, "create_app", lambda settings: object())

    def _ran(self, server: uvicorn.Server) -> None:
        server.started = True  # as a server that bound its port and ran until stopped
        config = server.config
        self.runs.append(
            {
                "host": config.host,
                "port": config.port,
                "timeout_keep_alive": config.timeout_keep_alive,
                "timeout_graceful_shutdown": config.timeout_graceful_shutdown,
            }
        )


def serve(tmp_path: Path, server: dict[str, Any], *args: str, **env: str) -> Any:
    config = write_config(tmp_path / "config", {"server": server, "embedded": {"mode": "never"}})
    return runner.invoke(app, ["serve", "--config-dir", str(config), *args], env=env)


@pytest.mark.parametrize(
    ("server", "args", "env"),
    [
        ({}, ["--insecure-no-auth"], {}),
        ({"allow_unauthenticated_remote": True}, [], {}),
        ({}, [], {"ROUTER_ALLOW_UNAUTHENTICATED_REMOTE": "1"}),
        ({"api_keys": ["sesame"]}, [], {}),
    ],
)
def test_serve_listens_beyond_loopback_with_keys_or_the_opt_out(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: dict[str, Any],
    args: list[str],
    env: dict[str, str],
) -> None:
    recorded = Recorded(monkeypatch)
    result = serve(tmp_path, server, "--host", "0.0.0.0", *args, **env)
    assert result.exit_code == 0, result.output
    (run,) = recorded.runs
    assert run["host"] == "0.0.0.0"


def test_serve_refuses_beyond_loopback_without_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = Recorded(monkeypatch)
    result = serve(tmp_path, {}, "--host", "0.0.0.0")
    assert isinstance(result.exception, RouterError), result.output
    assert "refusing to listen on 0.0.0.0 without API keys" in result.exception.message
    assert recorded.runs == []


def test_serve_hands_uvicorn_the_keep_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = Recorded(monkeypatch)
    assert serve(tmp_path, {}).exit_code == 0
    assert serve(tmp_path, {"keep_alive_s": 30}).exit_code == 0
    assert [run["timeout_keep_alive"] for run in recorded.runs] == [75, 30]
    assert recorded.runs[0]["host"] == "127.0.0.1"


def test_serve_gives_uvicorn_time_to_drain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = Recorded(monkeypatch)
    assert serve(tmp_path, {"drain_s": 12}).exit_code == 0
    # The router ends what still runs at drain_s; uvicorn's own cut comes only after.
    assert recorded.runs[0]["timeout_graceful_shutdown"] > 12
