"""Configuration and record types of the Ollama emulator, and its two ready profiles.

Sizes are bytes. A model's resident footprint at a context follows the reference formula:
``weights + kv_bytes_per_token x num_ctx x num_parallel + overhead``, with
``kv_bytes_per_token = 2 x block_count x head_count_kv x head_dim x bytes_per_element``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "CancelledChat",
    "EmulatorConfig",
    "LoadEvent",
    "ModelSpec",
    "RecordedRequest",
    "Script",
    "fast_profile",
    "keep_alive_or_default",
    "kv_bytes_per_token",
    "parse_keep_alive",
    "reference_profile",
]

GB = 1_000_000_000
FOREVER = float("inf")
"""keep_alive value (seconds) meaning "never expire"."""


def kv_bytes_per_token(
    block_count: int, head_count_kv: int, head_dim: int, bytes_per_element: int = 2
) -> int:
    """KV-cache bytes per token: 2 (K and V) x layers x KV heads x head_dim x element size."""
    return 2 * block_count * head_count_kv * head_dim * bytes_per_element


@dataclass
class ModelSpec:
    """One pulled model: what /api/tags, /api/show and the memory model need to know."""

    weights_bytes: int
    context_length: int
    architecture: str
    family: str
    parameter_size: str
    block_count: int
    head_count: int
    head_count_kv: int
    embedding_length: int
    head_dim: int = 0
    """Key/value length per head; 0 means embedding_length // head_count."""
    kv_bytes_per_token: int = 0
    """0 means computed from the architecture numbers at f16."""
    quantization_level: str = "Q4_K_M"
    capabilities: list[str] = field(default_factory=lambda: ["completion", "tools"])
    parameter_count: int = 0
    expert_count: int = 0
    expert_used_count: int = 0
    overhead_bytes: int = 600_000_000
    """Fixed per-runner overhead (compute graph, buffers) added to every footprint."""
    digest: str = ""
    """64 hex digits; empty means derived from the model name by EmulatorConfig."""
    template: str = (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    )
    parameters: str = (
        'stop                           "<|im_start|>"\nstop                           "<|im_end|>"'
    )

    def __post_init__(self) -> None:
        if not self.head_dim:
            self.head_dim = self.embedding_length // max(self.head_count, 1)
        if not self.kv_bytes_per_token:
            self.kv_bytes_per_token = kv_bytes_per_token(
                self.block_count, self.head_count_kv, self.head_dim
            )

    def footprint(self, num_ctx: int, num_parallel: int = 1) -> int:
        """Resident bytes of a runner of this model loaded at ``num_ctx``."""
        return (
            self.weights_bytes
            + self.kv_bytes_per_token * num_ctx * num_parallel
            + self.overhead_bytes
        )


@dataclass
class EmulatorConfig:
    """The emulated machine and Ollama's scheduler settings."""

    models: dict[str, ModelSpec]
    vram_bytes: int
    ram_bytes: int
    max_loaded_models: int = 3
    load_seconds_per_gb: float = 0.01
    """Simulated load time per GB (1e9 bytes) of weights."""
    token_delay_s: float = 0.0
    """Delay before each streamed chunk."""
    default_keep_alive: str | float = "5m"
    num_parallel: int = 1
    strict_gpu_fit: bool = True
    """Ollama's rule: only the first model may spill to RAM; a model loaded beside others must
    fit entirely in free VRAM, else something is evicted. False: place any model VRAM first,
    then RAM, evicting only when VRAM + RAM cannot hold it."""
    max_queue: int = 512
    """Requests waiting for or holding a runner beyond this get 503 (OLLAMA_MAX_QUEUE)."""
    default_num_ctx: int = 4096
    version: str = "0.13.0"
    default_content: str | None = None
    """The reply when no script is queued (None: a short greeting naming the model)."""

    def __post_init__(self) -> None:
        self.models = {
            name: spec if spec.digest else replace(spec, digest=_digest(name))
            for name, spec in self.models.items()
        }


@dataclass
class Script:
    """A scripted reply for the next valid /api/chat (or /api/generate) with a prompt."""

    content: str = ""
    thinking: str | None = None
    """Streamed as ``message.thinking`` only when the request has ``think`` truthy."""
    tool_calls: list[dict[str, Any]] | None = None
    """``{"name", "arguments": {...}}`` or ``{"function": {...}}``; sent whole in one chunk."""
    tool_call_ids: bool = False
    """Add ``id`` and ``function.index`` to tool calls, as Ollama 0.12+ does."""
    done_reason: str | None = None
    """Overrides the final done_reason (default "stop", or "length" at num_predict)."""
    chunk_chars: int | None = None
    """Split text into pieces of this many characters; None splits word by word."""
    error_after: int | None = None
    """After this many streamed chunks send ``{"error": error_message}`` and end."""
    error_message: str = "an error was encountered while running the model: unexpected EOF"
    stall_after: int | None = None
    """After this many streamed chunks stop sending and hang until the client goes away."""
    status: int | None = None
    """Reply at once with this status and ``{"error": error}``."""
    error: str | None = None
    prompt_eval_count: int | None = None
    """Overrides the estimate (total characters of message contents / 4)."""
    token_delay_s: float | None = None
    """Overrides EmulatorConfig.token_delay_s for this reply."""


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the emulator received it."""

    method: str
    path: str
    json: Any
    """The parsed body (None when empty or not JSON)."""
    headers: Mapping[str, str]
    """Case-insensitive, as received."""
    body: bytes = b""
    """The raw body bytes."""


@dataclass(frozen=True)
class LoadEvent:
    """A runner load: ``reason`` is "cold" (not loaded), "num_ctx_change" or "num_gpu_change"
    (a reload with other options)."""

    model: str
    num_ctx: int
    reason: str
    duration_s: float
    evicted: list[str]
    size: int = 0
    size_vram: int = 0


@dataclass(frozen=True)
class CancelledChat:
    """A generation request whose client went away before the final line."""

    path: str
    model: str
    phase: str
    """"queue" (waiting for or loading a runner) or "generate"."""
    chunks_sent: int


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Any) -> float:
    """keep_alive as seconds: Go duration strings ("5m", "1h30m", "300ms"), numbers (seconds),
    numeric strings; a negative value means forever (``inf``). Raises ValueError if invalid."""
    if isinstance(value, bool):
        raise ValueError(f"invalid keep_alive {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            body = text.lstrip("+-")
            parts = _DURATION_RE.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise ValueError(f'time: invalid duration "{value}"') from None
            seconds = sign * sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"invalid keep_alive {value!r}")
    return FOREVER if seconds < 0 else seconds


def keep_alive_or_default(value: Any, default: str | float) -> float:
    """The request's keep_alive (absent or null means the server default), in seconds."""
    return parse_keep_alive(default if value is None else value)


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def reference_profile() -> EmulatorConfig:
    """The design's machine: 16 GB VRAM, 128 GB RAM, three large models (real architectures)."""
    models = {
        "qwen3:30b-a3b": ModelSpec(
            weights_bytes=18_556_685_248,
            context_length=40960,
            architecture="qwen3moe",
            family="qwen3moe",
            parameter_size="30.5B",
            parameter_count=30_532_122_624,
            block_count=48,
            head_count=32,
            head_count_kv=4,
            head_dim=128,
            embedding_length=2048,
            expert_count=128,
            expert_used_count=8,
            capabilities=["completion", "tools", "thinking"],
        ),
        "qwen2.5-coder:32b": ModelSpec(
            weights_bytes=19_851_336_256,
            context_length=32768,
            architecture="qwen2",
            family="qwen2",
            parameter_size="32.8B",
            parameter_count=32_763_876_352,
            block_count=64,
            head_count=40,
            head_count_kv=8,
            head_dim=128,
            embedding_length=5120,
            capabilities=["completion", "tools", "insert"],
        ),
        "llama4:16x17b": ModelSpec(
            weights_bytes=67_436_862_784,
            context_length=10_485_760,
            architecture="llama4",
            family="llama4",
            parameter_size="108.6B",
            parameter_count=108_641_793_536,
            block_count=48,
            head_count=40,
            head_count_kv=8,
            head_dim=128,
            embedding_length=5120,
            expert_count=16,
            expert_used_count=1,
            capabilities=["completion", "tools", "vision"],
            template="{{- range .Messages }}<|header_start|>{{ .Role }}<|header_end|>\n\n"
            "{{ .Content }}<|eot|>{{ end }}",
            parameters='stop                           "<|eot|>"',
        ),
    }
    return EmulatorConfig(
        models=models,
        vram_bytes=16 * 1024**3,
        ram_bytes=128 * 1024**3,
        load_seconds_per_gb=0.01,
        token_delay_s=0.002,
    )


def fast_profile() -> EmulatorConfig:
    """The same model names and architectures at tiny sizes, with no load or token delay."""
    ref = reference_profile()
    models = {
        name: replace(
            spec,
            weights_bytes=spec.weights_bytes // 10_000,
            kv_bytes_per_token=16,
            overhead_bytes=1_000_000,
            digest="",
        )
        for name, spec in ref.models.items()
    }
    return EmulatorConfig(
        models=models,
        vram_bytes=16 * 1024**3,
        ram_bytes=128 * 1024**3,
        load_seconds_per_gb=0.0,
        token_delay_s=0.0,
    )
