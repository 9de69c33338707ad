"""Every error status the router promises, in the OpenAI envelope, over real sockets."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import RouterFactory, RouterThread, free_socket
from tests.ollama_emulator import OllamaEmulator, Script

HELLO = {"model": "cline-memory-router", "messages": [{"role": "user", "content": "hi"}]}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


def test_malformed_json_is_400(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", content=b'{"model": "x", ', headers={"content-type": "json"}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert "not valid JSON" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "cline-memory-router", "messages": []}, "messages"),
        (
            {"model": "cline-memory-router", "messages": [{"role": "wizard", "content": "x"}]},
            "messages.0.role",
        ),
        ({**HELLO, "temperature": 5}, "temperature"),
        ({**HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": HELLO["messages"]}, "model"),
        ({**HELLO, "n": 3}, "n"),
        (
            {
                **HELLO,
                "stream": True,
                "tools": [{"type": "function", "function": {"name": "read_file"}}],
                "tool_choice": {"type": "function", "function": {"name": "write_file"}},
            },
            "tool_choice",
        ),
    ],
)
def test_invalid_fields_are_400_naming_the_param(
    http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert error_of(response)["param"] == param


def test_bad_tool_call_arguments_name_their_place(http: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    response = http.post(
        "/v1/chat/completions", json={"model": "qwen2.5-coder:32b", "messages": messages}
    )
    assert response.status_code == 400
    assert error_of(response)["param"] == "messages.1.tool_calls.0.function.arguments"


def test_unknown_model_is_404_listing_what_is_served(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={**HELLO, "model": "gpt-5"})
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "cline-memory-router" in error["message"]


def test_unknown_endpoint_is_404_envelope(http: httpx.Client) -> None:
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_body_over_the_limit_is_413(emulator: OllamaEmulator, make_router: RouterFactory) -> None:
    router = make_router(emulator.base_url, server={"max_body_bytes": 2048})
    big = {**HELLO, "messages": [{"role": "user", "content": "x" * 4096}]}
    with httpx.Client(base_url=router.base_url) as client:
        response = client.post("/v1/chat/completions", json=big)
        assert response.status_code == 413
        assert error_of(response)["code"] == "payload_too_large"

        # Chunked upload with no Content-Length: counted as it arrives.
        def chunks() -> Any:
            payload = json.dumps(big).encode()
            for i in range(0, len(payload), 500):
                yield payload[i : i + 500]

        response = client.post("/v1/chat/completions", content=chunks())
        assert response.status_code == 413
    assert not [r for r in emulator.requests if r.path == "/api/chat"]


def test_api_keys_are_enforced_when_configured(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url, server={"api_keys": ["sekrit-1", "sekrit-2"]})
    url = router.base_url + "/v1/chat/completions"
    missing = httpx.post(url, json=HELLO)
    assert missing.status_code == 401
    assert error_of(missing)["type"] == "authentication_error"
    wrong = httpx.post(url, json=HELLO, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = httpx.post(url, json=HELLO, headers={"Authorization": "Bearer sekrit-2"})
    assert right.status_code == 200
    # Health, readiness and metrics stay open for probes and Prometheus; the rest is keyed.
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(router.base_url + path).status_code == 200, path
    for path in ("/v1/models", "/v1/memory/status"):
        assert httpx.get(router.base_url + path).status_code == 401, path
    embed = httpx.post(router.base_url + "/v1/embeddings", json={"model": "x", "input": "y"})
    assert embed.status_code == 401


def test_any_key_is_accepted_when_none_configured(router: RouterThread) -> None:
    with openai.OpenAI(base_url=router.base_url + "/v1", api_key="whatever") as client:
        assert client.models.list().data[0].id == "cline-memory-router"


@pytest.mark.parametrize("stream", [False, True])
def test_backend_down_is_503_with_retry_after(make_router: RouterFactory, stream: bool) -> None:
    closed = free_socket()  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    try:
        router = make_router(f"http://127.0.0.1:{port}")
        response = httpx.post(
            router.base_url + "/v1/chat/completions", json={**HELLO, "stream": stream}
        )
    finally:
        closed.close()
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    error = error_of(response)
    assert "ollama serve" in error["message"]
    ready = httpx.get(router.base_url + "/ready")
    assert ready.status_code == 503
    assert "qwen2.5-coder:32b" in ready.json()["missing_models"]


@pytest.mark.parametrize("stream", [False, True])
def test_backend_timeout_is_504(
    emulator: OllamaEmulator, make_router: RouterFactory, stream: bool
) -> None:
    router = make_router(emulator.base_url, ollama={"read_timeout_s": 0.5})
    emulator.enqueue(Script(content="never finishes", stall_after=0))
    response = httpx.post(
        router.base_url + "/v1/chat/completions", json={**HELLO, "stream": stream}, timeout=30
    )
    assert response.status_code == 504
    assert error_of(response)["type"] == "timeout"


def test_ollama_busy_becomes_429_that_cline_retries(
    emulator: OllamaEmulator, http: httpx.Client
) -> None:
    # Busy on the first try and on each of the router's retries (routing.failover.retries).
    for _ in range(3):
        emulator.enqueue(
            Script(
                status=503,
                error="server busy, please try again.  maximum pending requests exceeded",
            )
        )
    response = http.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert "busy" in error_of(response)["message"]


def test_capability_error_is_400(emulator: OllamaEmulator, http: httpx.Client) -> None:
    emulator.enqueue(Script(status=400, error='"qwen2.5-coder:32b" does not support tools'))
    response = http.post("/v1/chat/completions", json={**HELLO, "model": "qwen2.5-coder:32b"})
    assert response.status_code == 400
    assert "does not support tools" in error_of(response)["message"]


def test_think_is_not_sent_to_a_model_that_cannot_think(
    emulator: OllamaEmulator, http: httpx.Client
) -> None:
    # The coder has no `think` in models.yaml: Ollama would answer 400, so it is left out.
    response = http.post(
        "/v1/chat/completions",
        json={**HELLO, "model": "qwen2.5-coder:32b", "think": True, "reasoning_effort": "high"},
    )
    assert response.status_code == 200
    (sent,) = [r.json for r in emulator.requests if r.path == "/api/chat"]
    assert "think" not in sent


def test_failure_after_headers_is_an_error_event_then_the_end(
    emulator: OllamaEmulator, router: RouterThread
) -> None:
    emulator.enqueue(Script(content="one two three four", error_after=2))
    with openai.OpenAI(base_url=router.base_url + "/v1", api_key="k", max_retries=0) as client:
        stream = client.chat.completions.create(**HELLO, stream=True)  # type: ignore[call-overload]
        received: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received).strip() == "one two"
    assert "unexpected EOF" in caught.value.message
    # And on the wire: the error event, then [DONE], then the end.
    emulator.enqueue(Script(content="one two three four", error_after=2))
    with httpx.stream(
        "POST", router.base_url + "/v1/chat/completions", json={**HELLO, "stream": True}
    ) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])["error"]
    assert error["type"] == "upstream_error"
    assert "mid-answer" in error["message"]


def test_every_answer_carries_the_request_id(http: httpx.Client) -> None:
    kept = http.post("/v1/chat/completions", json=HELLO, headers={"x-request-id": "task-7"})
    assert kept.status_code == 200
    assert kept.headers["x-request-id"] == "task-7"
    made = http.post("/v1/chat/completions", json={**HELLO, "model": "no-such-model"})
    assert made.status_code == 404
    assert len(made.headers["x-request-id"]) == 16
    assert made.headers["x-request-id"] != http.get("/v1/models").headers["x-request-id"]
    raw = http.post("/v1/completions", json={"model": "cline-memory-router", "prompt": "x"})
    assert raw.status_code == 200 and len(raw.headers["x-request-id"]) == 16


def test_an_unexpected_failure_is_a_500_envelope(
    router: RouterThread, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = router.server.config.app.app.state.service

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug in the routing code")

    monkeypatch.setattr(service, "decide_chat", broken)
    response = http.post("/v1/chat/completions", json=HELLO, headers={"x-request-id": "r1"})
    assert response.status_code == 500
    error = error_of(response)
    assert error["type"] == "server_error"
    assert "internal error in the router" in error["message"]
    assert "a bug" not in error["message"]  # the traceback goes to the log, not the client
    assert response.headers["x-request-id"] == "r1"
    assert http.get("/v1/models").status_code == 200  # the server lives on


def test_cors_origins_answer_browsers_on_the_completion_routes(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    origin = "http://localhost:5173"
    router = make_router(emulator.base_url, server={"cors_origins": [origin]})
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        preflight = client.options(
            "/v1/chat/completions",
            headers={"origin": origin, "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        answer = client.post("/v1/chat/completions", json=HELLO, headers={"origin": origin})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == origin
        assert len(answer.headers["x-request-id"]) == 16
