"""How a routed answer leaves its session: working, or waiting for its user."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from memory_router.backends.base import ChatCall
from memory_router.errors import BackendUnavailable
from memory_router.events import Event, Finish, TextDelta, ToolCallDelta
from memory_router.pipeline import Run
from memory_router.routing.decision import Decision
from memory_router.routing.engine import session_keys
from memory_router.service import RouterService
from memory_router.settings import FailoverSettings, load_settings
from memory_router.wire.openai import ChatCompletionRequest

REPO = Path(__file__).resolve().parents[2]
CODER = "qwen2.5-coder:32b"
EDIT = ToolCallDelta(index=0, id="call_1", name="editor", arguments='{"path": "a.py"}')


class Answers:
    """A backend that answers each chat with the next scripted events (an exception raises)."""

    kind = "ollama"
    name = "ollama"

    def __init__(self) -> None:
        self.answers: list[list[Event | Exception]] = []

    async def chat(self, call: ChatCall) -> AsyncGenerator[Event, None]:
        for item in self.answers.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


def run_of(service: RouterService, request: ChatCompletionRequest, decision: Decision) -> Run:
    """The request's run as decided; a failure reaches the caller (no retry, no fallback:
    the backend here answers one scripted turn per call)."""
    service.routing = service.routing.model_copy(
        update={"failover": FailoverSettings(retries=0, fallback=False)}
    )
    return Run(service, decision, lambda d: ChatCall(d.model, request.messages, stream=True))


def cline(workspace: str, task: str, *later: str) -> ChatCompletionRequest:
    system = f"You are Cline.\nCurrent Working Directory: {workspace}\n"
    tools: list[dict[str, Any]] = [
        {"type": "function", "function": {"name": "editor", "parameters": {"type": "object"}}}
    ]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": task}]
    for text in later:
        messages += [
            {"role": "assistant", "content": "Working on it."},
            {"role": "user", "content": text},
        ]
    return ChatCompletionRequest.model_validate(
        {"model": "cline-memory-router", "messages": messages, "tools": tools}
    )


SUMMARY = (
    "Your task is to create a detailed summary of the conversation so far, paying close "
    "attention to the user's explicit requests and your previous actions."
)


def test_the_answer_decides_whether_a_session_still_works_alongside() -> None:
    backend = Answers()
    service = RouterService(load_settings(REPO / "config"), {"ollama": backend})  # type: ignore[dict-item]
    fix = cline("/src/a", "Refactor app/billing.py to use Decimal and fix the failing test")

    async def turn(
        answer: list[Event | Exception],
        leave: int | None = None,
        request: ChatCompletionRequest = fix,
    ) -> None:
        backend.answers.append(answer)
        decision = service.decide_chat(request)
        # One task: each of its requests opens as ``fix`` does.
        assert decision.session == session_keys(request)[0]
        assert session_keys(request)[1] == session_keys(fix)[0]
        run = run_of(service, request, decision)
        events = run.events()
        try:
            seen = 0
            async for _ in events:
                seen += 1
                if seen == leave:
                    break  # the client went away mid-answer
        except BackendUnavailable:
            pass
        finally:
            await events.aclose()
            run.close(gone=leave is not None)

    def claims() -> dict[str, Any]:
        return service.engine.contested("/src/b", "another")

    async def main() -> None:
        await turn([TextDelta("Editing."), EDIT, Finish("tool_calls")])
        assert CODER in claims()  # it called a tool Cline runs: back in a moment
        # Housekeeping in the same task (Cline condensing it) answers in text: still working.
        condense = cline("/src/a", fix.messages[1].text(), SUMMARY)
        assert service.decide_chat(condense, remember=False).task == "meta"
        await turn([TextDelta("## Summary"), Finish("stop")], request=condense)
        assert CODER in claims()
        await turn([TextDelta("Done: the test passes."), Finish("stop")])
        assert claims() == {}  # its result waits for the user
        await turn([BackendUnavailable("Ollama is not answering", retry_after=1)])
        assert CODER in claims()  # Cline retries a failed request by itself
        await turn([TextDelta("Editing."), TextDelta(" now"), EDIT, Finish("tool_calls")], 1)
        assert claims() == {}  # the user stopped the task before any tool call
        await turn([EDIT, TextDelta("And then I will..."), Finish("tool_calls")], 1)
        assert CODER in claims()  # the client stopped the stream at the call: it runs the tool

    asyncio.run(main())


def test_a_compaction_that_kept_an_answer_continues_the_session_that_got_it() -> None:
    """The tool call's id in the answer identifies it when cline sends it back compacted."""
    backend = Answers()
    service = RouterService(load_settings(REPO / "config"), {"ollama": backend})  # type: ignore[dict-item]
    fix = cline("/src/a", "Refactor app/billing.py to use Decimal and fix the failing test")
    other = cline("/src/a", "Add a --force flag to the sync command")

    async def answer(request: ChatCompletionRequest, call_id: str) -> str | None:
        edit = ToolCallDelta(index=0, id=call_id, name="editor", arguments="{}")
        backend.answers.append([edit, Finish("tool_calls")])
        decision = service.decide_chat(request)
        run = run_of(service, request, decision)
        async with aclosing(run.events()) as events:
            async for _ in events:
                pass
        run.close()
        return decision.session

    async def main() -> None:
        first = await answer(fix, "call_fix_1")
        await answer(other, "call_other_1")  # a second window, working, and the latest
        kept = [
            {"role": "user", "content": "Context summary:\n\n## Goal\nUse Decimal in billing."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_fix_1",
                        "type": "function",
                        "function": {"name": "editor", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_fix_1", "content": "Edited app/billing.py"},
        ]
        compacted = ChatCompletionRequest.model_validate(
            {"model": "cline-memory-router", "messages": [fix.messages[0].model_dump(), *kept]}
        )
        decision = service.decide_chat(compacted, remember=False)
        assert decision.signals["continues"] == first

    asyncio.run(main())
