"""``POST /v1/chat/completions`` and ``POST /v1/completions``: parse, decide, relay.

These two are the hot path, so they are plain Starlette endpoints inside the FastAPI app:
FastAPI's per-request dependency resolution costs about as much as everything else the router
does for a request (see docs/benchmarks.md). The middleware and error handlers still apply.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..service import RouterService
from ..translate.openai_out import (
    ChatCollector,
    ChatStreamEncoder,
    CompletionCollector,
    CompletionStreamEncoder,
)
from ..wire.openai import ChatCompletionRequest, CompletionRequest, parse_request
from .deps import check_api_key, read_json
from .relay import new_id, relay

__all__ = ["routes"]


async def chat_completions(request: Request) -> Response:
    await check_api_key(request)
    service: RouterService = request.app.state.service
    chat = parse_request(ChatCompletionRequest, await read_json(request))
    run = await service.open_chat(chat)
    request.app.state.memory.observe(run.decision.workspace)
    response_id = new_id("chatcmpl")
    return await relay(
        request,
        run,
        stream=chat.stream,
        encoder=lambda model: ChatStreamEncoder(response_id, model, chat.include_usage),
        collector=ChatCollector(),
        response_id=response_id,
        grace_s=service.routing.first_event_grace_s,
        keepalive_s=service.routing.keepalive_s,
    )


async def completions(request: Request) -> Response:
    await check_api_key(request)
    service: RouterService = request.app.state.service
    completion = parse_request(CompletionRequest, await read_json(request))
    run = service.open_completion(completion)
    response_id = new_id("cmpl")
    return await relay(
        request,
        run,
        stream=completion.stream,
        encoder=lambda model: CompletionStreamEncoder(response_id, model, completion.include_usage),
        collector=CompletionCollector(),
        response_id=response_id,
        grace_s=service.routing.first_event_grace_s,
        keepalive_s=service.routing.keepalive_s,
    )


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
]
