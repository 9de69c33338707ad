"""GET /, /api/version, /api/tags, /api/ps and POST /api/show, /api/embed, /api/embeddings."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from .chat import error_response, json_reply
from .config import ModelSpec, keep_alive_or_default
from .state import BODY, EmulatorContext, NoFitError

__all__ = ["Routes", "embed_text"]

MODIFIED_AT = "2025-10-01T12:00:00.000000Z"
FILE_TYPES = {"F16": 1, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}
EMBED_DIM = 384
_WORD = re.compile(r"\w+")


def _details(spec: ModelSpec) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": spec.family,
        "families": [spec.family],
        "parameter_size": spec.parameter_size,
        "quantization_level": spec.quantization_level,
    }


def _model_info(spec: ModelSpec) -> dict[str, Any]:
    arch = spec.architecture
    info: dict[str, Any] = {
        "general.architecture": arch,
        "general.parameter_count": spec.parameter_count,
        "general.file_type": FILE_TYPES.get(spec.quantization_level, 15),
        "general.quantization_version": 2,
        f"{arch}.context_length": spec.context_length,
        f"{arch}.block_count": spec.block_count,
        f"{arch}.attention.head_count": spec.head_count,
        f"{arch}.attention.head_count_kv": spec.head_count_kv,
        f"{arch}.embedding_length": spec.embedding_length,
        f"{arch}.attention.key_length": spec.head_dim,
        f"{arch}.attention.value_length": spec.head_dim,
    }
    if spec.expert_count:
        info[f"{arch}.expert_count"] = spec.expert_count
        info[f"{arch}.expert_used_count"] = spec.expert_used_count
    return info


def embed_text(text: str, dim: int = EMBED_DIM) -> list[float]:
    """A deterministic unit vector: hashed bag of lower-cased words (and the whole text)."""
    vec = [0.0] * dim
    for token in [*_WORD.findall(text.lower()), "\x00" + text]:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vec[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class Routes:
    """Handlers for everything except generation."""

    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx

    async def root(self, request: web.Request) -> web.Response:
        """GET /: the liveness text clients probe."""
        return web.Response(text="Ollama is running")

    async def version(self, request: web.Request) -> web.Response:
        """GET /api/version."""
        return json_reply({"version": self.ctx.config.version})

    async def tags(self, request: web.Request) -> web.Response:
        """GET /api/tags: every pulled model, size = weights file."""
        models = [
            {
                "name": name,
                "model": name,
                "modified_at": MODIFIED_AT,
                "size": spec.weights_bytes,
                "digest": spec.digest,
                "details": _details(spec),
            }
            for name, spec in self.ctx.config.models.items()
        ]
        return json_reply({"models": models})

    async def ps(self, request: web.Request) -> web.Response:
        """GET /api/ps: resident runners."""
        return json_reply({"models": self.loaded()})

    def loaded(self) -> list[dict[str, Any]]:
        """/api/ps entries, latest expiry first; expired runners are unloaded first."""
        scheduler = self.ctx.scheduler
        scheduler.expire_due()
        now = asyncio.get_running_loop().time()
        wall = datetime.now(UTC)
        entries = []
        for runner in scheduler.runners.values():
            spec = self.ctx.config.models[runner.model]
            remaining = runner.expires_in(now)
            # Ollama's "forever" is now + MaxInt64 ns, about 292 years
            forever = math.isinf(remaining)
            delta = timedelta(days=106_751) if forever else timedelta(seconds=remaining)
            entries.append(
                {
                    "name": runner.model,
                    "model": runner.model,
                    "size": runner.size,
                    "digest": spec.digest,
                    "details": _details(spec),
                    "expires_at": (wall + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "size_vram": runner.size_vram,
                    "context_length": runner.num_ctx,
                }
            )
        return sorted(entries, key=lambda e: str(e["expires_at"]), reverse=True)

    async def show(self, request: web.Request) -> web.Response:
        """POST /api/show: details, template, parameters, capabilities, model_info."""
        body = request.get(BODY)
        name = body.get("model") or body.get("name") if isinstance(body, dict) else None
        if not name:
            return error_response(400, "model is required")
        spec = self.ctx.config.models.get(name)
        if spec is None:
            return error_response(404, f"model '{name}' not found")
        modelfile = (
            f'# Modelfile generated by "ollama show"\nFROM {name}\nTEMPLATE """{spec.template}"""\n'
        )
        return json_reply(
            {
                "license": "",
                "modelfile": modelfile,
                "parameters": spec.parameters,
                "template": spec.template,
                "details": _details(spec),
                "model_info": _model_info(spec),
                "capabilities": list(spec.capabilities),
                "modified_at": MODIFIED_AT,
            }
        )

    async def embed(self, request: web.Request) -> web.Response:
        """POST /api/embed (and legacy /api/embeddings): deterministic vectors; loads the model."""
        started = time.perf_counter()
        body = request.get(BODY)
        if not isinstance(body, dict) or not body.get("model"):
            return error_response(400, "model is required")
        model = body["model"]
        if model not in self.ctx.config.models:
            return error_response(404, f'model "{model}" not found, try pulling it first')
        raw = body.get("input", body.get("prompt", []))
        texts = [raw] if isinstance(raw, str) else list(raw or [])
        dim = int(body.get("dimensions") or EMBED_DIM)
        config = self.ctx.config
        try:
            keep_alive = keep_alive_or_default(body.get("keep_alive"), config.default_keep_alive)
        except ValueError as exc:
            return error_response(400, str(exc))
        options = body.get("options") or {}
        num_ctx = int(options.get("num_ctx") or self.ctx.config.default_num_ctx)
        try:
            lease = await self.ctx.scheduler.acquire(model, num_ctx, keep_alive)
        except NoFitError as exc:
            return error_response(500, str(exc))
        load_ns = int((time.perf_counter() - started) * 1e9)
        self.ctx.scheduler.release(lease.runner)
        vectors = [embed_text(str(t), dim) for t in texts]
        if request.path == "/api/embeddings":
            return json_reply({"embedding": vectors[0] if vectors else []})
        return json_reply(
            {
                "model": model,
                "embeddings": vectors,
                "total_duration": int((time.perf_counter() - started) * 1e9),
                "load_duration": load_ns,
                "prompt_eval_count": max(sum(len(str(t)) for t in texts) // 4, 1),
            }
        )
