"""The LLM classifier on a real model: the embedded Gemma reads the user's words in-process.

Gemma 3 270M base is no judge of task classes; what this shows is the real path (a short,
non-streamed generation through llama.cpp beside the routed request) and that whatever the
model says is read and recorded, never a failure of the request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest

from memory_router.backends.embedded import EMBEDDED_MODEL
from tests.e2e.conftest import RouterProcess, without_ollama

pytestmark = pytest.mark.e2e

OPEN = "Something is off with the invoice totals when currencies differ"


@pytest.fixture(scope="module")
def classified_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    root = tmp_path_factory.mktemp("classifier-router")
    llm = {"model": EMBEDDED_MODEL, "backend": "embedded", "timeout_s": 60}
    with without_ollama(
        root,
        embedded={"mode": "auto", "n_ctx": 8192, "default_max_tokens": 16},
        # The rules' path: these words are left open by the rules, so the model is asked
        # (with the learned classifier on it is asked when that is unsure).
        routing={"classifier": {"embedding": False, "learned": False, "llm": llm}},
        logging={"decision_log": {"path": str(root / "decisions.jsonl")}},
    ) as router:
        yield router


def test_the_embedded_model_reads_the_words_and_the_request_is_answered(
    classified_router: RouterProcess,
) -> None:
    client = openai.OpenAI(
        base_url=classified_router.base_url + "/v1", api_key="any", max_retries=0
    )
    with client:
        raw = client.chat.completions.with_raw_response.create(
            model="cline-memory-router",
            messages=[{"role": "user", "content": OPEN}],
            max_tokens=12,
        )
        reply = raw.parse()
    assert reply.choices[0].message.content
    reason = raw.headers["x-router-reason"]
    assert "no answer from the LLM classifier" not in reason, classified_router.log()
    assert (
        f"the LLM classifier {EMBEDDED_MODEL} reads the user's words as" in reason
        or f"the LLM classifier {EMBEDDED_MODEL} named no task class" in reason
    )
    assert "llm_classifier_failed" not in classified_router.log()
    log = classified_router.log_path.parent / "decisions.jsonl"
    deadline = time.monotonic() + 10  # written in batches, off the request path
    while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    reasons = " | ".join(record["reasons"])
    assert "LLM classifier" in reasons
