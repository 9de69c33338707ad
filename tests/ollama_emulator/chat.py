"""POST /api/chat and POST /api/generate: validation, load/unload requests, scripted replies.

A reply is planned first (pieces of thinking and content, tool calls, done_reason), then
rendered as NDJSON lines (``stream`` true, the default) or as one object. A client that goes
away mid-reply (the handler is cancelled, or a write fails) is recorded as cancelled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .config import CancelledChat, Script, keep_alive_or_default
from .state import BODY, EmulatorContext, NoFitError, Runner

__all__ = ["GenerationEndpoints", "error_response", "json_reply", "now_rfc3339"]


def now_rfc3339() -> str:
    """The current time as Ollama writes ``created_at``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def json_reply(obj: Any, status: int = 200) -> web.Response:
    """A JSON response written compactly, as Go's encoder does."""
    return web.json_response(obj, status=status, dumps=_compact)


def error_response(status: int, message: str) -> web.Response:
    """Ollama's native error shape."""
    return json_reply({"error": message}, status=status)


def _dumps(obj: Any) -> bytes:
    return _compact(obj).encode() + b"\n"


# Ollama hands images to its llama-server runner whatever the model; a model without a vision
# projector fails there, after the load, with llama-server's message.
_NO_VISION = (
    "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj"
)


def _has_images(body: dict[str, Any], chat: bool) -> bool:
    if not chat:
        return bool(body.get("images"))
    return any(isinstance(m, dict) and m.get("images") for m in body.get("messages") or [])


async def _runner_error(
    request: web.Request, body: dict[str, Any], message: str
) -> web.StreamResponse:
    """A runner failure before the first token: 500 when not streamed, else an error line."""
    if body.get("stream") is False:
        return error_response(500, message)
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    await resp.write(_dumps({"error": message}))
    await resp.write_eof()
    return resp


def split_text(text: str, chunk_chars: int | None) -> list[str]:
    """Pieces to stream: words with their trailing whitespace, or fixed-size slices."""
    if not text:
        return []
    if chunk_chars:
        return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    return re.findall(r"\s*\S+\s*", text) or [text]


@dataclass
class _Plan:
    pieces: list[tuple[str, str]]
    """(field, text): field is "thinking" or "content"."""
    tool_calls: list[dict[str, Any]]
    done_reason: str
    prompt_eval_count: int
    delay: float


class _ClientGone(Exception):
    """A write to the client failed."""


class GenerationEndpoints:
    """Handlers for /api/chat and /api/generate over one EmulatorContext."""

    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /api/chat."""
        return await self._handle(request, chat=True)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        """POST /api/generate."""
        return await self._handle(request, chat=False)

    async def _handle(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        started = time.perf_counter()
        body = request.get(BODY)
        if not isinstance(body, dict):
            return error_response(400, "invalid request body: expected a JSON object")
        model = body.get("model")
        if not model or not isinstance(model, str):
            return error_response(400, "model is required")
        spec = self.ctx.config.models.get(model)
        if spec is None:
            return error_response(404, f'model "{model}" not found, try pulling it first')
        if chat and body.get("tools") and "tools" not in spec.capabilities:
            return error_response(400, f'"{model}" does not support tools')
        if _truthy_think(body.get("think")) and "thinking" not in spec.capabilities:
            return error_response(400, f'"{model}" does not support thinking')
        if not chat and body.get("suffix") and "insert" not in spec.capabilities:
            return error_response(400, f'"{model}" does not support insert')
        config = self.ctx.config
        try:
            keep_alive = keep_alive_or_default(body.get("keep_alive"), config.default_keep_alive)
        except ValueError as exc:
            return error_response(400, str(exc))
        options = body.get("options") or {}
        num_ctx = int(options.get("num_ctx") or self.ctx.config.default_num_ctx)
        num_ctx = max(min(num_ctx, spec.context_length), 1)
        cpu = options.get("num_gpu") == 0  # no layers on the GPU: the model runs on the CPU
        empty = not body.get("messages") if chat else not body.get("prompt")
        if empty and keep_alive == 0:
            self.ctx.recorder.add_unload_request(model, self.ctx.scheduler.in_flight(model))
            self.ctx.scheduler.unload(model)
            return json_reply(_empty_reply(model, "unload", chat))
        script = None if empty else self._next_script(model)
        if script is not None and script.status:
            return error_response(script.status, script.error or "scripted error")
        if self.ctx.active >= self.ctx.config.max_queue:
            return error_response(
                503, "server busy, please try again.  maximum pending requests exceeded"
            )
        self.ctx.active += 1
        try:
            return await self._run(request, body, script, chat, num_ctx, keep_alive, started, cpu)
        finally:
            self.ctx.active -= 1

    def _capabilities(self, model: str) -> list[str]:
        return self.ctx.config.models[model].capabilities

    def _next_script(self, model: str) -> Script:
        try:
            return self.ctx.scripts.popleft()
        except IndexError:
            default = self.ctx.config.default_content
            return Script(content=default or f"Hello from {model}. How can I help you today?")

    async def _run(
        self,
        request: web.Request,
        body: dict[str, Any],
        script: Script | None,
        chat: bool,
        num_ctx: int,
        keep_alive: float,
        started: float,
        cpu: bool = False,
    ) -> web.StreamResponse:
        model: str = body["model"]
        try:
            lease = await self.ctx.scheduler.acquire(model, num_ctx, keep_alive, cpu)
        except NoFitError as exc:
            return error_response(500, str(exc))
        except asyncio.CancelledError:
            self._cancelled(request, model, "queue", 0)
            raise
        runner = lease.runner
        try:
            load_ns = _ns(time.perf_counter() - started)
            if script is None:
                return json_reply(_empty_reply(model, "load", chat))
            if _has_images(body, chat) and "vision" not in self._capabilities(model):
                return await _runner_error(request, body, _NO_VISION)
            plan = self._plan(body, script, chat)
            return await self._reply(request, body, runner, plan, script, chat, started, load_ns)
        finally:
            self.ctx.scheduler.release(runner)

    def _plan(self, body: dict[str, Any], script: Script, chat: bool) -> _Plan:
        pieces: list[tuple[str, str]] = []
        if _truthy_think(body.get("think")) and script.thinking:
            pieces += [("thinking", p) for p in split_text(script.thinking, script.chunk_chars)]
        pieces += [("content", p) for p in split_text(script.content, script.chunk_chars)]
        limit = (body.get("options") or {}).get("num_predict")
        truncated = isinstance(limit, int) and 0 < limit < len(pieces)
        if truncated:
            pieces = pieces[:limit]
        tool_calls = [] if truncated or not chat else self._tool_calls(script)
        if script.prompt_eval_count is not None:
            prompt_count = script.prompt_eval_count
        elif chat:
            prompt_count = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4
        else:
            prompt_count = (len(str(body.get("system") or "")) + len(str(body["prompt"]))) // 4
        delay = script.token_delay_s
        if delay is None:
            delay = self.ctx.config.token_delay_s
        return _Plan(
            pieces=pieces,
            tool_calls=tool_calls,
            done_reason=script.done_reason or ("length" if truncated else "stop"),
            prompt_eval_count=max(prompt_count, 1),
            delay=delay,
        )

    def _tool_calls(self, script: Script) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []
        for index, call in enumerate(script.tool_calls or []):
            fn = call.get("function", call)
            arguments = fn.get("arguments") or {}
            if isinstance(arguments, str):
                arguments = json.loads(arguments)
            if not script.tool_call_ids:
                calls.append({"function": {"name": fn["name"], "arguments": arguments}})
                continue
            self.ctx.tool_call_seq += 1
            tag = hashlib.sha256(f"{self.ctx.tool_call_seq}:{fn['name']}".encode()).hexdigest()
            calls.append(
                {
                    "id": call.get("id") or f"call_{tag[:8]}",
                    "function": {"index": index, "name": fn["name"], "arguments": arguments},
                }
            )
        return calls

    async def _reply(
        self,
        request: web.Request,
        body: dict[str, Any],
        runner: Runner,
        plan: _Plan,
        script: Script,
        chat: bool,
        started: float,
        load_ns: int,
    ) -> web.StreamResponse:
        model: str = body["model"]
        stream = body.get("stream", True) is not False
        sent = 0
        resp: web.StreamResponse | None = None
        try:
            async with runner.slots:
                gen_start = time.perf_counter()
                first_at = gen_start
                if stream:
                    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
                    await resp.prepare(request)
                for index, (field_name, text) in enumerate(plan.pieces):
                    if await self._interrupted(script, sent, resp):
                        return resp or error_response(500, script.error_message)
                    if plan.delay:
                        await asyncio.sleep(plan.delay)
                    if index == 0:
                        first_at = time.perf_counter()
                    if resp is not None:
                        await _write(resp, _chunk(model, chat, {field_name: text}))
                    sent += 1
                if await self._interrupted(script, sent, resp):
                    return resp or error_response(500, script.error_message)
                if plan.tool_calls and resp is not None:
                    await _write(resp, _chunk(model, chat, {"tool_calls": plan.tool_calls}))
                end = time.perf_counter()
                stats = {
                    "total_duration": _ns(end - started),
                    "load_duration": load_ns,
                    "prompt_eval_count": plan.prompt_eval_count,
                    "prompt_eval_duration": max(_ns(first_at - gen_start), 1),
                    "eval_count": len(plan.pieces) + 10 * len(plan.tool_calls),
                    "eval_duration": max(_ns(end - first_at), 1) if plan.pieces else 0,
                }
                final = _final(model, chat, plan, stream, stats)
                if resp is None:
                    return json_reply(final)
                await _write(resp, final)
                await resp.write_eof()
                return resp
        except asyncio.CancelledError:
            self._cancelled(request, model, "generate", sent)
            raise
        except _ClientGone:
            self._cancelled(request, model, "generate", sent)
            assert resp is not None
            return resp

    async def _interrupted(
        self, script: Script, sent: int, resp: web.StreamResponse | None
    ) -> bool:
        """Apply the script's stall/error at this chunk count; True when the reply must end."""
        if script.stall_after is not None and sent >= script.stall_after:
            await self.ctx.shutdown.wait()  # hang until the client leaves or the emulator stops
            return True
        if script.error_after is not None and sent >= script.error_after:
            if resp is not None:
                await _write(resp, {"error": script.error_message})
                await resp.write_eof()
            return True
        return False

    def _cancelled(self, request: web.Request, model: str, phase: str, sent: int) -> None:
        self.ctx.recorder.add_cancelled(CancelledChat(request.path, model, phase, sent))


async def _write(resp: web.StreamResponse, obj: dict[str, Any]) -> None:
    try:
        await resp.write(_dumps(obj))
    except ConnectionError as exc:  # aiohttp's ClientConnectionResetError included
        raise _ClientGone() from exc


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _truthy_think(value: Any) -> bool:
    return value not in (None, False, "", "false", "none")


def _chunk(model: str, chat: bool, fields: dict[str, Any]) -> dict[str, Any]:
    if chat:
        message = {"role": "assistant", "content": ""} | fields
        return {"model": model, "created_at": now_rfc3339(), "message": message, "done": False}
    out = {"model": model, "created_at": now_rfc3339(), "response": fields.get("content", "")}
    if "thinking" in fields:
        out["thinking"] = fields["thinking"]
    return out | {"done": False}


def _final(
    model: str, chat: bool, plan: _Plan, stream: bool, stats: dict[str, int]
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if not stream:  # one object carries the whole message
        for name in ("thinking", "content"):
            text = "".join(t for f, t in plan.pieces if f == name)
            if text or name == "content":
                fields[name] = text
        if plan.tool_calls:
            fields["tool_calls"] = plan.tool_calls
    out = _chunk(model, chat, fields)
    out["done"] = True
    out["done_reason"] = plan.done_reason
    if not chat:
        out["context"] = list(range(1, plan.prompt_eval_count + len(plan.pieces) + 1))[:64]
    return out | {k: v for k, v in stats.items() if v}


def _empty_reply(model: str, reason: str, chat: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    return out | {"done_reason": reason, "done": True}
