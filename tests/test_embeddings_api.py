"""``POST /v1/embeddings`` over real sockets: the router's own MiniLM, and Ollama's models."""

from __future__ import annotations

import base64
import math
from array import array
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import REPO, RouterFactory, RouterThread
from tests.ollama_emulator import OllamaEmulator, embed_text, fast_profile


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


def test_each_ollama_host_is_asked_for_an_embedding_model_it_may_hold(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    config = fast_profile()
    nomic = replace(config.models["qwen3:30b-a3b"], weights_bytes=27_000, digest="")
    with OllamaEmulator(replace(config, models={"nomic-embed-text": nomic})) as second:
        host = {"name": "gpu2", "base_url": second.base_url, "vram_bytes": 1 << 34, "ram_bytes": 0}
        router = make_router(emulator.base_url, ollama_hosts=[host])
        with httpx.Client(base_url=router.base_url, timeout=30) as http:
            found = http.post("/v1/embeddings", json={"model": "nomic-embed-text", "input": "a"})
            assert found.status_code == 200, found.text
            assert found.json()["data"][0]["embedding"] == embed_text("a")
            nowhere = http.post("/v1/embeddings", json={"model": "mxbai-embed", "input": "a"})
        embeds = [r.json["model"] for r in second.requests if r.path == "/api/embed"]
        assert embeds == ["nomic-embed-text", "mxbai-embed"]
        main = [r.json["model"] for r in emulator.requests if r.path == "/api/embed"]
        assert main == ["nomic-embed-text", "mxbai-embed"], "the main Ollama is asked first"
    assert nowhere.status_code == 404
    message = nowhere.json()["error"]["message"]
    assert "pulled on none of the Ollama servers ollama, gpu2" in message
    assert "ollama pull mxbai-embed" in message


def test_a_model_of_models_yaml_is_embedded_on_its_own_host(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    with OllamaEmulator(fast_profile()) as second:
        host = {"name": "gpu2", "base_url": second.base_url, "vram_bytes": 1 << 34, "ram_bytes": 0}
        models = yaml.safe_load((REPO / "config" / "models.yaml").read_text())
        models["models"][1]["backend"] = "gpu2"  # the coder runs on the second machine
        router = make_router(emulator.base_url, models, ollama_hosts=[host])
        body = {"model": "qwen2.5-coder:32b", "input": "def f(): pass"}
        reply = httpx.post(router.base_url + "/v1/embeddings", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        assert [r.path for r in second.requests if r.path == "/api/embed"] == ["/api/embed"]
    assert [r for r in emulator.requests if r.path == "/api/embed"] == []
