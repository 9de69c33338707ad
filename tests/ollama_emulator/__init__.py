"""An Ollama emulator for tests and benchmarks: a real HTTP server speaking Ollama's native API.

Usage::

    with OllamaEmulator(reference_profile()) as emu:
        emu.enqueue(Script(content="Hi there"))
        ...  # point a client at emu.base_url
        assert emu.loads[0].reason == "cold"
"""

from .config import (
    CancelledChat,
    EmulatorConfig,
    LoadEvent,
    ModelSpec,
    RecordedRequest,
    Script,
    fast_profile,
    kv_bytes_per_token,
    parse_keep_alive,
    reference_profile,
)
from .routes import embed_text
from .server import OllamaEmulator, create_app

__all__ = [
    "CancelledChat",
    "EmulatorConfig",
    "LoadEvent",
    "ModelSpec",
    "OllamaEmulator",
    "RecordedRequest",
    "Script",
    "create_app",
    "embed_text",
    "fast_profile",
    "kv_bytes_per_token",
    "parse_keep_alive",
    "reference_profile",
]
