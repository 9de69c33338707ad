"""Every labelled request, in all three evaluation sets, has the shape its client sends."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from memory_router.wire.openai import ChatCompletionRequest, parse_request
from tests.routing_eval import EvalCase, load_cases
from tests.routing_eval.build import CASES_DIR, MODEL
from tests.routing_eval.holdout import HOLDOUT_DIR, load_holdout
from tests.routing_eval.holdout2 import HOLDOUT2_DIR, load_holdout2

XML_TOOL = re.compile(
    r"<(read_file|write_to_file|replace_in_file|execute_command|"
    r"search_files|list_files|attempt_completion|plan_mode_respond)>"
)
SETS: dict[str, tuple[Callable[[], list[EvalCase]], Path]] = {
    "development": (load_cases, CASES_DIR),
    "first-held-out": (load_holdout, HOLDOUT_DIR),
    "second-held-out": (load_holdout2, HOLDOUT2_DIR),
}


@pytest.fixture(scope="module", params=list(SETS))
def cases(request: pytest.FixtureRequest) -> list[EvalCase]:
    return SETS[request.param][0]()


def test_every_body_parses(cases: list[EvalCase]) -> None:
    for case in cases:
        body = case.body
        request = parse_request(ChatCompletionRequest, body)
        assert request.model == MODEL == body["model"]
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["messages"][-1]["role"] in ("user", "tool"), case.id


def test_native_bodies(cases: list[EvalCase]) -> None:
    for case in (c for c in cases if c.style == "native"):
        body = case.body
        assert body["tools"] and body["tool_choice"] == "auto", case.id
        names = {tool["function"]["name"] for tool in body["tools"]}
        assert "read_files" in names
        system = body["messages"][0]
        assert system["role"] == "system" and "Working Directory: /" in system["content"]
        pending: set[str] = set()
        for message in body["messages"][1:]:
            if message["role"] == "tool":
                assert message["tool_call_id"] in pending, (case.id, message["tool_call_id"])
                pending.discard(message["tool_call_id"])
                continue
            assert not pending, (case.id, "a tool call without a result", pending)
            for call in message.get("tool_calls") or []:
                assert call["function"]["name"] in names, (case.id, call["function"]["name"])
                json.loads(call["function"]["arguments"])
                pending.add(call["id"])
        assert not pending, case.id


def test_xml_bodies(cases: list[EvalCase]) -> None:
    for case in (c for c in cases if c.style == "xml"):
        body = case.body
        assert "tools" not in body and "tool_choice" not in body, case.id
        system = body["messages"][0]["content"]
        assert "# Tool Use Formatting" in system and "## read_file" in system, case.id
        assert "Current Working Directory: /" in system
        first = body["messages"][1]["content"]
        assert isinstance(first, list) and first[0]["text"].startswith("<task>\n"), case.id
        for message in body["messages"][1:]:
            assert message["role"] in ("user", "assistant"), case.id
            if message["role"] == "user":
                assert "<environment_details>" in message["content"][-1]["text"], case.id
            else:  # exactly one XML tool call per assistant message
                assert len(XML_TOOL.findall(message["content"])) == 1, case.id
        roles = [m["role"] for m in body["messages"][1:]]
        assert all(a != b for a, b in pairwise(roles)), case.id


def test_plain_bodies(cases: list[EvalCase]) -> None:
    for case in (c for c in cases if c.style == "plain"):
        assert "tools" not in case.body
        assert "Cline" not in json.dumps(case.body["messages"]), case.id


@pytest.mark.parametrize("directory", [d for _, d in SETS.values()], ids=list(SETS))
def test_case_files_stay_small(directory: Path) -> None:
    files = list(directory.glob("*.yaml"))
    assert files
    for path in files:
        assert len(path.read_text(encoding="utf-8").splitlines()) < 600, path.name
