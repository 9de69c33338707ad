"""Real Cline requests (tests/fixtures/cline) and variations built from them, for the
memory-bank signal tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from memory_router.routing.memory_signals import (
    MemorySignals,
    read_memory_signals,
)
from memory_router.wire.openai import ChatCompletionRequest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cline"
WS = "/tmp/cline_capture/todo-app"
BRIEF, ACTIVE, PROGRESS = (
    "memory-bank/projectbrief.md",
    "memory-bank/activeContext.md",
    "memory-bank/progress.md",
)
BANK = (BRIEF, ACTIVE, PROGRESS)
TASK = 'user said "follow your custom instructions"'
NATIVE_READ = f"the latest turns read {BRIEF}, {ACTIVE}, {PROGRESS} (read_files)"
XML_READ = f"the latest turns read {BRIEF} (read_file)"
LAPSED = 'user said "follow your custom instructions"; the bank was read and the agent moved on'


def load(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return body


def signals(body: dict[str, Any]) -> MemorySignals:
    return read_memory_signals(ChatCompletionRequest.model_validate(body))


def native_task(text: str, name: str = "native_turn1") -> dict[str, Any]:
    body = load(name)
    body["messages"][1]["content"] = text
    return body


def xml_task(text: str, name: str = "xml_turn1") -> dict[str, Any]:
    body = load(name)
    body["messages"][1]["content"][0]["text"] = f"<task>\n{text}\n</task>"
    return body


def native_call(
    body: dict[str, Any], name: str, arguments: dict[str, Any], result: Any = None
) -> dict[str, Any]:
    """Append an assistant tool call in cline 3.x's shape and, unless None, its result."""
    call_id = f"call_{len(body['messages'])}"
    body["messages"].append(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            ],
        }
    )
    if result is not None:
        content = result if isinstance(result, str) else json.dumps(result)
        body["messages"].append({"role": "tool", "tool_call_id": call_id, "content": content})
    return body


def native_edit(
    body: dict[str, Any],
    path: str,
    new_text: str,
    *,
    old_text: str | None = None,
    success: bool = True,
) -> dict[str, Any]:
    """Append cline 3.x's ``editor`` call on ``path`` and its result (failed when not
    ``success``)."""
    arguments = {"path": path, "new_text": new_text}
    if old_text is not None:
        arguments = {"path": path, "old_text": old_text, "new_text": new_text}
    result = {"query": f"edit:{path}", "result": "ok" if success else "", "success": success}
    return native_call(body, "editor", arguments, result)


def ok(*queries: str) -> list[dict[str, Any]]:
    """A cline 3.x tool result: one successful item per query."""
    return [{"query": query, "result": "done", "success": True} for query in queries]


def xml_call(body: dict[str, Any], text: str, result: str | None = None) -> dict[str, Any]:
    """Append an assistant XML tool call and, unless None, cline 2.18's result message."""
    body["messages"].append({"role": "assistant", "content": text})
    if result is not None:
        message = copy.deepcopy(load("xml_turn2")["messages"][3])
        message["content"][0]["text"] = result
        body["messages"].append(message)
    return body


def set_xml_mode(message: dict[str, Any], mode: str) -> None:
    details = message["content"][-1]
    assert "# Current Mode\nACT MODE" in details["text"]
    details["text"] = details["text"].replace("ACT MODE", mode)
