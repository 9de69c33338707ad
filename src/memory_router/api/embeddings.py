"""``POST /v1/embeddings``: the router's own embedder, or any embedding model in Ollama.

``cline-memory-router`` embeds with the model the memory bank uses: all-MiniLM-L6-v2,
in-process (also by that name), unless ``memory.embedder`` names an Ollama model. So an
editor's codebase index works with nothing pulled. Any other name goes to Ollama's
``/api/embed`` (``nomic-embed-text``, ``mxbai-embed-large``...).
"""

from __future__ import annotations

import asyncio
import base64
from array import array
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ..backends.base import Embeds
from ..errors import BackendUnavailable, InvalidRequest, ModelNotFound
from ..memory.service import MemoryService
from ..service import RouterService
from ..tokens import count_tokens
from ..wire.openai import parse_request
from .deps import Authorized, JSONBytes, read_json

__all__ = ["LOCAL_MODEL", "router"]

router = APIRouter(dependencies=[Authorized])

LOCAL_MODEL = "all-MiniLM-L6-v2"


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            texts = [self.input]
        elif all(isinstance(item, str) for item in self.input):
            texts = [str(item) for item in self.input]
        else:
            raise InvalidRequest(
                "input as token ids is not supported (the local models use other tokenizers): "
                "send the text",
                param="input",
            )
        if not texts:
            raise InvalidRequest(
                "input is empty: send a string or a list of strings", param="input"
            )
        if any(not text for text in texts):
            raise InvalidRequest(
                "input holds an empty string: embed only non-empty text", param="input"
            )
        return texts


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(array("f", vector).tobytes()).decode()  # float32, as OpenAI sends


def _hosts_for(service: RouterService, model: str) -> list[Embeds]:
    """The Ollama servers to ask for ``model``: its own host when models.yaml names it, else
    every Ollama the router knows, the main one first."""
    spec = service.spec(model)
    own = service.fleet.backends.get(spec.backend) if spec is not None else None
    if isinstance(own, Embeds):
        return [own]
    hosts = [b for b in service.fleet.backends.values() if isinstance(b, Embeds)]
    return sorted(hosts, key=lambda backend: backend.name != "ollama")


async def _ollama_embed(service: RouterService, model: str, texts: list[str]) -> dict[str, Any]:
    """Ollama's ``/api/embed`` reply from the first host that has ``model`` pulled."""
    hosts = _hosts_for(service, model)
    if not hosts:
        raise ModelNotFound(
            f"embedding model {model!r} would come from Ollama, which is not running here: use "
            f"{service.virtual_model!r} (the router's own {LOCAL_MODEL})",
            param="model",
        )
    if len(hosts) == 1:
        return await hosts[0].embed(model, texts)
    missing: list[str] = []
    down: list[BackendUnavailable] = []
    for backend in hosts:
        try:
            return await backend.embed(model, texts)
        except ModelNotFound:
            missing.append(backend.name)
        except BackendUnavailable as exc:
            down.append(exc)
    if not missing:
        raise down[0]
    silent = f" ({len(down)} more did not answer)" if down else ""
    raise ModelNotFound(
        f"embedding model {model!r} is pulled on none of the Ollama servers "
        f"{', '.join(missing)}{silent}: run `ollama pull {model}` on one of them",
        param="model",
    )


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    """Vectors for one or more texts, in OpenAI's shape."""
    body = parse_request(EmbeddingRequest, await read_json(request))
    texts = body.texts()
    service: RouterService = request.app.state.service
    memory: MemoryService = request.app.state.memory
    own = memory.embedder  # the memory bank's (MiniLM unless memory.embedder says otherwise)
    # The name says which graph runs, and may first measure it: off the event loop.
    own_name = await asyncio.to_thread(lambda: own.name)
    if body.model == service.virtual_model or (
        body.model == LOCAL_MODEL and own_name.startswith(LOCAL_MODEL)
    ):
        vectors = await asyncio.to_thread(own.embed_documents, texts)
        tokens = sum(count_tokens(text) for text in texts)
        name = own_name.split(" (")[0]  # "all-MiniLM-L6-v2 (onnx int8)": the model's name
    else:
        reply = await _ollama_embed(service, body.model, texts)
        vectors = reply.get("embeddings") or []
        tokens = int(reply.get("prompt_eval_count") or 0)
        name = body.model
    if body.dimensions is not None and vectors and body.dimensions != len(vectors[0]):
        raise InvalidRequest(
            f"{name} makes {len(vectors[0])}-dimensional vectors and cannot shorten them: "
            f"leave out dimensions",
            param="dimensions",
        )
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return JSONBytes({"object": "list", "data": data, "model": name, "usage": usage})
