"""The optional LLM classifier, through the router over sockets, against the emulator.

A small model (``qwen3:0.6b``, pulled in the emulator) is configured as the classifier. The
emulator's scripted replies are taken in order: the first is the classifier's answer, the
next the routed model's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest

from memory_router.routing.llm_vote import SYSTEM
from tests.conftest import RouterFactory, RouterThread
from tests.ollama_emulator import OllamaEmulator, Script, fast_profile
from tests.test_ollama_emulator import quick_reference

SMALL = "qwen3:0.6b"
CODER = "qwen2.5-coder:32b"
OPEN = "Something is off with the invoice totals when currencies differ"
"""Words the cheap signals leave open: no rule, no keyword (routed as chat without a vote)."""


@pytest.fixture
def emu() -> Any:
    config = fast_profile()
    config.models[SMALL] = replace(config.models["qwen3:30b-a3b"], weights_bytes=52_000, digest="")
    config = replace(config, models=dict(config.models))  # derives the new model's digest
    with OllamaEmulator(config) as emulator:
        yield emulator


def classifier_router(make_router: RouterFactory, emu: OllamaEmulator, **llm: Any) -> RouterThread:
    settings = {"model": SMALL, "timeout_s": 5, **llm}
    # The example vote and the learned classifier are off, so that these words are left open
    # by the rules and only the LLM classifier can move them (with the learned classifier on,
    # it is asked when that is unsure: tests/unit/test_learned.py).
    classifier = {"embedding": False, "learned": False, "llm": settings}
    return make_router(emu.base_url, routing={"classifier": classifier})


def asked(emu: OllamaEmulator) -> list[dict[str, Any]]:
    return [r.json for r in emu.requests if r.path == "/api/chat" and r.json["model"] == SMALL]


def chat(router: RouterThread, words: str) -> Any:
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key="any", max_retries=0)
    with client:
        return client.chat.completions.with_raw_response.create(
            model="cline-memory-router", messages=[{"role": "user", "content": words}]
        )


def classifier_counts(router: RouterThread) -> dict[str, float]:
    """``memory_router_llm_classifier_requests_total`` by outcome, from ``/metrics``."""
    text = httpx.get(router.base_url + "/metrics").text
    prefix = f'memory_router_llm_classifier_requests_total{{model="{SMALL}",outcome="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_the_model_reads_words_the_rules_leave_open(
    emu: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = classifier_router(make_router, emu)
    emu.enqueue(Script("analyze"), Script("Rates are applied after rounding."))
    raw = chat(router, OPEN)
    reason = raw.headers["x-router-reason"]
    assert f"the LLM classifier {SMALL} reads the user's words as analyze" in reason
    assert "analyze -> " in reason
    assert raw.parse().choices[0].message.content == "Rates are applied after rounding."
    [sent] = asked(emu)
    assert sent["messages"][0] == {"role": "system", "content": SYSTEM}
    assert OPEN in sent["messages"][1]["content"]
    assert sent["stream"] is False
    assert sent["think"] is False
    assert sent["keep_alive"] == "30m"
    assert sent["options"]["num_predict"] == 8
    assert sent["options"]["temperature"] == 0
    routed = [r.json for r in emu.requests if r.path == "/api/chat"][-1]
    assert routed["model"] != SMALL
    assert routed["messages"][-1]["content"] == OPEN

    # The same words again (an agent loop resends them every turn): not asked again.
    emu.enqueue(Script("again"))
    raw = chat(router, OPEN)
    assert "reads the user's words as analyze" in raw.headers["x-router-reason"]
    assert len(asked(emu)) == 1


def test_without_a_vote_the_same_words_route_as_before(
    emu: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emu.base_url, routing={"classifier": {"embedding": False}})
    raw = chat(router, OPEN)
    assert "chat -> " in raw.headers["x-router-reason"]
    assert "LLM classifier" not in raw.headers["x-router-reason"]
    assert asked(emu) == []
    assert "llm_classifier" not in httpx.get(router.base_url + "/metrics").text


def test_decisive_requests_never_ask(emu: OllamaEmulator, make_router: RouterFactory) -> None:
    router = classifier_router(make_router, emu)
    for words in ("hello!", "Refactor app/billing.py to use Decimal and fix the failing test"):
        raw = chat(router, words)
        assert raw.http_response.status_code == 200
    assert asked(emu) == []


def test_a_request_is_read_once_for_the_classifier_and_the_decision(
    emu: OllamaEmulator, make_router: RouterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The classifier reads the request's signals before the decision; the decision uses
    them instead of reading the conversation again."""
    import memory_router.llm_classifier
    import memory_router.routing.engine
    from memory_router.routing.signals import read_signals

    read: list[str] = []

    def counted(request: Any) -> Any:
        read.append(request.messages[-1].text())
        return read_signals(request)

    monkeypatch.setattr(memory_router.llm_classifier, "read_signals", counted)
    monkeypatch.setattr(memory_router.routing.engine, "read_signals", counted)
    router = classifier_router(make_router, emu)
    emu.enqueue(Script("analyze"), Script("ok"))
    assert "reads the user's words as analyze" in chat(router, OPEN).headers["x-router-reason"]
    assert chat(router, "hello!").http_response.status_code == 200
    assert read == [OPEN, "hello!"]


def test_an_answer_that_names_no_class_is_kept_and_said(
    emu: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = classifier_router(make_router, emu)
    emu.enqueue(Script("I cannot tell."))
    raw = chat(router, OPEN)
    reason = raw.headers["x-router-reason"]
    assert f"the LLM classifier {SMALL} named no task class for these words" in reason
    assert "chat -> " in reason
    chat(router, OPEN)
    assert len(asked(emu)) == 1
    emu.enqueue(Script("implement"), Script("ok"))
    chat(router, "the exports since the upgrade")
    assert classifier_counts(router) == {"class": 1.0, "no_class": 1.0, "failed": 0.0}


def test_a_slow_classifier_is_not_waited_for_and_then_left_alone(
    emu: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = classifier_router(make_router, emu, timeout_s=0.3, retry_after_s=60)
    emu.enqueue(Script("analyze", token_delay_s=2.0))
    raw = chat(router, OPEN)
    assert raw.http_response.status_code == 200
    reason = raw.headers["x-router-reason"]
    assert f"no answer from the LLM classifier {SMALL} for these words" in reason
    assert "chat -> " in reason
    emu.wait_until(lambda: any(c.model == SMALL for c in emu.cancelled), timeout=5)
    # Within retry_after_s other open words are routed without asking.
    chat(router, "Something about the exports feels wrong since the upgrade")
    assert len(asked(emu)) == 1
    counts = classifier_counts(router)
    assert counts == {"class": 0.0, "no_class": 0.0, "failed": 1.0}


def test_an_unpulled_classifier_model_does_not_fail_requests(
    emu: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = classifier_router(make_router, emu, model="tinyllama:1.1b")
    raw = chat(router, OPEN)
    assert raw.http_response.status_code == 200
    assert "no answer from the LLM classifier tinyllama:1.1b" in raw.headers["x-router-reason"]
    chat(router, "Something about the exports feels wrong since the upgrade")
    tried = [
        r for r in emu.requests if r.path == "/api/chat" and r.json["model"] == "tinyllama:1.1b"
    ]
    assert len(tried) == 1, "after the 404 it is left alone for retry_after_s"
    notes = httpx.get(router.base_url + "/ready").json()["notes"]
    [note] = [n for n in notes if "LLM classifier" in n]
    assert note.startswith("the LLM classifier tinyllama:1.1b failed (")
    assert "ollama pull tinyllama:1.1b" in note and "routed without it for another" in note


def test_explain_never_calls_the_classifier_but_shows_its_kept_answer(
    emu: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = classifier_router(make_router, emu)
    body = {"model": "cline-memory-router", "messages": [{"role": "user", "content": OPEN}]}
    with httpx.Client(base_url=router.base_url, timeout=30) as http:
        before = http.post("/v1/route/explain", json=body).json()
        assert asked(emu) == []
        assert before["task"] == "chat"
        assert any("no answer from the LLM classifier" in r for r in before["reasons"])
        emu.enqueue(Script("analyze"), Script("ok"))
        chat(router, OPEN)
        after = http.post("/v1/route/explain", json=body).json()
    assert len(asked(emu)) == 1
    assert after["task"] == "analyze"
    assert after["signals"]["class_via"] == "llm"


def test_a_classifier_on_an_ollama_host_of_its_own_is_asked_there(
    emu: OllamaEmulator, make_router: RouterFactory
) -> None:
    """The README's setup for a GPU that holds one big model: a second, CPU-only Ollama."""
    config = fast_profile()
    small = replace(config.models["qwen3:30b-a3b"], weights_bytes=52_000, digest="")
    with OllamaEmulator(replace(config, models={SMALL: small}, vram_bytes=0)) as cpu:
        host = {"name": "cpu", "base_url": cpu.base_url, "vram_bytes": 0, "ram_bytes": 8 << 30}
        router = make_router(
            emu.base_url,
            ollama_hosts=[host],
            routing={
                "classifier": {
                    "embedding": False,
                    "learned": False,
                    "llm": {"model": SMALL, "backend": "cpu"},
                }
            },
        )
        cpu.enqueue(Script("implement"))
        raw = chat(router, OPEN)
        assert "reads the user's words as implement" in raw.headers["x-router-reason"]
        assert [r.json["model"] for r in cpu.requests if r.path == "/api/chat"] == [SMALL]
        assert asked(emu) == []
        ready = httpx.get(router.base_url + "/ready")
        assert ready.status_code == 200
        assert not [n for n in ready.json()["notes"] if "LLM classifier" in n]


@pytest.mark.parametrize("cpu_only", [True, False])
def test_on_the_cpu_the_classifier_never_evicts_the_model_it_routes_to(
    make_router: RouterFactory, cpu_only: bool
) -> None:
    """The reference GPU holds one big model; the coder is loaded (as if just used)."""
    config = quick_reference()
    small = replace(config.models["qwen3:30b-a3b"], weights_bytes=500_000_000, digest="")
    config = replace(config, models={**config.models, SMALL: small})
    with OllamaEmulator(config) as emu:
        loaded = {"model": CODER, "messages": [], "options": {"num_ctx": 32768}}
        assert httpx.post(emu.base_url + "/api/chat", json=loaded, timeout=30).status_code == 200
        router = classifier_router(make_router, emu, cpu_only=cpu_only)
        emu.enqueue(Script("implement"), Script("done"))
        raw = chat(router, OPEN)
        [sent] = asked(emu)
        ps = {m["name"]: m for m in httpx.get(emu.base_url + "/api/ps").json()["models"]}
    assert "reads the user's words as implement" in raw.headers["x-router-reason"]
    if cpu_only:
        assert sent["options"]["num_gpu"] == 0
        assert emu.unloads == [], "the coder stays on the GPU beside the classifier"
        assert raw.headers["x-router-model"] == CODER
        assert ps[SMALL]["size_vram"] == 0 and CODER in ps
    else:
        assert "num_gpu" not in sent["options"]
        assert (CODER, "evicted") in emu.unloads, "on the GPU the classifier takes the room"


def test_a_classifier_whose_backend_is_not_running_is_named_in_ready(
    emu: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = classifier_router(make_router, emu, backend="embedded")  # embedded mode: never
    raw = chat(router, OPEN)
    assert raw.http_response.status_code == 200
    assert f"no answer from the LLM classifier {SMALL}" in raw.headers["x-router-reason"]
    notes = httpx.get(router.base_url + "/ready").json()["notes"]
    assert f"the LLM classifier {SMALL} is not asked: its backend embedded is not running" in notes
