"""Real Cline request bodies (tests/fixtures/cline) through the router to the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RouterThread
from tests.ollama_emulator import OllamaEmulator, Script

FIXTURES = Path(__file__).parent / "fixtures" / "cline"


def load(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return body


def stream(router: RouterThread, body: dict[str, Any]) -> tuple[httpx.Headers, list[Any]]:
    with httpx.stream(
        "POST",
        router.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": "Bearer any-key"},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        headers = response.headers
    assert data[-1] == "[DONE]"
    return headers, [json.loads(item) for item in data[:-1]]


@pytest.mark.parametrize(
    "name", ["native_turn1", "native_turn2", "native_yolo_turn2", "xml_turn1", "xml_turn2"]
)
def test_cline_requests_stream_through(
    emulator: OllamaEmulator, router: RouterThread, name: str
) -> None:
    body = load(name)
    headers, chunks = stream(router, body)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert headers["x-router-model"]

    (sent,) = [r.json for r in emulator.requests if r.path == "/api/chat"]
    assert len(sent["messages"]) == len(body["messages"])
    if body.get("tools"):
        assert [t["function"]["name"] for t in sent["tools"]] == [
            t["function"]["name"] for t in body["tools"]
        ]
    else:
        assert "tools" not in sent
    # Array-of-parts user content arrives as one string.
    assert all(isinstance(m["content"], str) for m in sent["messages"])


def test_tool_results_keep_their_call_and_name(
    emulator: OllamaEmulator, router: RouterThread
) -> None:
    stream(router, load("native_turn2"))
    (sent,) = [r.json for r in emulator.requests if r.path == "/api/chat"]
    call = sent["messages"][2]["tool_calls"][0]["function"]
    assert call["name"] == "read_files"
    assert isinstance(call["arguments"], dict) and call["arguments"]["files"][0]["path"].endswith(
        "projectbrief.md"
    )
    tool = sent["messages"][3]
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == "call_mb_read_1"
    assert tool["tool_name"] == "read_files"


def test_memory_bank_turn_is_routed_to_the_fast_model(
    emulator: OllamaEmulator, router: RouterThread
) -> None:
    emulator.enqueue(
        Script(
            tool_calls=[
                {"name": "read_files", "arguments": {"files": [{"path": "memory-bank/a.md"}]}}
            ]
        )
    )
    headers, chunks = stream(router, load("native_turn1"))
    assert headers["x-router-model"] == "qwen3:30b-a3b"
    assert "memory bank" in headers["x-router-reason"]
    calls = [
        call
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", [])
    ]
    assert calls[0]["function"]["name"] == "read_files"
    assert json.loads(calls[0]["function"]["arguments"]) == {
        "files": [{"path": "memory-bank/a.md"}]
    }
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
