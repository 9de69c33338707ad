"""A model's tool calls checked against the request's schema, through the router, streamed and
whole: unambiguous faults repaired, the rest passed on as sent and counted.

Two sources of tool calls: an OpenAI-compatible upstream (llama.cpp server, vLLM: arguments
are text, and local models get that text wrong) scripted here over a real socket, and the
Ollama emulator (arguments are JSON objects, but their values may not fit the schema).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from aiohttp import web

from memory_router.decision_log import read_records
from tests.conftest import REPO, RouterFactory, RouterThread
from tests.ollama_emulator import OllamaEmulator, Script

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "execute_command",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "requires_approval": {"type": "boolean"},
                },
                "required": ["command", "requires_approval"],
            },
        },
    },
]
ASK = [{"role": "user", "content": "read src/app.py"}]


class ScriptedUpstream:
    """An OpenAI-compatible server answering each chat with one scripted tool call, its
    arguments exactly as given (streamed in two pieces, or whole)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (tool name, raw arguments)
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedUpstream:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name, raw = self.calls.pop(0)
        base = {"id": "chatcmpl-1", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": name, "arguments": raw}}],
            }  # fmt: skip
            return web.json_response(
                {**base, "object": "chat.completion",
                 "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                 "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
            )  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        half = len(raw) // 2
        pieces = [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": name, "arguments": raw[:half]}},
            {"index": 0, "function": {"arguments": raw[half:]}},
        ]  # fmt: skip
        chunks = [{"role": "assistant", "content": None, "tool_calls": [p]} for p in pieces]
        for delta in chunks:
            chunk = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        last = {**base, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}  # fmt: skip
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        return response


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture
def router(
    emulator: OllamaEmulator, upstream: ScriptedUpstream, make_router: RouterFactory
) -> RouterThread:
    models: dict[str, Any] = yaml.safe_load((REPO / "config" / "models.yaml").read_text("utf-8"))
    for spec in models["models"]:
        if spec["name"] == "qwen2.5-coder:32b":
            spec["backend"] = "llamacpp"
            spec["capabilities"] = ["completion", "tools"]
    return make_router(
        emulator.base_url,
        models=models,
        openai_upstreams=[{"name": "llamacpp", "base_url": upstream.base_url}],
    )


def tool_call(router: RouterThread, model: str, stream: bool) -> tuple[str, str]:
    """The (name, arguments) of the one tool call the client receives."""
    with openai.OpenAI(base_url=router.base_url + "/v1", api_key="x", max_retries=0) as client:
        if not stream:
            reply = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS)  # type: ignore[arg-type]
            (call,) = reply.choices[0].message.tool_calls or []
            assert call.type == "function"
            return call.function.name, call.function.arguments
        chunks = list(
            client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, stream=True)  # type: ignore[arg-type]
        )
    deltas = [c for ch in chunks for choice in ch.choices for c in choice.delta.tool_calls or []]
    assert {d.index for d in deltas} == {0}
    name = next(d.function.name for d in deltas if d.function and d.function.name)
    return name or "", "".join(d.function.arguments or "" for d in deltas if d.function)


def counted(router: RouterThread, line: str) -> bool:
    """Whether /metrics shows ``line`` (a request is counted just after its answer)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if line in httpx.get(router.base_url + "/metrics").text:
            return True
        time.sleep(0.05)
    return False


def last_record(router: RouterThread, tmp_path: Path) -> dict[str, Any]:
    router.stop()  # flushes the decision log
    return read_records(tmp_path / "decisions0.jsonl")[-1]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ('"{\\"path\\": \\"src/app.py\\"}"', "double_encoded"),
        ('{"path": "src/app.py",}', "trailing_comma"),
        ('```json\n{"path": "src/app.py"}\n```', "fenced"),
    ],
)
def test_an_unambiguous_fault_is_repaired(
    router: RouterThread, upstream: ScriptedUpstream, tmp_path: Path, raw: str, kind: str,
    stream: bool,
) -> None:  # fmt: skip
    upstream.calls.append(("read_file", raw))
    name, arguments = tool_call(router, "qwen2.5-coder:32b", stream)
    assert name == "read_file"
    assert json.loads(arguments) == {"path": "src/app.py"}
    assert counted(router, f'memory_router_tool_calls_total{{result="repaired_{kind}"}} 1.0')
    record = last_record(router, tmp_path)
    assert record["tool_calls"]["repaired"] == {kind: 1}
    assert record["tool_calls"]["invalid"] == 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_that_does_not_fit_its_schema_is_passed_on_as_sent_and_counted(
    router: RouterThread, upstream: ScriptedUpstream, tmp_path: Path, stream: bool
) -> None:
    raw = '{"command": "ls -la", "requires_approval": "no"}'
    upstream.calls.append(("execute_command", raw))
    name, arguments = tool_call(router, "qwen2.5-coder:32b", stream)
    assert (name, arguments) == ("execute_command", raw)  # not dropped, not invented
    assert counted(router, 'memory_router_tool_calls_total{result="invalid"} 1.0')
    report = last_record(router, tmp_path)["tool_calls"]
    assert report["invalid"] == 1
    assert "requires_approval" in report["problems"][0]
    assert "boolean" in report["problems"][0]


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_tool_calls_are_checked_too(
    emulator: OllamaEmulator, router: RouterThread, tmp_path: Path, stream: bool
) -> None:
    emulator.enqueue(
        Script(tool_calls=[{"name": "read_file", "arguments": {"file": "src/app.py"}}])
    )
    name, arguments = tool_call(router, "qwen3:30b-a3b", stream)
    assert name == "read_file" and json.loads(arguments) == {"file": "src/app.py"}
    report = last_record(router, tmp_path)["tool_calls"]
    assert report["checked"] == 1 and report["invalid"] == 1
    assert "'path' is a required property" in report["problems"][0]
