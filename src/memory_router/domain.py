"""The router's own vocabulary: task classes, keep-alive values, model capabilities.

Plain types with no behaviour, shared by the policy, the settings and the wire code.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["TASK_CLASSES", "Capability", "KeepAlive", "TaskClass"]

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
