"""Model listing, health and readiness, and the routing explanation."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..domain import TASK_CLASSES
from ..errors import ModelNotFound
from ..fleet import Fleet
from ..metrics import CONTENT_TYPE
from ..wire.openai import ChatCompletionRequest, parse_request
from .deps import Authorized, JSONBytes, Service, read_json

__all__ = ["model_list", "router"]

router = APIRouter()


def model_list(virtual_model: str, fleet: Fleet) -> list[dict[str, Any]]:
    """The OpenAI model list: the virtual model first, then every concrete one."""
    sizes = [spec.num_ctx for spec in fleet.catalog]
    items = [
        {
            "id": virtual_model,
            "object": "model",
            "created": 0,
            "owned_by": "cline-memory-router",
            # The window a client should use: a conversation within the smallest num_ctx
            # can go to any model the router chooses for its task; a longer one only to
            # the models whose context holds it (max_context_length is the largest).
            "context_length": min(sizes, default=0),
            "max_context_length": max(sizes, default=0),
            "description": "Routes each request to the best local model for the task. "
            "Set your client's context window to context_length.",
        }
    ]
    known = fleet.capabilities()
    listed: set[str] = set()
    for spec in fleet.catalog:
        if spec.name in listed:
            continue  # a pool's other hosts: one model
        listed.add(spec.name)
        item = {
            "id": spec.name,
            "object": "model",
            "created": 0,
            "owned_by": spec.backend,
            "context_length": spec.num_ctx,
            "max_context_length": spec.context_window,
            "role": spec.role,
            "task_fit": {task: spec.task_fit[task] for task in TASK_CLASSES},
        }
        if spec.name in known:  # as Ollama reports them, or as models.yaml states them
            item["capabilities"] = sorted(known[spec.name])
        items.append(item)
    return items


@router.get("/v1/models", dependencies=[Authorized])
async def list_models(service: Service) -> Response:
    return JSONBytes({"object": "list", "data": model_list(service.virtual_model, service.fleet)})


@router.get("/v1/models/{model_id:path}", dependencies=[Authorized])
async def get_model(model_id: str, service: Service) -> Response:
    for item in model_list(service.virtual_model, service.fleet):
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
        "failing": service.fleet.health.snapshot(),
    }
    return JSONBytes(body, status_code=200 if readiness.status in ("ready", "degraded") else 503)


@router.post("/v1/route/explain", dependencies=[Authorized])
async def explain(request: Request, service: Service) -> Response:
    """The decision for a chat request, with every reason, without calling a model."""
    chat = parse_request(ChatCompletionRequest, await read_json(request))
    if chat.model == service.virtual_model:
        await service.routing_ready()
    return JSONBytes(service.decide_chat(chat, remember=False).as_dict())
