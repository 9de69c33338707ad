"""``POST /v1/memory/search`` and ``GET /v1/memory/status``."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from ..memory.service import MemoryService
from ..wire.openai import parse_request
from .deps import Authorized, read_json
from .relay import JSONBytes

__all__ = ["router"]

router = APIRouter(dependencies=[Authorized])


class SearchRequest(BaseModel):
    query: str = Field(min_length=1)
    workspace: str | None = None
    k: int = Field(5, ge=1, le=100)


def _memory(request: Request) -> MemoryService:
    memory: MemoryService = request.app.state.memory
    return memory


@router.post("/v1/memory/search")
async def search(request: Request) -> Response:
    """Memory-bank chunks nearest to a query, best first."""
    body = parse_request(SearchRequest, await read_json(request))
    memory = _memory(request)
    workspace = Path(body.workspace) if body.workspace else None
    hits = await asyncio.to_thread(memory.search, body.query, workspace, body.k)
    data: list[dict[str, Any]] = [
        {**asdict(hit), "heading_path": list(hit.heading_path), "rank": rank}
        for rank, hit in enumerate(hits, start=1)
    ]
    return JSONBytes({"object": "list", "model": memory.embedder.name, "data": data})


@router.get("/v1/memory/status")
async def status(request: Request) -> Response:
    """Known banks with their files, chunks and last sync; the embedding model."""
    return JSONBytes(await asyncio.to_thread(_memory(request).status))
