"""Any OpenAI-compatible upstream: llama.cpp's server, vLLM, LM Studio, a cloud endpoint."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson

from ..errors import BackendError, RouterError
from ..events import Event
from ..settings import OpenAIUpstream
from ..sse import SSEDecoder
from ..translate import openai_upstream as wire
from ._http import HttpClient
from .base import BackendModel, BackendStatus, ChatCall, CompletionCall, LoadedModel

__all__ = ["OpenAIBackend"]


class OpenAIBackend:
    """A backend speaking the OpenAI chat and completions API over SSE."""

    kind = "openai"

    def __init__(self, settings: OpenAIUpstream, *, hint: str = "is the server running?") -> None:
        self.name = settings.name
        self.base_url = settings.base_url.rstrip("/")
        headers = {}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._http = HttpClient(
            self.base_url,
            label=f"upstream {settings.name!r}",
            hint=hint,
            on_error=wire.error_for_status,
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            headers=headers,
        )

    async def _run(self, path: str, body: dict[str, Any]) -> AsyncGenerator[Event, None]:
        decoder = wire.ChunkDecoder()
        model = body["model"]
        if not body["stream"]:
            reply = await self._http.post_json(path, body, model=model)
            if not isinstance(reply, dict):
                raise BackendError(f"the upstream sent an unexpected reply: {str(reply)[:200]}")
            for event in decoder.feed(reply):
                yield event
            yield decoder.finish()
            return
        sse = SSEDecoder()
        done = False
        async with aclosing(self._http.stream(path, body, model=model)) as chunks:
            async for chunk in chunks:
                for data in sse.feed(chunk):
                    if data.strip() == "[DONE]":
                        done = True
                        continue
                    for event in decoder.feed(_parse(data)):
                        yield event
        for data in sse.flush():
            if data.strip() == "[DONE]":
                done = True
            else:
                for event in decoder.feed(_parse(data)):
                    yield event
        if not done:
            raise BackendError("the upstream closed the stream before the answer was done")
        yield decoder.finish()

    def chat(self, call: ChatCall) -> AsyncGenerator[Event, None]:
        """Run ``/chat/completions``, streamed or not, as events."""
        return self._run("/chat/completions", wire.chat_body(call))

    def complete(self, call: CompletionCall) -> AsyncGenerator[Event, None]:
        """Run ``/completions`` on a raw prompt, as events."""
        return self._run("/completions", wire.completion_body(call))

    async def list_models(self) -> list[BackendModel]:
        reply = await self._http.get_json("/models", timeout=10)
        models: list[BackendModel] = []
        for item in reply.get("data", []) if isinstance(reply, dict) else []:
            meta = item.get("meta") or {}
            models.append(BackendModel(name=item["id"], context_length=meta.get("n_ctx")))
        return models

    async def loaded_models(self) -> list[LoadedModel]:
        return []

    async def status(self, timeout: float = 2.0) -> BackendStatus:
        try:
            await self._http.get_json("/models", timeout=timeout)
        except RouterError as exc:
            return BackendStatus(self.name, self.kind, answers=False, detail=exc.message)
        return BackendStatus(self.name, self.kind, answers=True)

    async def aclose(self) -> None:
        await self._http.aclose()


def _parse(data: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BackendError(f"the upstream sent an event that is not JSON: {data[:200]!r}") from None
    if not isinstance(obj, dict):
        raise BackendError(f"the upstream sent an unexpected event: {data[:200]!r}")
    return obj
