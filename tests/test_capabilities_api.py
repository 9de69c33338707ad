"""Images reach only a model that reads them: routing, explain and clear errors, over sockets.

The router learns each model's capabilities from the emulator's ``/api/show`` (the shipped
models.yaml states none), as it does from Ollama: of the reference models only
llama4:16x17b has ``vision``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import REPO, RouterFactory
from tests.ollama_emulator import OllamaEmulator

FIXTURES = Path(__file__).parent / "fixtures" / "cline"
CODER, LONG = "qwen2.5-coder:32b", "llama4:16x17b"
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n one pixel, as far as the router cares").decode()
IMAGE = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}


def cline_with_screenshot() -> dict[str, Any]:
    """A real Cline 3.0.65 first turn (system prompt, 25 tools) with a pasted screenshot."""
    body: dict[str, Any] = json.loads((FIXTURES / "native_turn1.json").read_text("utf-8"))
    text = "<task>\nThe login button is cut off on mobile, see the screenshot. Fix it.\n</task>"
    body["messages"][1] = {"role": "user", "content": [{"type": "text", "text": text}, IMAGE]}
    return body


def chats(emulator: OllamaEmulator) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.path == "/api/chat" and r.json.get("messages")]


def test_a_screenshot_goes_to_the_vision_model_with_its_image(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    body = {**cline_with_screenshot(), "stream": True, "stream_options": {"include_usage": True}}
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key="any", max_retries=0)
    with client:
        raw = client.chat.completions.with_raw_response.create(**body)
        chunks = list(raw.parse())
    assert raw.headers["x-router-model"] == LONG
    assert f"{CODER} skipped: it lacks vision" in raw.headers["x-router-reason"]
    assert "".join(c.delta.content or "" for ch in chunks for c in ch.choices)
    assert chunks[-1].usage is not None
    [sent] = chats(emulator)
    assert sent["model"] == LONG
    assert sent["messages"][1]["images"] == [PIXEL]
    assert sent["tools"], "Cline's tools still go along"


def test_explain_shows_which_models_lack_vision(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        decision = client.post("/v1/route/explain", json=cline_with_screenshot()).json()
    assert decision["model"] == LONG
    assert decision["signals"]["needs"] == ["tools", "vision"]
    lacks = {c["model"]: c["lacks"] for c in decision["candidates"]}
    assert lacks == {"qwen3:30b-a3b": ["vision"], CODER: ["vision"], LONG: []}


def test_an_image_for_a_named_text_model_is_a_400_that_says_what_to_do(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key="any", max_retries=0)
    messages: Any = [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}
    ]
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CODER, messages=messages)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_capable"
    assert error["param"] == "messages"
    assert f"'{CODER}' does not take images" in error["message"]
    assert f"use {LONG} or cline-memory-router" in error["message"]
    assert chats(emulator) == [], "nothing was sent to Ollama"


def test_when_no_model_reads_images_the_router_says_so_before_loading_anything(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    # models.yaml may state capabilities; here it says the long-context model reads no images.
    models = yaml.safe_load((REPO / "config" / "models.yaml").read_text("utf-8"))
    for spec in models["models"]:
        if spec["name"] == LONG:
            spec["capabilities"] = ["completion", "tools"]
    router = make_router(emulator.base_url, models=models)
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        reply = client.post("/v1/chat/completions", json=cline_with_screenshot())
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "model_not_capable"
    assert "no configured model takes" in error["message"]
    assert f"{LONG} lacks vision" in error["message"]
    assert chats(emulator) == [] and emulator.loads == []


def test_a_configured_escalation_takes_images_no_local_model_reads(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    # The "cloud" is a second router in front of the emulator, where llama4 reads images.
    cloud = make_router(emulator.base_url)
    models = yaml.safe_load((REPO / "config" / "models.yaml").read_text("utf-8"))
    for spec in models["models"]:
        spec["capabilities"] = ["completion", "tools"]
    router = make_router(
        emulator.base_url,
        models=models,
        openai_upstreams=[{"name": "cloud", "base_url": cloud.base_url + "/v1"}],
        routing={"escalation": {"backend": "cloud", "model": LONG}},
    )
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        reply = client.post("/v1/chat/completions", json=cline_with_screenshot())
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-router-model"] == LONG
    reason = reply.headers["x-router-reason"]
    assert reason == (
        "the request carries tools and images, which no configured model takes (qwen3:30b-a3b "
        "lacks vision; qwen2.5-coder:32b lacks vision; llama4:16x17b lacks vision); "
        "escalated to llama4:16x17b on cloud (configured escalation)"
    )
    [sent] = chats(emulator)
    assert sent["model"] == LONG and sent["messages"][1]["images"] == [PIXEL]


def generated(emulator: OllamaEmulator) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.path == "/api/generate" and r.json.get("prompt")]


def test_fill_in_the_middle_goes_to_the_model_with_insert(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    # An editor's autocomplete (Continue) sends the text after the cursor as `suffix`.
    router = make_router(emulator.base_url)
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key="any", max_retries=0)
    with client:
        raw = client.completions.with_raw_response.create(
            model="cline-memory-router",
            prompt="def add(a, b):\n    ",
            suffix="\n\nprint(add(1, 2))\n",
            max_tokens=16,
        )
        assert raw.parse().choices[0].text
    assert raw.headers["x-router-model"] == CODER  # the only one of the three with insert
    [sent] = generated(emulator)
    assert sent["model"] == CODER
    assert sent["suffix"] == "\n\nprint(add(1, 2))\n"
    assert sent["raw"] is False, "Ollama fills the middle only through the model's template"


def test_fill_in_the_middle_on_a_model_without_insert_is_a_400(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key="any", max_retries=0)
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=LONG, prompt="def add(a, b):\n    ", suffix="\n")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_capable" and error["param"] == "suffix"
    assert error["message"] == (
        f"model '{LONG}' does not take a suffix (fill in the middle) (it lacks insert): "
        f"use {CODER} or cline-memory-router, which picks one that does"
    )
    assert generated(emulator) == []


def test_the_model_list_shows_what_each_model_takes(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    listed = httpx.get(router.base_url + "/v1/models").json()["data"]
    capabilities = {m["id"]: m.get("capabilities") for m in listed}
    assert capabilities == {
        "cline-memory-router": None,
        "qwen3:30b-a3b": ["completion", "thinking", "tools"],
        CODER: ["completion", "insert", "tools"],
        LONG: ["completion", "tools", "vision"],
    }
