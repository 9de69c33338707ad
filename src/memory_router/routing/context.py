"""How many tokens a request needs, counted once per message, corrected per model.

Cline resends the whole conversation every turn, so a 20,000-token request usually differs
from the previous one by a message or two. Each message is counted once per content hash and
kept in a bounded cache; tools are counted once per distinct tool list. tiktoken's
``cl100k_base`` is only an estimator for other tokenizers: each model gets a correction ratio
learned from the prompt_eval_count its backend reports.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable

from ..tokens import count_tokens
from ..wire.openai import ChatCompletionRequest, ChatMessage

__all__ = ["ContextEstimator"]

# Chat templates add a few tokens of framing per message.
_PER_MESSAGE = 4
_LEARN_RATE = 0.2
_MIN_RATIO, _MAX_RATIO = 0.5, 2.0


class ContextEstimator:
    """Prompt-token estimates with a per-message cache and per-model corrections."""

    def __init__(
        self, count: Callable[[str], int] = count_tokens, max_entries: int = 100_000
    ) -> None:
        self._count = count
        self._max = max_entries
        self._cache: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._ratios: dict[str, float] = {}
        self._lock = threading.Lock()
        self.counted = 0
        """Messages actually tokenized (cache misses), for tests and metrics."""

    def _cached(self, key: tuple[int, int], text: Callable[[], str]) -> int:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        tokens = self._count(text())
        with self._lock:
            self.counted += 1
            self._cache[key] = tokens
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return tokens

    def message_tokens(self, message: ChatMessage) -> int:
        """Tokens of one message: role, text, tool calls (counted once per content)."""
        text = message.text()
        calls = message.tool_calls or ()
        extra = "".join(f"{c.function.name}{c.function.arguments}" for c in calls)
        key = (hash((message.role, extra)), hash(text))
        return _PER_MESSAGE + self._cached(key, lambda: f"{text}{extra}" if extra else text)

    def tools_tokens(self, request: ChatCompletionRequest) -> int:
        if not request.tools:
            return 0
        # Keyed by names and descriptions: a client that changes a tool's schema changes its
        # description too, and repr() of 25 schemas on every request costs more than the rest.
        key = tuple((tool.function.name, tool.function.description) for tool in request.tools)
        return self._cached(
            (hash(key), len(key)),
            lambda: "\n".join(
                f"{tool.function.name} {tool.function.description or ''} "
                f"{tool.function.parameters!r}"
                for tool in request.tools or ()
            ),
        )

    def text_tokens(self, text: str) -> int:
        """Tokens of a raw prompt (``/v1/completions``), counted once per distinct text."""
        return self._cached((hash(text), -1), lambda: text)

    def prompt_tokens(self, request: ChatCompletionRequest) -> int:
        """The request's prompt size in ``cl100k_base`` tokens (uncorrected)."""
        total = self.tools_tokens(request)
        for message in request.messages:
            total += self.message_tokens(message)
        return total

    def for_model(self, model: str, tokens: int) -> int:
        """``tokens`` as ``model``'s tokenizer is expected to count them."""
        return math.ceil(tokens * self._ratios.get(model, 1.0))

    def ratio(self, model: str) -> float:
        return self._ratios.get(model, 1.0)

    def observe(self, model: str, estimated: int, prompt_eval_count: int | None) -> None:
        """Learn from what the backend counted for a prompt we estimated.

        Ollama reports only the tokens it had to evaluate (a cached prefix is not counted), so
        a report far below the estimate says nothing about the tokenizer and is ignored.
        """
        if not prompt_eval_count or estimated < 64 or prompt_eval_count < estimated * 0.4:
            return
        observed = min(max(prompt_eval_count / estimated, _MIN_RATIO), _MAX_RATIO)
        with self._lock:
            current = self._ratios.get(model)
            self._ratios[model] = (
                observed if current is None else current + _LEARN_RATE * (observed - current)
            )
