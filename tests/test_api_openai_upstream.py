"""The OpenAI-compatible backend: a router whose coder model lives on an OpenAI-style upstream.

The upstream here is a second router in front of the Ollama emulator, so it speaks real
OpenAI SSE over a real socket: the first router must decode it (tool-call pieces, reasoning,
usage, errors) and re-encode it for its own client.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import REPO, RouterFactory, RouterThread
from tests.ollama_emulator import OllamaEmulator, Script


@pytest.fixture
def front(emulator: OllamaEmulator, make_router: RouterFactory) -> RouterThread:
    upstream = make_router(emulator.base_url)
    import yaml

    models = yaml.safe_load((REPO / "config" / "models.yaml").read_text())
    for model in models["models"]:
        if model["name"] == "qwen2.5-coder:32b":
            model["backend"] = "lab"
    return make_router(
        emulator.base_url,
        models=models,
        openai_upstreams=[{"name": "lab", "base_url": upstream.base_url + "/v1", "api_key": "k"}],
    )


def test_streamed_tool_call_through_an_openai_upstream(
    emulator: OllamaEmulator, front: RouterThread
) -> None:
    emulator.enqueue(
        Script(content="Editing.", tool_calls=[{"name": "edit", "arguments": {"line": 3}}])
    )
    with openai.OpenAI(base_url=front.base_url + "/v1", api_key="x", max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model="qwen2.5-coder:32b",
                messages=[{"role": "user", "content": "fix line 3"}],
                tools=[{"type": "function", "function": {"name": "edit", "parameters": {}}}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    calls = [c for ch in chunks for choice in ch.choices for c in choice.delta.tool_calls or []]
    assert calls[0].id and calls[0].function and calls[0].function.name == "edit"
    assert json.loads("".join(c.function.arguments or "" for c in calls if c.function)) == {
        "line": 3
    }
    assert [c.finish_reason for ch in chunks for c in ch.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    # The upstream got an OpenAI request, with usage asked for; Ollama saw the coder model.
    (sent,) = [r.json for r in emulator.requests if r.path == "/api/chat"]
    assert sent["model"] == "qwen2.5-coder:32b"


def test_non_streamed_through_an_openai_upstream(front: RouterThread) -> None:
    reply = httpx.post(
        front.base_url + "/v1/chat/completions",
        json={"model": "qwen2.5-coder:32b", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert reply.status_code == 200
    body: dict[str, Any] = reply.json()
    assert body["choices"][0]["message"]["content"].startswith("Hello from qwen2.5-coder:32b")
    assert body["usage"]["completion_tokens"] > 0


def test_upstream_errors_keep_their_meaning(emulator: OllamaEmulator, front: RouterThread) -> None:
    for _ in range(3):  # busy on the first try and on each retry (routing.failover.retries)
        emulator.enqueue(Script(status=503, error="server busy, please try again."))
    busy = httpx.post(
        front.base_url + "/v1/chat/completions",
        json={"model": "qwen2.5-coder:32b", "messages": [{"role": "user", "content": "hi"}]},
    )
    # Ollama's 503 became the upstream router's 429, which stays a 429 here.
    assert busy.status_code == 429 and "retry-after" in busy.headers
    emulator.enqueue(Script(content="a b c d", error_after=2))
    with httpx.stream(
        "POST",
        front.base_url + "/v1/chat/completions",
        json={
            "model": "qwen2.5-coder:32b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
    ) as response:
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert "mid-answer" in json.loads(data[-2])["error"]["message"]
