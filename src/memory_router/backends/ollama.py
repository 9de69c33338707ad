"""Ollama through its native API (``/api/chat``, ``/api/ps``, ``/api/show``, ``/api/tags``).

The native API, not Ollama's ``/v1`` layer: only the native one takes ``options.num_ctx``,
``keep_alive`` and ``think``, and the ``/v1`` layer forces temperature and top_p to 1.0 when
the client omits them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson

from ..errors import BackendError, RouterError
from ..events import Event, Finish
from ..settings import OllamaSettings
from ..translate import ollama as wire
from ._http import HttpClient
from .base import BackendModel, BackendStatus, ChatCall, CompletionCall, LoadedModel

__all__ = ["OllamaBackend"]

_HINT = "is Ollama running? Start it with `ollama serve`, or set OLLAMA_HOST"


class OllamaBackend:
    """A backend speaking Ollama's native API."""

    kind = "ollama"

    def __init__(self, settings: OllamaSettings, name: str = "ollama") -> None:
        self.name = name
        self.base_url = settings.base_url
        self._http = HttpClient(
            settings.base_url,
            label="Ollama",
            hint=_HINT,
            on_error=self._error,
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
        )

    @staticmethod
    def _error(status: int, body: Any, model: str | None) -> RouterError:
        message = body.get("error", body) if isinstance(body, dict) else body
        return wire.error_for_status(status, str(message), model)

    async def _run(
        self, path: str, body: dict[str, Any], stream: bool
    ) -> AsyncGenerator[Event, None]:
        decoder = wire.ChatDecoder()
        if not stream:
            reply = await self._http.post_json(path, body, model=body["model"])
            if not isinstance(reply, dict):
                raise BackendError(f"Ollama sent an unexpected reply: {str(reply)[:200]}")
            for event in decoder.feed(reply):
                yield event
            return
        # NDJSON: split on newline bytes (a newline byte never occurs inside a UTF-8 sequence,
        # so no text decoding is needed before orjson parses each line).
        pending = b""
        finished = False
        async with aclosing(self._http.stream(path, body, model=body["model"])) as chunks:
            async for chunk in chunks:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        for event in decoder.feed(_parse_line(line)):
                            finished = finished or isinstance(event, Finish)
                            yield event
        if pending.strip():
            for event in decoder.feed(_parse_line(pending)):
                finished = finished or isinstance(event, Finish)
                yield event
        if not finished:
            raise BackendError("Ollama closed the stream before the answer was done")

    def chat(self, call: ChatCall) -> AsyncGenerator[Event, None]:
        """Run ``/api/chat``, streamed or not, as events."""
        return self._run("/api/chat", wire.chat_body(call), call.stream)

    def complete(self, call: CompletionCall) -> AsyncGenerator[Event, None]:
        """Run ``/api/generate`` on a raw prompt, as events."""
        return self._run("/api/generate", wire.generate_body(call), call.stream)

    async def list_models(self) -> list[BackendModel]:
        tags = await self._http.get_json("/api/tags", timeout=10)
        return [
            BackendModel(name=item["name"], size_bytes=item.get("size"))
            for item in tags.get("models", [])
        ]

    async def loaded_models(self) -> list[LoadedModel]:
        ps = await self._http.get_json("/api/ps", timeout=10)
        return [
            LoadedModel(
                name=item["name"],
                size_bytes=int(item.get("size", 0)),
                size_vram_bytes=int(item.get("size_vram", 0)),
                context_length=item.get("context_length"),
                expires_at=item.get("expires_at"),
            )
            for item in ps.get("models", [])
        ]

    async def show(self, model: str) -> dict[str, Any]:
        """``/api/show`` for one model: capabilities, details and ``model_info``."""
        reply = await self._http.post_json("/api/show", {"model": model}, model=model, timeout=10)
        return reply if isinstance(reply, dict) else {}

    async def embed(self, model: str, texts: list[str]) -> dict[str, Any]:
        """``/api/embed``: one vector per text, and ``prompt_eval_count``."""
        body = {"model": model, "input": texts}
        reply = await self._http.post_json("/api/embed", body, model=model)
        return reply if isinstance(reply, dict) else {}

    async def load(self, model: str, num_ctx: int | None, keep_alive: Any) -> dict[str, Any]:
        """Load ``model`` (a chat with no messages only loads it); returns Ollama's reply."""
        body: dict[str, Any] = {"model": model, "messages": [], "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        if num_ctx is not None:
            body["options"] = {"num_ctx": num_ctx}
        reply = await self._http.post_json("/api/chat", body, model=model)
        return reply if isinstance(reply, dict) else {}

    async def unload(self, model: str) -> None:
        """Unload ``model`` now (Ollama waits for its running requests): ``keep_alive: 0``."""
        body = {"model": model, "messages": [], "keep_alive": 0, "stream": False}
        await self._http.post_json("/api/chat", body, model=model, timeout=30)

    async def status(self, timeout: float = 2.0) -> BackendStatus:
        try:
            reply = await self._http.get_json("/api/version", timeout=timeout)
        except RouterError as exc:
            return BackendStatus(self.name, self.kind, answers=False, detail=exc.message)
        version = reply.get("version") if isinstance(reply, dict) else None
        return BackendStatus(self.name, self.kind, answers=True, version=version)

    async def aclose(self) -> None:
        await self._http.aclose()


def _parse_line(line: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise BackendError(f"Ollama sent a line that is not JSON: {line[:200]!r}") from None
    if not isinstance(obj, dict):
        raise BackendError(f"Ollama sent an unexpected line: {line[:200]!r}")
    return obj
