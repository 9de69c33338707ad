"""``POST /v1/chat/completions`` and ``POST /v1/completions``: parse, decide, relay."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..translate.openai_out import (
    ChatCollector,
    ChatStreamEncoder,
    CompletionCollector,
    CompletionStreamEncoder,
)
from ..wire.openai import ChatCompletionRequest, CompletionRequest, parse_request
from .deps import Authorized, Service, read_json
from .relay import new_id, relay

__all__ = ["router"]

router = APIRouter(dependencies=[Authorized])


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, service: Service) -> Response:
    chat = parse_request(ChatCompletionRequest, await read_json(request))
    decision = service.decide_chat(chat)
    response_id = new_id("chatcmpl")
    return await relay(
        request,
        service.chat(chat, decision),
        decision,
        stream=chat.stream,
        encoder=ChatStreamEncoder(response_id, decision.model, chat.include_usage),
        collector=ChatCollector(),
        response_id=response_id,
    )


@router.post("/v1/completions")
async def completions(request: Request, service: Service) -> Response:
    completion = parse_request(CompletionRequest, await read_json(request))
    decision = service.decide_completion(completion)
    response_id = new_id("cmpl")
    return await relay(
        request,
        service.complete(completion, decision),
        decision,
        stream=completion.stream,
        encoder=CompletionStreamEncoder(response_id, decision.model, completion.include_usage),
        collector=CompletionCollector(),
        response_id=response_id,
    )
