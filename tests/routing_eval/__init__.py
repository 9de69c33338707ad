"""A labelled evaluation set of routing requests, in the shapes Cline and other clients send.

``load_cases()`` returns every case from ``cases/*.yaml`` expanded by ``build.py`` into a
complete ``/v1/chat/completions`` body, labelled with the task class a human would give the
turn: ``memory``, ``implement``, ``analyze``, ``chat`` or ``meta``.
``long_cline_request(tokens)`` builds one realistic native-style implementation request of
about ``tokens`` tokens, for timing routing decisions on long inputs.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from memory_router.tokens import count_tokens

from .build import (
    LABELS,
    MODEL,
    STYLES,
    EvalCase,
    Json,
    Workspace,
    build_all,
    compact,
    native_system,
    native_tools,
    numbered,
    repo_text,
)

__all__ = [
    "LABELS",
    "STYLES",
    "EvalCase",
    "content_text",
    "is_multi_turn",
    "load_cases",
    "long_cline_request",
    "request_tokens",
    "typed_texts",
]


@cache
def _cases() -> tuple[EvalCase, ...]:
    return tuple(build_all())


def load_cases() -> list[EvalCase]:
    """Every labelled case: built once per process, each call gets its own copy of the bodies."""
    return copy.deepcopy(list(_cases()))


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def message_text(message: Json) -> str:
    """All the text a model reads in one message: content parts and tool-call arguments."""
    pieces = [content_text(message.get("content"))]
    for call in message.get("tool_calls") or []:
        pieces.append(call["function"]["name"])
        pieces.append(call["function"]["arguments"])
    return "\n".join(pieces)


def request_tokens(body: Json) -> int:
    """cl100k tokens of every message's text plus the JSON of the tool definitions."""
    total = sum(count_tokens(message_text(m)) for m in body["messages"])
    if body.get("tools"):
        total += count_tokens(json.dumps(body["tools"]))
    return total


def typed_texts(case: EvalCase) -> list[str]:
    """What people typed: each user message, without Cline's environment details."""
    return [
        content_text(m["content"]).split("<environment_details>")[0]
        for m in case.body["messages"]
        if m["role"] == "user"
    ]


def is_multi_turn(body: Json) -> bool:
    """True when the conversation already has an assistant turn."""
    return any(m["role"] == "assistant" for m in body["messages"])


# Files of this repository an agent fixing the relay would read, in the order it reads them.
_LONG_READS = (
    "src/memory_router/api/relay.py",
    "src/memory_router/api/streaming.py",
    "src/memory_router/sse.py",
    "src/memory_router/translate/openai_out.py",
    "src/memory_router/translate/ollama.py",
    "src/memory_router/backends/ollama.py",
    "src/memory_router/backends/_http.py",
    "src/memory_router/service.py",
    "src/memory_router/wire/openai.py",
    "src/memory_router/errors.py",
    "tests/test_api_ollama.py",
    "tests/test_api_errors.py",
    "src/memory_router/settings.py",
    "src/memory_router/memory/store.py",
    "src/memory_router/memory/indexer.py",
    "tests/ollama_emulator/chat.py",
    "tests/ollama_emulator/state.py",
    "tests/test_ollama_emulator.py",
)
_LONG_WS = Workspace(
    name="router", path="/home/sam/src/cline-memory-router", memory_bank=False, listing="", files={}
)
_LONG_TASK = (
    "When Cline streams through the router and the Ollama model stops because it hit "
    "num_predict, the final chunk has finish_reason 'stop' instead of 'length', so Cline thinks "
    "the answer is complete. Find where the finish reason is mapped and fix it, with a test."
)
_PYTEST_CMD = "python -m pytest -q tests/test_api_ollama.py tests/test_api_errors.py"
_PYTEST_OUT = """\
============================= test session starts ==============================
collected 41 items

tests/test_api_ollama.py ..............F..........                       [ 60%]
tests/test_api_errors.py ................                                [100%]

=================================== FAILURES ===================================
______________________ test_stream_reports_length_finish _______________________
    async def test_stream_reports_length_finish(router, emulator):
        emulator.script(done_reason="length", tokens=["a", "b"])
        events = await collect(router, stream=True)
>       assert events[-2]["choices"][0]["finish_reason"] == "length"
E       AssertionError: assert 'stop' == 'length'
=========================== short test summary info ============================
FAILED tests/test_api_ollama.py::test_stream_reports_length_finish - Assertion...
1 failed, 40 passed in 3.92s"""


def _read_message(cid: str, path: str, text: str, cut: bool) -> list[dict[str, Any]]:
    abs_path = f"{_LONG_WS.path}/{path}"
    spec: dict[str, Any] = {"path": abs_path}
    if cut:  # a ranged read of the first lines
        spec.update(start_line=1, end_line=text.count("\n") + 1)
    call = {
        "id": cid,
        "type": "function",
        "function": {"name": "read_files", "arguments": compact({"files": [spec]})},
    }
    result = [{"query": abs_path, "result": numbered(text), "success": True}]
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": cid, "content": compact(result)},
    ]


def long_cline_request(tokens: int = 20000) -> dict[str, Any]:
    """A native-style Cline 3.0.65 request, an implementation tool loop in progress, of about
    ``tokens`` tokens (``request_tokens``): the agent has run the failing test and is reading
    the relay's source files one after another; the last read is cut to fit."""
    run_id = "call_run_pytest_0001"
    run_args = compact({"commands": [_PYTEST_CMD]})
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": native_system("act", _LONG_WS)},
        {"role": "user", "content": _LONG_TASK},
        {
            "role": "assistant",
            "content": "Plan: reproduce with the streaming test, then trace finish_reason "
            "from the Ollama backend through the translator to the SSE writer.",
            "tool_calls": [
                {
                    "id": run_id,
                    "type": "function",
                    "function": {"name": "run_commands", "arguments": run_args},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": run_id,
            "content": compact([{"query": _PYTEST_CMD, "result": _PYTEST_OUT, "success": False}]),
        },
    ]
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": messages,
        "tools": native_tools("act"),
        "tool_choice": "auto",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    total = request_tokens(body)
    n = 0
    while total < tokens:
        path = _LONG_READS[n % len(_LONG_READS)]
        lines = repo_text(path).rstrip("\n").split("\n")
        n += 1
        pair = _read_message(f"call_read_{n:04d}", path, "\n".join(lines), cut=False)
        cost = request_tokens({"messages": pair})
        if total + cost > tokens:
            # Fit: binary-search the number of lines of this file that still fits.
            low, high = 1, len(lines)
            while low < high:
                mid = (low + high + 1) // 2
                trial = _read_message("x", path, "\n".join(lines[:mid]), cut=True)
                if total + request_tokens({"messages": trial}) <= tokens:
                    low = mid
                else:
                    high = mid - 1
            pair = _read_message(f"call_read_{n:04d}", path, "\n".join(lines[:low]), cut=True)
            messages.extend(pair)
            break
        messages.extend(pair)
        total = request_tokens(body)
    return body
