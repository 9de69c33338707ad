"""The Ollama emulator over real sockets: wire shapes, scheduler behaviour, failure scripts."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.ollama_emulator import (
    EmulatorConfig,
    ModelSpec,
    OllamaEmulator,
    Script,
    fast_profile,
    kv_bytes_per_token,
    parse_keep_alive,
    reference_profile,
)

QWEN3, CODER, LLAMA4 = "qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"
USER = [{"role": "user", "content": "Explain this repository to me, briefly."}]


def quick_reference() -> EmulatorConfig:
    """The reference machine with loads and tokens sped up for tests."""
    cfg = reference_profile()
    cfg.load_seconds_per_gb = 0.002
    cfg.token_delay_s = 0.001
    return cfg


@pytest.fixture
def emu() -> Iterator[OllamaEmulator]:
    with OllamaEmulator(quick_reference()) as server:
        yield server


@pytest.fixture
def client(emu: OllamaEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=5) as c:
        yield c


def chat(client: httpx.Client, model: str = QWEN3, **body: Any) -> list[dict[str, Any]]:
    """POST /api/chat (streaming unless told) and parse every NDJSON line."""
    response = client.post("/api/chat", json={"model": model, "messages": USER, **body})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def ps(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client.get("/api/ps").json()["models"]}


def test_streamed_chat_is_ndjson_with_final_stats(client: httpx.Client) -> None:
    response = client.post("/api/chat", json={"model": QWEN3, "messages": USER})
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    *chunks, final = lines
    assert len(chunks) == 9
    for chunk in chunks:
        assert set(chunk) == {"model", "created_at", "message", "done"}
        assert chunk["done"] is False and chunk["model"] == QWEN3
        assert chunk["message"]["role"] == "assistant"
        datetime.fromisoformat(chunk["created_at"])
    text = "".join(c["message"]["content"] for c in chunks)
    assert text == f"Hello from {QWEN3}. How can I help you today?"
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["prompt_eval_count"] == len(USER[0]["content"]) // 4
    assert final["eval_count"] == 9
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int) and final[key] > 0
    assert final["load_duration"] >= 18.5 * 0.002 * 1e9  # a cold load of ~18.6 GB
    assert final["total_duration"] >= final["load_duration"] + final["eval_duration"]


def test_non_streamed_chat_returns_one_object(emu: OllamaEmulator, client: httpx.Client) -> None:
    emu.enqueue(Script(content="All in one go.", prompt_eval_count=42))
    response = client.post("/api/chat", json={"model": QWEN3, "messages": USER, "stream": False})
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["message"] == {"role": "assistant", "content": "All in one go."}
    assert body["done"] is True and body["done_reason"] == "stop"
    assert body["prompt_eval_count"] == 42 and body["eval_count"] == 4


@pytest.mark.parametrize("with_ids", [False, True])
def test_tool_calls_arrive_whole_in_one_chunk(
    emu: OllamaEmulator, client: httpx.Client, with_ids: bool
) -> None:
    calls = [
        {"name": "read_file", "arguments": {"path": "a.py"}},
        {"function": {"name": "list_files", "arguments": '{"dir": "src", "recursive": true}'}},
    ]
    emu.enqueue(Script(content="Reading.", tool_calls=calls, tool_call_ids=with_ids))
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]
    lines = chat(client, tools=tools)
    with_calls = [line for line in lines if "tool_calls" in line["message"]]
    assert len(with_calls) == 1 and with_calls[0]["done"] is False
    sent = with_calls[0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in sent] == ["read_file", "list_files"]
    assert sent[1]["function"]["arguments"] == {"dir": "src", "recursive": True}
    if with_ids:
        assert all(c["id"].startswith("call_") for c in sent)
        assert [c["function"]["index"] for c in sent] == [0, 1]
    else:
        assert sent[0] == {"function": {"name": "read_file", "arguments": {"path": "a.py"}}}
    assert lines[-1]["done_reason"] == "stop"


def test_thinking_only_when_asked(emu: OllamaEmulator, client: httpx.Client) -> None:
    script = Script(content="Answer.", thinking="Let me think about it.")
    emu.enqueue(script, script)
    thought = chat(client, think=True)
    thinking = [c["message"]["thinking"] for c in thought if "thinking" in c["message"]]
    assert "".join(thinking) == "Let me think about it."
    assert thought[0]["message"] == {"role": "assistant", "content": "", "thinking": "Let "}
    assert all("thinking" not in line["message"] for line in chat(client))
    emu.enqueue(script)
    body = client.post(
        "/api/chat", json={"model": QWEN3, "messages": USER, "think": "high", "stream": False}
    ).json()
    assert body["message"]["thinking"] == "Let me think about it."
    refused = client.post("/api/chat", json={"model": CODER, "messages": USER, "think": True})
    assert refused.status_code == 400
    assert refused.json() == {"error": f'"{CODER}" does not support thinking'}


def test_unknown_model_is_404(client: httpx.Client) -> None:
    for path in ("/api/chat", "/api/embed"):
        response = client.post(path, json={"model": "mistral:7b", "messages": USER, "input": "x"})
        assert response.status_code == 404
        assert response.json() == {"error": 'model "mistral:7b" not found, try pulling it first'}
    assert client.post("/api/show", json={"model": "mistral:7b"}).status_code == 404
    assert client.get("/api/nothing").json() == {"error": "404 page not found"}


def test_tools_to_a_model_without_tools_is_400() -> None:
    cfg = fast_profile()
    cfg.models["gemma3:270m"] = ModelSpec(
        weights_bytes=291_000_000, context_length=32768, architecture="gemma3", family="gemma3",
        parameter_size="268M", block_count=18, head_count=4, head_count_kv=1,
        embedding_length=640, head_dim=256, capabilities=["completion"],
    )  # fmt: skip
    with OllamaEmulator(cfg) as emu, httpx.Client(base_url=emu.base_url) as client:
        tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
        response = client.post(
            "/api/chat", json={"model": "gemma3:270m", "messages": USER, "tools": tools}
        )
        assert response.status_code == 400
        assert response.json() == {"error": '"gemma3:270m" does not support tools'}
        assert emu.loads == []


def test_images_need_a_vision_model(client: httpx.Client) -> None:
    # Ollama hands images to the runner whatever the model; a text-only one fails there.
    seen = [{"role": "user", "content": "What is on it?", "images": ["iVBORw0KGgo="]}]
    whole = client.post("/api/chat", json={"model": CODER, "messages": seen, "stream": False})
    assert whole.status_code == 500
    assert "image input is not supported" in whole.json()["error"]
    [line] = chat(client, CODER, messages=seen)  # streamed: 200, then one error line
    assert "image input is not supported" in line["error"]
    lines = chat(client, LLAMA4, messages=seen)
    assert lines[-1]["done"] is True and "error" not in lines[-1]


def test_num_ctx_change_reloads(emu: OllamaEmulator, client: httpx.Client) -> None:
    chat(client)
    chat(client, options={"num_ctx": 4096})
    chat(client, options={"num_ctx": 8192})
    chat(client, options={"num_ctx": 10_000_000})  # clamped to the model's 40960
    assert [(e.reason, e.num_ctx) for e in emu.loads] == [
        ("cold", 4096), ("num_ctx_change", 8192), ("num_ctx_change", 40960)
    ]  # fmt: skip
    assert emu.unloads == [(QWEN3, "num_ctx_change")] * 2
    spec = emu.config.models[QWEN3]
    loaded = ps(client)[QWEN3]
    assert loaded["context_length"] == 40960
    assert loaded["size"] == spec.footprint(40960) == emu.loads[-1].size


def test_keep_alive_zero_unloads_after_response(emu: OllamaEmulator, client: httpx.Client) -> None:
    lines = chat(client, keep_alive=0)
    assert lines[-1]["done_reason"] == "stop"
    assert ps(client) == {}
    assert emu.unloads == [(QWEN3, "keep_alive_0")]
    load = client.post("/api/chat", json={"model": CODER, "messages": [], "keep_alive": -1})
    assert load.json()["done_reason"] == "load" and load.json()["done"] is True
    assert ps(client)[CODER]["expires_at"] > "2300"  # forever
    unload = client.post("/api/chat", json={"model": CODER, "messages": [], "keep_alive": 0})
    assert unload.json()["done_reason"] == "unload"
    assert ps(client) == {}
    gen = client.post("/api/generate", json={"model": QWEN3, "keep_alive": "1m"}).json()
    assert gen["done_reason"] == "load" and gen["response"] == ""
    assert list(ps(client)) == [QWEN3]


def test_keep_alive_expires(emu: OllamaEmulator, client: httpx.Client) -> None:
    chat(client, keep_alive="150ms")
    entry = ps(client)[QWEN3]
    expires = datetime.fromisoformat(entry["expires_at"])
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 0.15
    emu.wait_until(lambda: emu.unloads == [(QWEN3, "keep_alive_expired")], timeout=1.0)
    assert ps(client) == {}
    chat(client, keep_alive=None)  # null means the default, 5m
    remaining = datetime.fromisoformat(ps(client)[QWEN3]["expires_at"]) - datetime.now(UTC)
    assert 299 < remaining.total_seconds() <= 300
    bad = client.post("/api/chat", json={"model": QWEN3, "messages": USER, "keep_alive": "5x"})
    assert bad.status_code == 400 and "invalid duration" in bad.json()["error"]


def test_parse_keep_alive() -> None:
    assert parse_keep_alive("5m") == 300 and parse_keep_alive("1h30m") == 5400
    assert parse_keep_alive("300ms") == pytest.approx(0.3) and parse_keep_alive(10) == 10
    assert parse_keep_alive("0") == 0 and math.isinf(parse_keep_alive(-1))
    assert math.isinf(parse_keep_alive("-1m"))
    with pytest.raises(ValueError):
        parse_keep_alive("soon")


def test_a_second_model_evicts_the_first_on_the_reference_gpu(
    emu: OllamaEmulator, client: httpx.Client
) -> None:
    chat(client, QWEN3)
    chat(client, CODER)
    assert list(ps(client)) == [CODER]
    assert emu.loads[1].evicted == [QWEN3] and emu.unloads == [(QWEN3, "evicted")]
    entry = ps(client)[CODER]
    assert entry["size_vram"] == 16 * 1024**3 < entry["size"]  # spilled to RAM


def test_num_gpu_zero_loads_on_the_cpu_beside_a_full_gpu(
    emu: OllamaEmulator, client: httpx.Client
) -> None:
    chat(client, CODER)  # fills the GPU and spills to RAM
    chat(client, QWEN3, options={"num_gpu": 0})
    assert set(ps(client)) == {CODER, QWEN3} and emu.unloads == []
    assert ps(client)[QWEN3]["size_vram"] == 0
    assert ps(client)[CODER]["size_vram"] == 16 * 1024**3
    # Asked for without num_gpu the model reloads, and on the GPU it needs the coder's room.
    chat(client, QWEN3)
    assert [(e.model, e.reason) for e in emu.loads][-1] == (QWEN3, "num_gpu_change")
    assert emu.unloads == [(QWEN3, "num_gpu_change"), (CODER, "evicted")]
    assert list(ps(client)) == [QWEN3] and ps(client)[QWEN3]["size_vram"] > 0


@pytest.mark.parametrize(
    ("qwen_keep", "coder_keep", "evicted"),
    [("10m", "2m", CODER), ("2m", "10m", QWEN3), ("5m", "5m", CODER), (-1, "24h", CODER)],
)
def test_eviction_takes_shortest_keep_alive(
    qwen_keep: str | int, coder_keep: str, evicted: str
) -> None:
    cfg = quick_reference()
    cfg.strict_gpu_fit = False  # place in VRAM then RAM, so two models share the machine
    with OllamaEmulator(cfg) as emu, httpx.Client(base_url=emu.base_url) as client:
        chat(client, QWEN3, keep_alive=qwen_keep)
        chat(client, CODER, keep_alive=coder_keep)
        assert set(ps(client)) == {QWEN3, CODER}
        chat(client, LLAMA4, options={"num_ctx": 262144})  # ~120 GB: one must go
        assert emu.loads[-1].evicted == [evicted]
        assert set(ps(client)) == {QWEN3, CODER, LLAMA4} - {evicted}
        assert emu.unloads == [(evicted, "evicted")]


def test_never_evicts_a_runner_with_requests_in_flight(
    emu: OllamaEmulator, client: httpx.Client
) -> None:
    emu.enqueue(Script(content="one two three", stall_after=1))
    with ThreadPoolExecutor(1) as pool:
        with client.stream("POST", "/api/chat", json={"model": QWEN3, "messages": USER}) as busy:
            lines = busy.iter_lines()  # keep it: a dropped iterator closes the connection
            assert json.loads(next(lines))["message"]["content"] == "one "
            waiting = pool.submit(chat, client, CODER)
            time.sleep(0.3)
            assert not waiting.done()
            assert emu.in_flight(QWEN3) == 1 and list(ps(client)) == [QWEN3]
            assert [e.model for e in emu.loads] == [QWEN3]
        reply = waiting.result(timeout=5)  # closing the busy stream frees the runner
    assert reply[-1]["done_reason"] == "stop"
    assert emu.loads[-1].evicted == [QWEN3] and list(ps(client)) == [CODER]
    assert len(emu.cancelled) == 1


def test_mid_stream_error_line(emu: OllamaEmulator, client: httpx.Client) -> None:
    emu.enqueue(Script(content="a b c d", error_after=2, error_message="model crashed"))
    lines = chat(client)
    assert [line.get("message", {}).get("content") for line in lines[:2]] == ["a ", "b "]
    assert lines[2:] == [{"error": "model crashed"}]
    emu.enqueue(Script(content="a b", error_after=1, error_message="boom"))
    response = client.post("/api/chat", json={"model": QWEN3, "messages": USER, "stream": False})
    assert response.status_code == 500 and response.json() == {"error": "boom"}


def test_scripted_status_and_num_predict(emu: OllamaEmulator, client: httpx.Client) -> None:
    busy = "server busy, please try again.  maximum pending requests exceeded"
    emu.enqueue(Script(status=503, error=busy), Script(content="one two three four"))
    response = client.post("/api/chat", json={"model": QWEN3, "messages": USER})
    assert response.status_code == 503 and response.json() == {"error": busy}
    *chunks, final = chat(client, options={"num_predict": 2})
    assert "".join(c["message"]["content"] for c in chunks) == "one two "
    assert final["done_reason"] == "length" and final["eval_count"] == 2


def test_stall_then_disconnect_is_cancelled(emu: OllamaEmulator, client: httpx.Client) -> None:
    emu.enqueue(Script(content="a b c d", stall_after=2))
    with client.stream("POST", "/api/chat", json={"model": QWEN3, "messages": USER}) as r:
        lines = r.iter_lines()
        assert [json.loads(next(lines))["done"] for _ in range(2)] == [False, False]
        assert emu.cancelled == []
        closed_at = time.monotonic()
    emu.wait_until(lambda: len(emu.cancelled) == 1, timeout=1.0)
    assert time.monotonic() - closed_at < 1.0
    gone = emu.cancelled[0]
    assert (gone.model, gone.phase, gone.chunks_sent) == (QWEN3, "generate", 2)
    assert emu.in_flight(QWEN3) == 0


def test_disconnect_during_load_aborts_it() -> None:
    cfg = quick_reference()
    cfg.load_seconds_per_gb = 0.1  # ~1.9 s for qwen3
    with OllamaEmulator(cfg) as emu, httpx.Client(base_url=emu.base_url, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/api/chat", json={"model": QWEN3, "messages": USER})
        emu.wait_until(lambda: len(emu.cancelled) == 1, timeout=1.0)
        assert emu.cancelled[0].phase == "queue"
        assert emu.loads == [] and ps(client) == {}


def test_ps_fields(emu: OllamaEmulator, client: httpx.Client) -> None:
    chat(client, options={"num_ctx": 16384}, keep_alive="10m")
    (entry,) = client.get("/api/ps").json()["models"]
    spec = emu.config.models[QWEN3]
    assert entry["name"] == entry["model"] == QWEN3
    assert (
        entry["size"] == spec.weights_bytes + spec.kv_bytes_per_token * 16384 + spec.overhead_bytes
    )
    assert entry["size_vram"] == min(entry["size"], emu.config.vram_bytes)
    assert entry["context_length"] == 16384 and entry["digest"] == spec.digest
    assert len(entry["digest"]) == 64
    assert entry["details"] == {
        "parent_model": "", "format": "gguf", "family": "qwen3moe", "families": ["qwen3moe"],
        "parameter_size": "30.5B", "quantization_level": "Q4_K_M",
    }  # fmt: skip
    remaining = datetime.fromisoformat(entry["expires_at"]) - datetime.now(UTC)
    assert 590 < remaining.total_seconds() <= 600
    assert [m["context_length"] for m in emu.loaded()] == [16384]


def test_show_model_info(client: httpx.Client) -> None:
    body = client.post("/api/show", json={"model": CODER}).json()
    info = body["model_info"]
    assert info["general.architecture"] == "qwen2"
    assert info["general.parameter_count"] == 32_763_876_352
    assert info["qwen2.context_length"] == 32768
    blocks, kv_heads = info["qwen2.block_count"], info["qwen2.attention.head_count_kv"]
    assert (blocks, info["qwen2.attention.head_count"], kv_heads) == (64, 40, 8)
    assert info["qwen2.embedding_length"] == 5120
    head_dim = info["qwen2.attention.key_length"]
    assert head_dim == info["qwen2.attention.value_length"] == 128
    assert kv_bytes_per_token(blocks, kv_heads, head_dim) == 262_144
    assert reference_profile().models[CODER].kv_bytes_per_token == 262_144
    assert body["capabilities"] == ["completion", "tools", "insert"]
    assert body["details"]["family"] == "qwen2" and "<|im_start|>" in body["parameters"]
    assert body["template"]
    moe = client.post("/api/show", json={"model": QWEN3}).json()["model_info"]
    assert moe["qwen3moe.expert_count"] == 128 and moe["qwen3moe.attention.head_count_kv"] == 4


def test_tags_version_and_embed(emu: OllamaEmulator, client: httpx.Client) -> None:
    tags = {m["name"]: m for m in client.get("/api/tags").json()["models"]}
    assert set(tags) == {QWEN3, CODER, LLAMA4}
    assert tags[LLAMA4]["size"] == emu.config.models[LLAMA4].weights_bytes
    assert tags[LLAMA4]["details"]["family"] == "llama4"
    assert client.get("/api/version").json() == {"version": "0.13.0"}
    body = client.post("/api/embed", json={"model": QWEN3, "input": ["alpha beta", "gamma"]}).json()
    first, second = body["embeddings"]
    assert len(first) == 384 and math.isclose(sum(v * v for v in first), 1.0)
    assert first != second
    again = client.post("/api/embed", json={"model": QWEN3, "input": "alpha beta"}).json()
    assert again["embeddings"] == [first] and again["model"] == QWEN3


def test_requests_are_recorded_exactly(emu: OllamaEmulator, client: httpx.Client) -> None:
    payload = {
        "model": QWEN3,
        "messages": [{"role": "user", "content": "héllo ✓"}],
        "options": {"num_ctx": 4096, "temperature": 0.2, "stop": ["\n\n"]},
        "stream": False,
        "keep_alive": "30m",
    }
    raw = json.dumps(payload, ensure_ascii=False).encode()
    headers = {"content-type": "application/json", "x-trace": "t-1"}
    client.post("/api/chat", content=raw, headers=headers)
    client.get("/api/ps")
    first, second = emu.requests
    assert (first.method, first.path, first.json, first.body) == ("POST", "/api/chat", payload, raw)
    assert first.headers["X-Trace"] == "t-1"
    assert (second.method, second.path, second.json) == ("GET", "/api/ps", None)
    assert client.post("/api/chat", content=b"{not json").status_code == 400
    assert emu.requests[-1].body == b"{not json" and emu.requests[-1].json is None


def test_model_too_big_for_the_machine_is_an_error() -> None:
    cfg = quick_reference()
    cfg.ram_bytes = 32 * 1024**3  # 48 GiB in all: llama4's 67 GB weights cannot load
    with OllamaEmulator(cfg) as emu, httpx.Client(base_url=emu.base_url) as client:
        response = client.post("/api/chat", json={"model": LLAMA4, "messages": USER})
        assert response.status_code == 500
        assert response.json()["error"].startswith("model requires more system memory")
        assert emu.loads == []


def test_max_loaded_models_is_respected() -> None:
    cfg = fast_profile()  # everything fits in memory; only the count limits
    cfg.max_loaded_models = 2
    with OllamaEmulator(cfg) as emu, httpx.Client(base_url=emu.base_url) as client:
        chat(client, QWEN3, keep_alive="1h")
        chat(client, CODER, keep_alive="1h")
        chat(client, LLAMA4)  # default 5m, but the victim is chosen among the loaded two
        assert set(ps(client)) == {QWEN3, LLAMA4}
        assert emu.loads[-1].evicted == [CODER]  # equal keep_alive: first by name
        assert [e.model for e in emu.loads] == [QWEN3, CODER, LLAMA4]
        assert all(e.duration_s < 0.05 for e in emu.loads)  # no simulated load delay
