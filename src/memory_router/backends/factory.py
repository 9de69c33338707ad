"""Build the backends the configuration asks for, and decide on the embedded fallback."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..domain import TASK_CLASSES
from ..settings import ModelSpec, Settings
from .base import Backend
from .embedded import EMBEDDED_MODEL, EmbeddedBackend
from .ollama import OllamaBackend
from .openai_compat import OpenAIBackend

__all__ = ["Built", "build_backends", "embedded_spec"]


@dataclass(slots=True)
class Built:
    backends: dict[str, Backend]
    catalog: list[ModelSpec]
    embedded_fallback: bool = False
    notes: list[str] = field(default_factory=list)


def embedded_spec(n_ctx: int) -> ModelSpec:
    """The catalog entry of the embedded model: it takes every role."""
    return ModelSpec(
        name=EMBEDDED_MODEL,
        backend="embedded",
        role="general",
        description="Gemma 3 270M (base) in-process via llama.cpp: demo quality only.",
        context_window=n_ctx,
        num_ctx=n_ctx,
        keep_alive=-1,
        task_fit={task: 0.5 for task in TASK_CLASSES},
        capabilities=("completion", "tools"),  # no vision projector ships with it
    )


async def build_backends(settings: Settings) -> Built:
    """Start what the configuration asks for; fall back to the embedded model if allowed."""
    config = settings.config
    backends: dict[str, Backend] = {}
    for upstream in config.openai_upstreams:
        backends[upstream.name] = OpenAIBackend(upstream)
    configured = settings.models.catalog()
    mode = config.embedded.mode
    notes: list[str] = []

    hosts_answer = False
    for host in config.ollama_hosts if mode != "always" else []:
        # Another machine: kept whether or not it answers now (its requests get 503 until it
        # does, and the residency poll picks it up).
        backend = OllamaBackend(host, name=host.name)
        answer = await backend.status(timeout=host.connect_timeout_s)
        hosts_answer |= answer.answers
        backends[host.name] = backend
        if not answer.answers:
            notes.append(
                f"Ollama host {host.name} did not answer at {host.base_url}: {answer.detail}"
            )

    ollama_answers = False
    if config.ollama.enabled and mode != "always":
        ollama = OllamaBackend(config.ollama)
        status = await ollama.status(timeout=config.ollama.connect_timeout_s)
        ollama_answers = status.answers
        if ollama_answers or hosts_answer or mode == "never":
            backends["ollama"] = ollama
        else:
            await ollama.aclose()
        if not ollama_answers:
            notes.append(f"no Ollama answered at {config.ollama.base_url}: {status.detail}")
    ollama_answers |= hosts_answer

    use_embedded = mode == "always" or (mode == "auto" and not ollama_answers)
    if not use_embedded:
        return Built(backends, configured, notes=notes)

    embedded = EmbeddedBackend(config.embedded)
    await embedded.start()
    backends["embedded"] = embedded
    kept = [spec for spec in configured if spec.backend in backends]
    catalog = [embedded_spec(config.embedded.n_ctx), *kept]
    label = "EMBEDDED MODE (configured)" if mode == "always" else "EMBEDDED FALLBACK"
    then = (
        "restart the router"
        if mode == "always"
        else f"the router switches to them once Ollama answers (it asks every "
        f"{config.routing.poll_s:g} s)"
    )
    notes.append(
        f"{label}: every role now maps to {EMBEDDED_MODEL} (Gemma 3 270M base model, "
        f"llama.cpp in-process, {embedded.model_path}). Answers are demo quality. Pull real "
        f"models into Ollama (e.g. `ollama pull qwen2.5-coder:32b`), start `ollama serve`: "
        f"{then}."
    )
    return Built(backends, catalog, embedded_fallback=mode != "always", notes=notes)
