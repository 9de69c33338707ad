"""The openai SDK against the router running the embedded Gemma model: real tokens."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e.conftest import RouterProcess

pytestmark = pytest.mark.e2e


def test_ready_says_plainly_that_the_embedded_model_serves(
    embedded_router: RouterProcess,
) -> None:
    reply = httpx.get(embedded_router.base_url + "/ready")
    body = reply.json()
    # It serves (200), but not what is configured: degraded, with every configured model
    # listed as missing.
    assert reply.status_code == 200 and body["status"] == "degraded"
    assert body["missing_models"] == ["qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"]
    assert body["embedded_fallback"] is True
    assert any("EMBEDDED FALLBACK" in note and "demo quality" in note for note in body["notes"])
    assert "EMBEDDED FALLBACK" in embedded_router.log()
    models = httpx.get(embedded_router.base_url + "/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["cline-memory-router", "embedded/gemma-3-270m"]


def test_streamed_chat_through_the_sdk(embedded_router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=embedded_router.base_url + "/v1", api_key="any", max_retries=0)
    with client:
        raw = client.chat.completions.with_raw_response.create(
            model="cline-memory-router",
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Write one sentence about the sea."},
            ],
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert raw.headers["x-router-model"] == "embedded/gemma-3-270m"
        chunks = list(raw.parse())
    text = "".join(c.delta.content or "" for ch in chunks for c in ch.choices)
    content_chunks = [ch for ch in chunks if ch.choices and ch.choices[0].delta.content]
    assert len(content_chunks) >= 3, "a real model streams token by token"
    assert text.strip()
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert 0 < usage.completion_tokens <= 24
    assert usage.prompt_tokens > 5


def test_non_streamed_chat_and_completion(embedded_router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=embedded_router.base_url + "/v1", api_key="any", max_retries=0)
    with client:
        reply = client.chat.completions.create(
            model="embedded/gemma-3-270m",
            messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}],
            max_tokens=8,
        )
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
        completion = client.completions.create(
            model="cline-memory-router", prompt="def add(a, b):\n    return", max_tokens=6
        )
        assert completion.choices[0].text
        assert completion.usage is not None and completion.usage.completion_tokens <= 6


def test_ollama_models_are_404_with_a_reason_while_embedded(
    embedded_router: RouterProcess,
) -> None:
    response = httpx.post(
        embedded_router.base_url + "/v1/chat/completions",
        json={"model": "qwen2.5-coder:32b", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 404
    assert "did not answer at start-up" in response.json()["error"]["message"]


def test_an_image_is_a_400_because_the_demo_model_reads_none(
    embedded_router: RouterProcess,
) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content = [{"type": "text", "text": "What is on this screenshot?"}, image]
    said = {
        "cline-memory-router": "(embedded/gemma-3-270m lacks vision)",
        "embedded/gemma-3-270m": "'embedded/gemma-3-270m' does not take images",
    }
    for model, words in said.items():
        response = httpx.post(
            embedded_router.base_url + "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": content}]},
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "model_not_capable" and error["param"] == "messages"
        assert words in error["message"]


def test_fill_in_the_middle_is_a_400_because_the_demo_model_has_no_insert(
    embedded_router: RouterProcess,
) -> None:
    response = httpx.post(
        embedded_router.base_url + "/v1/completions",
        json={"model": "cline-memory-router", "prompt": "def add(a, b):\n", "suffix": "\n"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "model_not_capable" and error["param"] == "suffix"
    assert "(embedded/gemma-3-270m lacks insert)" in error["message"]


def test_embeddings_come_from_the_router_itself_while_ollama_is_away(
    embedded_router: RouterProcess,
) -> None:
    url = embedded_router.base_url + "/v1/embeddings"
    local = httpx.post(url, json={"model": "cline-memory-router", "input": "memory bank"})
    assert local.status_code == 200, local.text
    assert len(local.json()["data"][0]["embedding"]) == 384
    away = httpx.post(url, json={"model": "nomic-embed-text", "input": "memory bank"})
    assert away.status_code == 404
    assert "use 'cline-memory-router'" in away.json()["error"]["message"]
