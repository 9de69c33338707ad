"""The router in front of the Ollama emulator, over real sockets, driven by the openai SDK."""

from __future__ import annotations

import gc
import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import RouterFactory, RouterThread
from tests.ollama_emulator import OllamaEmulator, Script

READ_FILE_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file in the workspace.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
}


def sdk(router: RouterThread, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=router.base_url + "/v1", api_key="any-key", max_retries=0, **kwargs
    )


def chat_requests(emulator: OllamaEmulator) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.path == "/api/chat"]


def test_streamed_tool_call_reaches_the_sdk_as_openai_deltas(
    emulator: OllamaEmulator, router: RouterThread
) -> None:
    emulator.enqueue(
        Script(
            content="Let me look.",
            tool_calls=[{"name": "read_file", "arguments": {"path": "src/app.py"}}],
        )
    )
    with sdk(router) as client:
        stream = client.chat.completions.create(
            model="cline-memory-router",
            messages=[{"role": "user", "content": "Implement the fix in src/app.py"}],
            tools=[READ_FILE_TOOL],  # type: ignore[list-item]
            tool_choice="auto",
            parallel_tool_calls=False,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)

    calls = [c for ch in chunks for choice in ch.choices for c in choice.delta.tool_calls or []]
    assert len(calls) == 1
    assert calls[0].id and calls[0].id.startswith("call_")
    assert calls[0].type == "function"
    assert calls[0].function is not None
    assert calls[0].function.name == "read_file"
    assert isinstance(calls[0].function.arguments, str)
    assert json.loads(calls[0].function.arguments) == {"path": "src/app.py"}
    text = "".join(choice.delta.content or "" for ch in chunks for choice in ch.choices)
    assert text == "Let me look."
    finishes = [choice.finish_reason for ch in chunks for choice in ch.choices]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].usage.prompt_tokens > 0

    # The exact request the router sent to Ollama.
    (sent,) = chat_requests(emulator)
    assert sent["model"] == "qwen2.5-coder:32b"
    assert sent["stream"] is True
    assert sent["tools"] == [READ_FILE_TOOL]
    assert sent["options"] == {"num_ctx": 32768}
    assert sent["keep_alive"] == "30m"
    assert sent["messages"] == [{"role": "user", "content": "Implement the fix in src/app.py"}]


def test_tool_result_round_trip_is_translated_for_ollama(
    emulator: OllamaEmulator, router: RouterThread
) -> None:
    with sdk(router) as client:
        reply = client.chat.completions.create(
            model="qwen2.5-coder:32b",
            messages=[
                {"role": "system", "content": "You are a coder."},
                {"role": "user", "content": [{"type": "text", "text": "Read a.py"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "print('hi')"},
            ],
            max_tokens=64,
            temperature=0,
            top_p=0.9,
            seed=7,
            stop=["END"],
        )
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    (sent,) = chat_requests(emulator)
    assert sent["stream"] is False
    assert sent["messages"][1] == {"role": "user", "content": "Read a.py"}
    assert sent["messages"][2]["tool_calls"] == [
        {"function": {"name": "read_file", "arguments": {"path": "a.py"}}}
    ]
    assert sent["messages"][3] == {
        "role": "tool",
        "content": "print('hi')",
        "tool_call_id": "call_1",
        "tool_name": "read_file",
    }
    assert sent["options"] == {
        "num_ctx": 32768,
        "num_predict": 64,
        "temperature": 0.0,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
    }


def test_thinking_becomes_reasoning_content(emulator: OllamaEmulator, router: RouterThread) -> None:
    emulator.enqueue(Script(content="42", thinking="Six times seven."))
    with httpx.stream(
        "POST",
        router.base_url + "/v1/chat/completions",
        json={
            "model": "qwen3:30b-a3b",
            "messages": [{"role": "user", "content": "6*7?"}],
            "reasoning_effort": "high",
            "stream": True,
        },
    ) as response:
        assert response.headers["x-router-model"] == "qwen3:30b-a3b"
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"][0]["delta"] for e in events[:-1]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Six times seven."
    assert "".join(d.get("content", "") for d in deltas) == "42"
    assert chat_requests(emulator)[0]["think"] is True


def test_xml_style_tools_pass_through_untouched(
    emulator: OllamaEmulator, router: RouterThread
) -> None:
    answer = "<read_file>\n<path>src/main.py</path>\n</read_file>"
    emulator.enqueue(Script(content=answer, chunk_chars=7))
    with sdk(router) as client:
        reply = client.chat.completions.create(
            model="cline-memory-router",
            messages=[
                {"role": "system", "content": "Use tools like <read_file><path>..</path>."},
                {"role": "user", "content": "What does main do?"},
            ],
        )
    assert reply.choices[0].message.content == answer
    assert reply.choices[0].message.tool_calls is None
    assert "tools" not in chat_requests(emulator)[0]


def test_what_start_up_built_is_kept_out_of_the_collectors_sight(router: RouterThread) -> None:
    # Frozen, start-up's objects are not walked by every full collection under load.
    assert gc.get_freeze_count() > 10_000
    assert httpx.get(f"{router.base_url}/health").status_code == 200


def test_every_response_names_the_model_and_the_reason(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={"model": "cline-memory-router", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert response.headers["x-router-model"] == "qwen3:30b-a3b"
    assert "chat" in response.headers["x-router-reason"]
    assert response.json()["model"] == "qwen3:30b-a3b"


def test_models_lists_the_virtual_and_every_concrete_model(http: httpx.Client) -> None:
    data = http.get("/v1/models").json()["data"]
    ids = [item["id"] for item in data]
    assert ids == ["cline-memory-router", "qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"]
    contexts = {item["id"]: item["context_length"] for item in data}
    assert contexts["qwen2.5-coder:32b"] == 32768
    assert contexts["llama4:16x17b"] == 131072


def test_health_and_ready(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["missing_models"] == []
    assert body["backends"][0]["answers"] is True and body["embedded_fallback"] is False


def test_completions_use_generate(emulator: OllamaEmulator, http: httpx.Client) -> None:
    emulator.enqueue(Script(content="return a + b"))
    reply = http.post(
        "/v1/completions",
        json={"model": "cline-memory-router", "prompt": "def add(a, b):\n    ", "max_tokens": 8},
    ).json()
    assert reply["object"] == "text_completion"
    assert reply["choices"][0]["text"] == "return a + b"
    generate = [r.json for r in emulator.requests if r.path == "/api/generate"]
    assert generate[0]["model"] == "qwen2.5-coder:32b"
    assert generate[0]["raw"] is True and generate[0]["options"]["num_predict"] == 8


def test_client_disconnect_cancels_the_upstream_at_once(
    emulator: OllamaEmulator, router: RouterThread
) -> None:
    emulator.enqueue(Script(content="word " * 50, stall_after=3))
    with httpx.stream(
        "POST",
        router.base_url + "/v1/chat/completions",
        json={
            "model": "cline-memory-router",
            "messages": [{"role": "user", "content": "tell me a story"}],
            "stream": True,
        },
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        seen = [line for line in (next(lines) for _ in range(6)) if line.startswith("data:")]
        assert len(seen) >= 3
        # The upstream is now silent (stalled); leave without reading further.
    started = time.monotonic()
    emulator.wait_until(lambda: len(emulator.cancelled) == 1, timeout=2.0)
    assert time.monotonic() - started < 2.0
    assert emulator.cancelled[0].model == "qwen3:30b-a3b"
    assert emulator.in_flight("qwen3:30b-a3b") == 0


@pytest.mark.parametrize("stream", [False, True])
def test_unpulled_model_is_404_with_advice(
    emulator: OllamaEmulator, make_router: RouterFactory, stream: bool
) -> None:
    fit = {"memory": 1, "implement": 1, "analyze": 1, "chat": 1, "meta": 1}
    models = {
        "models": [
            {"name": "mistral:7b", "context_window": 32768, "num_ctx": 8192, "task_fit": fit}
        ]
    }
    router = make_router(emulator.base_url, models=models)
    with sdk(router) as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="cline-memory-router",
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert "ollama pull mistral:7b" in error["message"]
    assert error["code"] == "model_not_found"


def test_client_leaving_a_non_streamed_request_cancels_the_upstream(
    emulator: OllamaEmulator, router: RouterThread
) -> None:
    emulator.enqueue(Script(content="slow answer " * 20, token_delay_s=0.5))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            router.base_url + "/v1/chat/completions",
            json={"model": "cline-memory-router", "messages": [{"role": "user", "content": "hi"}]},
            timeout=httpx.Timeout(5, read=0.5),
        )
    emulator.wait_until(lambda: len(emulator.cancelled) == 1, timeout=3.0)
    assert emulator.in_flight("qwen3:30b-a3b") == 0
