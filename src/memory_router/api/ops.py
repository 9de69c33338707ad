"""Model listing, health and readiness, and the routing explanation."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import ModelNotFound
from ..metrics import CONTENT_TYPE
from ..wire.openai import ChatCompletionRequest, parse_request
from .deps import Authorized, Service, read_json
from .relay import JSONBytes

__all__ = ["router"]

router = APIRouter()


@router.get("/v1/models", dependencies=[Authorized])
async def list_models(service: Service) -> Response:
    return JSONBytes({"object": "list", "data": service.models()})


@router.get("/v1/models/{model_id:path}", dependencies=[Authorized])
async def get_model(model_id: str, service: Service) -> Response:
    for item in service.models():
        if item["id"] == model_id:
            return JSONBytes(item)
    raise ModelNotFound(f"model {model_id!r} is not served here", param="model")


@router.get("/health")
async def health() -> Response:
    """The process is alive (says nothing about the backends)."""
    return JSONBytes({"status": "ok"})


@router.get("/metrics")
async def metrics(service: Service) -> Response:
    """Prometheus metrics: answered requests, tokens, loads, errors; in flight and resident."""
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/ready")
async def ready(service: Service) -> Response:
    """``ready`` (200): a backend answers, every configured model is present and the
    classifier is loaded; ``degraded`` (200): the embedded demo model answers in place of
    Ollama; ``starting`` (503): the classifier is still loading; ``not_ready`` (503)."""
    readiness = await service.readiness()
    body = {
        "status": readiness.status,
        "embedded_fallback": readiness.embedded_fallback,
        "backends": [asdict(status) for status in readiness.backends],
        "missing_models": readiness.missing_models,
        "notes": readiness.notes,
        # Hosts (and host/model pairs) with failures in a row, and whether they cool down.
        "failing": service.health.snapshot(),
    }
    return JSONBytes(body, status_code=200 if readiness.status in ("ready", "degraded") else 503)


@router.post("/v1/route/explain", dependencies=[Authorized])
async def explain(request: Request, service: Service) -> Response:
    """The decision for a chat request, with every reason, without calling a model."""
    chat = parse_request(ChatCompletionRequest, await read_json(request))
    if chat.model == service.virtual_model:
        await service.routing_ready()
    return JSONBytes(service.decide_chat(chat, remember=False).as_dict())
