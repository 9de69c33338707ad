"""``POST /v1/embeddings`` over real sockets: the router's own MiniLM, and Ollama's models."""

from __future__ import annotations

import base64
import math
from array import array
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import RouterThread
from tests.ollama_emulator import OllamaEmulator, embed_text


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_the_local_model_embeds_through_the_sdk(router: RouterThread) -> None:
    # The openai SDK asks for base64 unless told otherwise, and decodes it itself.
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key="any", max_retries=0)
    texts = [
        "Fix the login bug that rejects valid passwords",
        "Repair the sign-in defect where correct passwords are refused",
        "A recipe for banana bread with walnuts",
    ]
    with client:
        reply = client.embeddings.create(model="cline-memory-router", input=texts)
    assert reply.model == "all-MiniLM-L6-v2"
    assert [d.index for d in reply.data] == [0, 1, 2]
    login, sign_in, bread = (d.embedding for d in reply.data)
    assert len(login) == 384
    assert math.isclose(sum(x * x for x in login), 1.0, rel_tol=1e-3)
    assert cosine(login, sign_in) > cosine(login, bread) + 0.3  # a real sentence model
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 20


def test_float_and_base64_carry_the_same_vector(http: httpx.Client) -> None:
    body: dict[str, Any] = {"model": "all-MiniLM-L6-v2", "input": "memory bank"}
    floats = http.post("/v1/embeddings", json=body).json()["data"][0]["embedding"]
    packed = http.post("/v1/embeddings", json={**body, "encoding_format": "base64"}).json()
    decoded = array("f", base64.b64decode(packed["data"][0]["embedding"])).tolist()
    assert len(decoded) == len(floats) == 384
    assert decoded == pytest.approx(floats, abs=1e-6)


def test_other_models_come_from_ollama(emulator: OllamaEmulator, http: httpx.Client) -> None:
    reply = http.post("/v1/embeddings", json={"model": "qwen3:30b-a3b", "input": ["a", "b c"]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "qwen3:30b-a3b"
    assert [d["embedding"] for d in body["data"]] == [embed_text("a"), embed_text("b c")]
    [sent] = [r.json for r in emulator.requests if r.path == "/api/embed"]
    assert sent == {"model": "qwen3:30b-a3b", "input": ["a", "b c"]}
    assert body["usage"]["prompt_tokens"] >= 1  # Ollama's prompt_eval_count


def test_an_unpulled_embedding_model_says_how_to_pull_it(http: httpx.Client) -> None:
    reply = http.post("/v1/embeddings", json={"model": "nomic-embed-text", "input": "x"})
    assert reply.status_code == 404
    assert "ollama pull nomic-embed-text" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"input": [1, 2, 3]}, "input", "token ids is not supported"),
        ({"input": [[1, 2], [3]]}, "input", "token ids is not supported"),
        ({"input": []}, "input", "input is empty"),
        ({"input": ["ok", ""]}, "input", "empty string"),
        ({"input": "x", "dimensions": 128}, "dimensions", "384-dimensional"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "encoding_format"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    http: httpx.Client, extra: dict[str, Any], param: str, words: str
) -> None:
    reply = http.post("/v1/embeddings", json={"model": "cline-memory-router", **extra})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and words in error["message"]
