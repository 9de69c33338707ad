"""``POST /v1/memory/search`` and ``GET /v1/memory/status``; or, with the memory bank off,
an error for every ``/v1/memory/*`` (``disabled_router``)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import AfterValidator, BaseModel, Field
from starlette.responses import Response

from ..errors import MemoryDisabled
from ..memory.service import MemoryService
from ..wire.openai import parse_request
from .deps import Authorized, JSONBytes, read_json

__all__ = ["disabled_router", "router"]

router = APIRouter(dependencies=[Authorized])
disabled_router = APIRouter(dependencies=[Authorized])


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("a path cannot hold a NUL byte")
    return text


PathText = Annotated[str, AfterValidator(_no_nul)]
"""A path a client sends: refused (400 naming the field) if it holds a NUL byte, which no
file system accepts and which ``Path.resolve`` would raise on."""


class SearchRequest(BaseModel):
    query: str = Field(min_length=1)
    workspace: PathText | None = None
    k: int = Field(5, ge=1, le=100)


def _memory(request: Request) -> MemoryService:
    memory: MemoryService = request.app.state.memory
    return memory


@router.post("/v1/memory/search")
async def search(request: Request) -> Response:
    """Memory-bank chunks nearest to a query, best first: in one workspace, which must lie
    under an allowed root (403), or across the banks under those roots."""
    body = parse_request(SearchRequest, await read_json(request))
    memory = _memory(request)
    workspace = memory.allowed_workspace(body.workspace) if body.workspace else None
    hits = await asyncio.to_thread(
        memory.search, body.query, workspace, body.k, within=memory.allowed_roots()
    )
    data: list[dict[str, Any]] = [
        {**asdict(hit), "heading_path": list(hit.heading_path), "rank": rank}
        for rank, hit in enumerate(hits, start=1)
    ]
    return JSONBytes({"object": "list", "model": memory.embedder.name, "data": data})


@router.get("/v1/memory/status")
async def status(request: Request) -> Response:
    """Known banks with their files, chunks and last sync; the embedding model."""
    return JSONBytes(await asyncio.to_thread(_memory(request).status))


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@disabled_router.api_route("/v1/memory", methods=_METHODS, include_in_schema=False)
@disabled_router.api_route("/v1/memory/{rest:path}", methods=_METHODS, include_in_schema=False)
async def disabled(request: Request) -> Response:
    """Every memory endpoint while the memory bank is off: it opens no store, writes nothing."""
    raise MemoryDisabled(
        f"{request.url.path} is off: the memory bank is disabled in this router's "
        "configuration; set memory.enabled: true in server_config.yaml to turn it on"
    )
