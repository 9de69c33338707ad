"""Capabilities: what a request needs (images, tools) and which models the policy may send it to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memory_router.errors import ConfigError, ContextLengthExceeded, ModelNotCapable
from memory_router.routing.policy import SessionChoice, View, choose
from memory_router.settings import RoutingSettings, load_settings
from memory_router.wire.openai import ChatCompletionRequest, CompletionRequest
from tests.conftest import write_config
from tests.unit.test_policy import CATALOG, CODER, FAST, LONG, resident, view

PNG = (  # one transparent pixel
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8AAAAMBAQ"
    "AYkDNLAAAAAElFTkSuQmCC"
)
TOOL = {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}
# As the emulator's /api/show reports them for the reference models.
REFERENCE = {
    FAST: frozenset({"completion", "tools", "thinking"}),
    CODER: frozenset({"completion", "tools", "insert"}),
    LONG: frozenset({"completion", "tools", "vision"}),
}


def request(*messages: dict[str, Any], **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "cline-memory-router", "messages": list(messages), **fields}
    )


def image_turn(text: str = "What does this screenshot show?") -> dict[str, Any]:
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": PNG}}]
    return {"role": "user", "content": parts}


def with_capabilities(the_view: View, capabilities: dict[str, frozenset[str]]) -> View:
    return View(the_view.snapshots, the_view.profiles, capabilities=capabilities)


def route(needs: frozenset[str], the_view: View, task: Any = "implement", **kw: Any) -> Any:
    settings = RoutingSettings.model_validate({"policy": "residency"})
    prompt = kw.pop("prompt", 3000)
    return choose(task, prompt, 4096, CATALOG, the_view, settings, (), needs=needs, **kw)


# -- what a request needs ----------------------------------------------------------------------


def test_plain_text_needs_nothing() -> None:
    assert request({"role": "user", "content": "hi"}).needs() == frozenset()


def test_an_image_anywhere_in_the_conversation_needs_vision() -> None:
    # Clients resend the whole conversation: the image of the first turn is in every later one.
    later = request(
        image_turn(),
        {"role": "assistant", "content": "A login form."},
        {"role": "user", "content": "Make the button blue."},
    )
    assert later.needs() == frozenset({"vision"})


def test_tools_are_needed_unless_tool_choice_is_none() -> None:
    user = {"role": "user", "content": "read it"}
    assert request(user, tools=[TOOL]).needs() == frozenset({"tools"})
    assert request(user, tools=[TOOL], tool_choice="none").needs() == frozenset()
    assert request(image_turn(), tools=[TOOL]).needs() == frozenset({"tools", "vision"})


def test_text_parts_alone_need_nothing() -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    assert request({"role": "user", "content": parts}).needs() == frozenset()


def test_a_suffix_needs_insert() -> None:
    def completion(**fields: Any) -> CompletionRequest:
        return CompletionRequest.model_validate({"model": "m", "prompt": "def f(", **fields})

    assert completion(suffix="\n    return x").needs() == frozenset({"insert"})
    assert completion(suffix="").needs() == frozenset()
    assert completion().needs() == frozenset()


# -- the choice --------------------------------------------------------------------------------


def test_images_go_to_the_vision_model_even_with_the_coder_resident() -> None:
    the_view = with_capabilities(view(resident(CODER)), REFERENCE)
    decision = route(frozenset({"vision", "tools"}), the_view)
    assert decision.model == LONG
    lacking = {c.model: c.lacks for c in decision.candidates if c.lacks}
    assert lacking == {FAST: ("vision",), CODER: ("vision",)}
    assert all(not c.fits for c in decision.candidates if c.lacks)
    assert f"{CODER} skipped: it lacks vision" in decision.reasons


def test_without_images_the_same_view_keeps_the_resident_coder() -> None:
    the_view = with_capabilities(view(resident(CODER)), REFERENCE)
    decision = route(frozenset({"tools"}), the_view)
    assert decision.model == CODER
    assert not any(c.lacks for c in decision.candidates)


def test_a_session_leaves_its_model_for_an_image_it_cannot_read() -> None:
    the_view = with_capabilities(view(resident(CODER)), REFERENCE)
    session = SessionChoice(CODER, "implement", 32768)
    assert route(frozenset(), the_view, session=session).model == CODER
    assert route(frozenset({"vision"}), the_view, session=session).model == LONG


def test_unknown_capabilities_are_not_held_against_a_model() -> None:
    # An older Ollama (no "capabilities" in /api/show) or an OpenAI upstream: nothing known.
    decision = route(frozenset({"vision"}), view(resident(CODER)))
    assert decision.model == CODER
    assert not any(c.lacks for c in decision.candidates)


def test_no_model_with_vision_is_a_clear_400() -> None:
    text_only = {name: frozenset({"completion", "tools"}) for name in REFERENCE}
    with pytest.raises(ModelNotCapable) as caught:
        route(frozenset({"vision"}), with_capabilities(view(), text_only))
    error = caught.value
    assert error.status == 400
    assert error.code == "model_not_capable"
    assert error.param == "messages"
    assert "carries images" in error.message
    assert f"{LONG} lacks vision" in error.message
    assert "config/models.yaml" in error.message and "remove them" in error.message


def test_too_long_for_the_only_vision_model_names_its_context() -> None:
    # Only the coder (32k) takes images here: a 60k-token request fits none that does.
    only_coder = {**REFERENCE, CODER: REFERENCE[LONG], LONG: REFERENCE[CODER]}
    with pytest.raises(ContextLengthExceeded) as caught:
        route(frozenset({"vision"}), with_capabilities(view(), only_coder), prompt=60_000)
    assert f"largest local context is 32768 ({CODER})" in caught.value.message


# -- configuration -----------------------------------------------------------------------------


def test_models_yaml_may_state_capabilities(tmp_path: Path) -> None:
    models = _models(capabilities=["completion", "vision"])
    directory = write_config(tmp_path / "ok", {}, models)
    spec = load_settings(directory, environ={}, env_file=None).models.models[0]
    assert spec.capabilities == ("completion", "vision")


def test_an_unknown_capability_names_the_file_and_the_key(tmp_path: Path) -> None:
    directory = write_config(tmp_path / "bad", {}, _models(capabilities=["eyes"]))
    with pytest.raises(ConfigError) as caught:
        load_settings(directory, environ={}, env_file=None)
    text = str(caught.value)
    assert "models.yaml" in text and "capabilities" in text and "vision" in text


def _models(**extra: Any) -> dict[str, Any]:
    fit = {"memory": 0.5, "implement": 0.5, "analyze": 0.5, "chat": 0.5, "meta": 0.5}
    spec = {"name": "llava:7b", "context_window": 8192, "num_ctx": 8192, "task_fit": fit, **extra}
    return {"models": [spec]}
