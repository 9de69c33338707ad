"""``memory-router serve`` as a process: where it listens, its keep-alive, its stderr."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import memory_router
from tests.conftest import free_socket, write_config
from tests.serve_process import ServeProcess, clean_env, free_port, router_command

BUILT_IN = Path(memory_router.__file__).parent / "defaults"


@pytest.fixture
def dead_ollama() -> Iterator[str]:
    """An address where nothing answers (bound, never listening): no Ollama is reached."""
    sock = free_socket()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture
def guarded_port() -> Iterator[int]:
    """A port held on every address and never listened on: should ``serve`` get past its
    check when it should not, it cannot listen there either (so it never serves anyone)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))  # no SO_REUSEADDR: uvicorn's bind to it fails
        yield sock.getsockname()[1]


def light_config(directory: Path, ollama: str, **server: Any) -> Path:
    """A config that starts fast: no embedded model, no memory, no embedder."""
    return write_config(
        directory,
        {
            "server": server,
            "ollama": {"base_url": f"http://{ollama}", "connect_timeout_s": 1},
            "embedded": {"mode": "never"},
            "memory": {"enabled": False},
            "routing": {"classifier": {"embedding": False}, "warm_pinned": False},
            "logging": {"decision_log": {"path": str(directory / "decisions.jsonl")}},
        },
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` parsed as a JSON object; fails naming the first that is not."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"a stderr line is not JSON: {line!r}\n--- all of stderr:\n{text}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


# --- 13: no keys, no listening beyond loopback ---------------------------------------------


@pytest.mark.parametrize("how", ["--host", "ROUTER_HOST", "server.host"])
def test_serve_refuses_to_listen_beyond_loopback_without_api_keys(
    tmp_path: Path, dead_ollama: str, guarded_port: int, how: str
) -> None:
    config = light_config(
        tmp_path / "config", dead_ollama, **({"host": "0.0.0.0"} if how == "server.host" else {})
    )
    args = ["--config-dir", str(config), "--port", str(guarded_port)]
    extra = {"ROUTER_HOST": "0.0.0.0"} if how == "ROUTER_HOST" else {}
    if how == "--host":
        args += ["--host", "0.0.0.0"]
    result = subprocess.run(
        [*router_command(), "serve", *args],
        cwd=tmp_path,
        env=clean_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    message = result.stderr
    assert message.startswith("memory-router: refusing to listen on 0.0.0.0 without API keys")
    # It says how to set keys, and how to go ahead anyway.
    assert "server.api_keys" in message and "ROUTER_API_KEYS" in message
    assert "Authorization: Bearer" in message
    assert "--insecure-no-auth" in message and "server.allow_unauthenticated_remote" in message
    assert "address already in use" not in message and "Traceback" not in message


def test_serve_without_keys_still_starts_on_loopback(tmp_path: Path, dead_ollama: str) -> None:
    config = light_config(tmp_path / "config", dead_ollama)
    port = free_port()
    args = ["--config-dir", str(config), "--host", "127.0.0.1", "--port", str(port)]
    with ServeProcess(args, tmp_path, clean_env(tmp_path), port) as served:
        served.wait_ready()
        models = httpx.get(served.base_url + "/v1/models", timeout=10)
        assert models.status_code == 200  # no key asked for on loopback
        assert models.json()["data"][0]["id"] == "cline-memory-router"


# --- 14: idle keep-alive connections outlive the clients' pools -----------------------------


def _get_health(sock: socket.socket) -> http.client.HTTPResponse:
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    response.close()  # closes the response's reader, not the socket
    return response


def test_serve_keeps_an_idle_connection_open_past_httpx_keepalive_expiry(
    tmp_path: Path, dead_ollama: str
) -> None:
    """httpx (so the openai SDK) reuses a pooled connection idle for up to 5 s; uvicorn used
    to close it at 5 s too, and a reuse just then failed with a disconnect."""
    config = light_config(tmp_path / "config", dead_ollama)
    port = free_port()
    args = ["--config-dir", str(config), "--port", str(port)]
    with ServeProcess(args, tmp_path, clean_env(tmp_path), port) as served:
        served.wait_ready()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            first = _get_health(sock)
            assert first.status == 200
            assert first.getheader("connection", "keep-alive").lower() != "close"
            time.sleep(5.5)  # idle past httpx's keepalive_expiry (and uvicorn's old default)
            sock.setblocking(False)
            try:
                pending = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                pending = None  # open, nothing to read: as it should be
            sock.setblocking(True)
            assert pending is None, "the router closed the idle connection"
            second = _get_health(sock)  # the same connection, reused
            assert second.status == 200


# --- 15: an installed router starts anywhere -----------------------------------------------


def test_serve_outside_the_repository_starts_on_the_built_in_defaults(
    tmp_path: Path, dead_ollama: str
) -> None:
    somewhere = tmp_path / "somewhere"  # no config/ here, none in the user's config folder
    somewhere.mkdir()
    port = free_port()
    env = clean_env(
        tmp_path, ROUTER_PORT=str(port), ROUTER_EMBEDDED="never", OLLAMA_HOST=dead_ollama
    )
    with ServeProcess([], somewhere, env, port) as served:
        served.wait_ready()
        memory = httpx.get(served.base_url + "/v1/memory/status", timeout=120)
        assert memory.status_code == 200
    records = json_lines(served.stderr())
    (startup,) = [r for r in records if r.get("event") == "config_read"]
    assert startup["source"] == "built-in defaults"
    assert Path(startup["folder"]).resolve() == BUILT_IN.resolve()
    assert startup["files"] == ["server_config.yaml", "models.yaml", "task_examples.yaml"]
    data = tmp_path / "data-home" / "memory-router"
    assert startup["paths_relative_to"] == str(data)
    # Relative paths of the defaults land in the user's data folder, not in the working
    # directory (nor in the package).
    assert memory.json()["store"] == str(data / "vector_stores")
    assert (data / "vector_stores").is_dir()
    assert sorted(p.name for p in somewhere.iterdir()) == [f"serve-{port}.stderr"]


# --- 16: with json_logs, every stderr line is JSON ----------------------------------------


def test_serve_writes_only_json_lines_to_stderr(tmp_path: Path, dead_ollama: str) -> None:
    config = light_config(tmp_path / "config", dead_ollama)
    port = free_port()
    args = ["--config-dir", str(config), "--port", str(port)]
    with ServeProcess(args, tmp_path, clean_env(tmp_path), port) as served:
        served.wait_ready()
        with httpx.Client(base_url=served.base_url, timeout=30) as client:
            assert client.get("/nowhere").status_code == 404
            body = {"model": "cline-memory-router", "messages": [{"role": "user", "content": "hi"}]}
            failed = client.post("/v1/chat/completions", json=body)
            assert failed.status_code == 503  # no Ollama: a warning is logged
        served.stop()  # its shutdown lines too
    records = json_lines(served.stderr())
    by_logger = {r.get("logger") for r in records}
    assert "uvicorn.error" in by_logger
    events = [r["event"] for r in records]
    assert any(e.startswith("Uvicorn running on") for e in events)
    assert any(e.startswith("Finished server process") for e in events)
    (failure,) = [r for r in records if r["event"] == "request_failed"]
    assert failure["request_id"] == failed.headers["x-request-id"]
    assert all({"event", "level", "timestamp"} <= set(r) for r in records)
