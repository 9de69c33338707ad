"""Split a memory-bank file into heading-bounded chunks of at most ``max_tokens`` tokens.

LangChain's ``MarkdownHeaderTextSplitter`` decides where sections start (``#`` to ``####``,
fenced code respected). Its output text is not the file's text, though: it strips every line,
drops blank lines and non-printable characters, and joins lines with ``"  \\n"``. So its
sections are mapped back onto the original lines, and a chunk's text is always an exact slice
of the file, with 1-based line numbers that point at the right place in the editor.
Sections longer than ``max_tokens`` are cut further with ``RecursiveCharacterTextSplitter``
(paragraphs, then lines, then words), measured in tiktoken tokens.
This is the only module that imports ``langchain_text_splitters``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..tokens import count_tokens
from .types import Bank, Chunk

__all__ = ["chunk_file", "chunk_id", "marker_state"]

_HEADERS = [("#", "1"), ("##", "2"), ("###", "3"), ("####", "4")]


@dataclass(frozen=True, slots=True)
class _Section:
    heading_path: tuple[str, ...]
    first: int  # 0-based index into the file's lines, inclusive
    last: int  # inclusive


def chunk_id(rel_path: str, file_hash: str, index: int, count: int) -> str:
    """The id of chunk ``index`` of ``count`` of one version of one file (stable across runs).

    Chunk 0 is the file's marker in the store (``VectorStore.indexed_files``): its id also
    carries the chunk count, the whole hash and the path, so a scan reads file states from
    ids alone (Chroma returns ids about ten times faster than metadata).
    """
    path_key = hashlib.sha1(rel_path.encode("utf-8")).hexdigest()[:12]
    base = f"{path_key}:{file_hash[:16]}:{index}"
    return f"{base}:{count}:{file_hash}:{rel_path}" if index == 0 else base


def marker_state(chunk_id: str) -> tuple[str, str, int] | None:
    """(file, file hash, chunk count) from a marker's id; None for any other id."""
    parts = chunk_id.split(":", 5)
    if len(parts) != 6 or parts[2] != "0" or not parts[3].isdigit():
        return None
    return parts[5], parts[4], int(parts[3])


def _normalize(line: str) -> str:
    # Exactly what MarkdownHeaderTextSplitter does to a line before keeping it.
    return "".join(filter(str.isprintable, line.strip()))


def _sections(lines: list[str], text: str) -> list[_Section]:
    from langchain_text_splitters import MarkdownHeaderTextSplitter

    splitter = MarkdownHeaderTextSplitter(headers_to_split_on=_HEADERS, strip_headers=False)
    try:
        documents = splitter.split_text(text)
    except IndexError:
        # The splitter indexes the first character of a line it assumes is non-empty; if
        # some odd input breaks that, the file is still indexed, as one section.
        return _whole(lines)
    normalized = [_normalize(line) for line in lines]
    sections: list[_Section] = []
    cursor = 0
    for document in documents:
        # Every kept line is stripped, so trailing spaces can only be the "  " join.
        wanted = [line.rstrip(" ") for line in document.page_content.split("\n")]
        first = -1
        for line in wanted:
            # Lines the splitter dropped are blank once normalized, so a forward scan for
            # each kept line lands on exactly the original line it came from.
            while cursor < len(lines) and normalized[cursor] != line:
                cursor += 1
            if cursor == len(lines):
                return _whole(lines)
            if first < 0:
                first = cursor
            cursor += 1
        heading_path = tuple(document.metadata[key] for key in sorted(document.metadata, key=int))
        sections.append(_Section(heading_path, first, cursor - 1))
    return sections


def _whole(lines: list[str]) -> list[_Section]:
    filled = [index for index, line in enumerate(lines) if line.strip()]
    return [_Section((), filled[0], filled[-1])] if filled else []


def _bounded(text: str, max_tokens: int, counts: dict[str, int]) -> list[tuple[int, str]]:
    """``text`` cut into pieces of at most about ``max_tokens``, each with its offset.

    ``counts`` caches token counts by text. The splitter measures every paragraph, line or
    word it tries, most of them more than once (when it adds a piece and again when it moves
    past it), and a file's words repeat: each distinct piece is counted once per file."""
    if count_tokens(text) <= max_tokens:
        return [(0, text)]
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    def measure(piece: str) -> int:
        tokens = counts.get(piece)
        if tokens is None:
            tokens = counts[piece] = count_tokens(piece)
        return tokens

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=max_tokens,
        chunk_overlap=0,
        length_function=measure,
        separators=["\n\n", "\n", " ", ""],
        keep_separator=True,
    )
    pieces: list[tuple[int, str]] = []
    cursor = 0
    for piece in splitter.split_text(text):
        # keep_separator and no overlap: every piece is a stripped, in-order slice of text.
        start = text.find(piece, cursor)
        if start < 0:  # cannot happen with these settings; never lose the piece, though
            start = cursor
        pieces.append((start, piece))
        cursor = start + len(piece)
    return pieces


def chunk_file(
    bank: Bank, rel_path: str, text: str, file_hash: str, max_tokens: int
) -> list[Chunk]:
    """The chunks of one file version; empty or blank files give none.

    Ids depend only on the path, the file's hash and the chunk's position, so chunking the
    same bytes twice gives the same chunks, and a changed file never reuses an old id.
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    drafts: list[tuple[tuple[str, ...], int, int, str]] = []
    counts: dict[str, int] = {}
    for section in _sections(lines, text):
        body = "\n".join(lines[section.first : section.last + 1])
        for offset, piece in _bounded(body, max_tokens, counts):
            first = section.first + 1 + body.count("\n", 0, offset)
            drafts.append((section.heading_path, first, first + piece.count("\n"), piece))
    workspace = str(bank.workspace)
    return [
        Chunk(
            id=chunk_id(rel_path, file_hash, index, len(drafts)),
            workspace=workspace,
            file=rel_path,
            heading_path=heading_path,
            first_line=first,
            last_line=last,
            text=piece,
            content_hash=hashlib.sha256(piece.encode("utf-8")).hexdigest(),
            file_hash=file_hash,
            chunk_count=len(drafts),
            tokens=count_tokens(piece),
        )
        for index, (heading_path, first, last, piece) in enumerate(drafts)
    ]
