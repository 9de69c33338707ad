"""The router's own vocabulary: task classes, keep-alive values, model capabilities.

Plain types with no behaviour, shared by the policy, the settings and the wire code.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "TASK_CLASSES",
    "Capability",
    "KeepAlive",
    "TaskClass",
    "check_keep_alive",
    "placement",
]

TaskClass = Literal["memory", "implement", "analyze", "chat", "meta"]
"""What a request asks for: memory-bank work, a change, understanding, conversation, or a
client's own housekeeping."""
TASK_CLASSES: tuple[TaskClass, ...] = ("memory", "implement", "analyze", "chat", "meta")
KeepAlive = str | int | float
"""Ollama's ``keep_alive``: a duration ("5m", "24h"), seconds, or -1 for never unload."""
Capability = Literal[
    "completion", "tools", "insert", "vision", "thinking", "embedding", "audio", "image"
]
"""What a model takes, in Ollama's ``/api/show`` capability words."""


def placement(backend: str, model: str) -> str:
    """The key of one model on one host (``gpu2/qwen2.5-coder:32b``): a pool serves a
    model from several hosts, each with its own queue, residency and health."""
    return f"{backend}/{model}"


_DURATION = re.compile(r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def check_keep_alive(value: KeepAlive) -> KeepAlive:
    """``value`` if Ollama takes it as a keep_alive, else ValueError saying what would do."""
    if isinstance(value, str) and not (_DURATION.match(value) or _is_number(value)):
        raise ValueError(f"{value!r} is not a duration: use e.g. '5m', '24h', 300 or -1")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
