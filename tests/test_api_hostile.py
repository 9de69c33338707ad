"""Requests found by fuzzing: deep nesting, a client that leaves mid-body. Real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import LogCapture

from memory_router.api import app, deps
from tests.conftest import RouterThread

HELLO = {"model": "cline-memory-router", "messages": [{"role": "user", "content": "hi"}]}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


def nested(depth: int) -> dict[str, Any]:
    """A JSON schema ``depth`` objects deep (counting itself)."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def with_tool(parameters: dict[str, Any]) -> dict[str, Any]:
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    return {**HELLO, "model": "qwen2.5-coder:32b", "max_tokens": 4, "tools": [tool]}


def test_a_tool_schema_nested_too_deep_is_400_naming_where(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=with_tool(nested(130)))
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "tools.0.function.parameters"
    assert "64" in error["message"]


def test_a_deep_but_allowed_tool_schema_is_answered(http: httpx.Client) -> None:
    # 5 levels down to parameters, then 2 per schema level: 63 levels in all, under 64.
    response = http.post("/v1/chat/completions", json=with_tool(nested(30)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/route/explain", HELLO, None),
        ("/v1/embeddings", {"model": "x", "input": "y"}, "input"),
        ("/v1/completions", {"model": "x", "prompt": "y"}, "prompt"),
        ("/v1/memory/search", {"query": "q"}, "query"),
    ],
)
def test_every_body_is_bounded(
    http: httpx.Client, path: str, body: dict[str, Any], param: str | None
) -> None:
    deep: Any = "x"
    for _ in range(70):
        deep = [deep]
    key = param or "metadata"
    response = http.post(path, json={**body, key: deep})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["param"] == f"{key}.0.0.0"
    assert "nested deeper than 64" in error["message"]


PARTIAL = b'{"model": "cline-memory-router", "messages": ['


def test_a_nul_byte_in_a_prompts_working_directory_is_answered(http: httpx.Client) -> None:
    system = "You are Cline.\n\nCurrent Working Directory: /tmp/a\x00b\n"
    body = {**HELLO, "messages": [{"role": "system", "content": system}, *HELLO["messages"]]}
    response = http.post("/v1/chat/completions", json={**body, "max_tokens": 4})
    assert response.status_code == 200, response.text


def samples(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(base_url + "/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def api_logs(monkeypatch: pytest.MonkeyPatch) -> list[MutableMapping[str, Any]]:
    """What the API's modules log, at every level. Their loggers are replaced for the test, not
    captured with capture_logs: once configured (the CLI's tests do), structlog filters by the
    configured level and caches each logger on first use."""
    capture = LogCapture()
    logger = structlog.wrap_logger(
        None, processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(0)
    )
    for module in (deps, app):
        monkeypatch.setattr(module, "log", logger, raising=False)  # deps logs nothing before
    return capture.entries


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/memory/search"])
def test_a_client_gone_mid_body_is_client_gone_not_a_500(
    router: RouterThread, path: str, api_logs: list[MutableMapping[str, Any]]
) -> None:
    gone = (
        "memory_router_requests_total",
        (("model", ""), ("outcome", "client_gone"), ("task", "")),
    )
    with socket.create_connection(("127.0.0.1", router.port)) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n"
        )
        sock.sendall(head.encode() + PARTIAL)
        time.sleep(0.3)  # the router is now waiting for the rest of the body
    deadline = time.monotonic() + 5
    while samples(router.base_url).get(gone) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    found = samples(router.base_url)
    assert found.get(gone) == 1
    assert ("memory_router_errors_total", (("status", "500"),)) not in found
    events = [entry["event"] for entry in api_logs]
    assert "internal_error" not in events
    [entry] = [entry for entry in api_logs if entry["event"] == "client_gone"]
    assert (entry["log_level"], entry["path"], entry["read_bytes"]) == ("info", path, len(PARTIAL))
    assert not any("exc_info" in entry for entry in api_logs)
