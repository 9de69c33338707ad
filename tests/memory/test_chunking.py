"""Chunking: heading paths, exact 1-based line ranges, token bounds, stable ids."""

from __future__ import annotations

import hashlib
from pathlib import Path

from memory_router.memory.chunking import chunk_file, chunk_id, marker_state
from memory_router.memory.types import Bank
from memory_router.tokens import count_tokens, truncate_tokens

BANK = Bank(workspace=Path("/work/demo"), root=Path("/work/demo/memory-bank"))
FILE = "memory-bank/systemPatterns.md"
HASH = "ab" * 32

DOC = """\
Notes kept before any heading.
Second preamble line.

# System Patterns

## Architecture
- Event bus between layers
  - nested item keeps its indent

```python
x = 1

# a comment in code, not a heading
```

### Storage
SQLite,	tab kept.

## Decisions
Keep it local.
"""


def lines_of(text: str, first: int, last: int) -> str:
    return "\n".join(text.split("\n")[first - 1 : last])


def test_sections_heading_paths_and_exact_lines() -> None:
    chunks = chunk_file(BANK, FILE, DOC, HASH, max_tokens=400)
    assert [(c.heading_path, c.first_line, c.last_line) for c in chunks] == [
        ((), 1, 2),
        (("System Patterns", "Architecture"), 4, 14),
        (("System Patterns", "Architecture", "Storage"), 16, 17),
        (("System Patterns", "Decisions"), 19, 20),
    ]
    # The text is the file's own slice: indentation, tabs, code and blank lines survive.
    for chunk in chunks:
        assert chunk.text == lines_of(DOC, chunk.first_line, chunk.last_line)
    assert chunks[1].text.startswith("# System Patterns\n\n## Architecture\n- Event bus")
    assert "  - nested item keeps its indent" in chunks[1].text
    assert chunks[2].text == "### Storage\nSQLite,\ttab kept."


def test_chunk_fields() -> None:
    chunks = chunk_file(BANK, FILE, DOC, HASH, max_tokens=400)
    path_key = hashlib.sha1(FILE.encode()).hexdigest()[:12]
    # Chunk 0 is the file's marker: its id also names the count, the whole hash and the path.
    assert [c.id for c in chunks] == [
        f"{path_key}:{'ab' * 8}:0:4:{HASH}:{FILE}",
        *(f"{path_key}:{'ab' * 8}:{i}" for i in range(1, 4)),
    ]
    assert chunk_id(FILE, HASH, 3, len(chunks)) == chunks[3].id
    assert marker_state(chunks[0].id) == (FILE, HASH, 4)
    assert [marker_state(c.id) for c in chunks[1:]] == [None, None, None]
    odd = "memory-bank/notes: 10:30 meeting.md"  # colons in a path survive the round trip
    assert marker_state(chunk_id(odd, HASH, 0, 7)) == (odd, HASH, 7)
    assert marker_state("legacy:abcd:0") is None
    for chunk in chunks:
        assert chunk.workspace == "/work/demo"
        assert chunk.file == FILE
        assert chunk.file_hash == HASH
        assert chunk.chunk_count == 4
        assert chunk.tokens == count_tokens(chunk.text)
        assert chunk.content_hash == hashlib.sha256(chunk.text.encode()).hexdigest()


def test_same_input_same_chunks_and_new_version_new_ids() -> None:
    assert chunk_file(BANK, FILE, DOC, HASH, 400) == chunk_file(BANK, FILE, DOC, HASH, 400)
    other_version = chunk_file(BANK, FILE, DOC, "cd" * 32, 400)
    other_file = chunk_file(BANK, "memory-bank/progress.md", DOC, HASH, 400)
    ids = {c.id for c in chunk_file(BANK, FILE, DOC, HASH, 400)}
    assert ids.isdisjoint(c.id for c in other_version)
    assert ids.isdisjoint(c.id for c in other_file)


def test_empty_and_blank_files_have_no_chunks() -> None:
    assert chunk_file(BANK, FILE, "", HASH, 400) == []
    assert chunk_file(BANK, FILE, "\n\n   \n\t\n", HASH, 400) == []


def test_heading_only_file() -> None:
    chunks = chunk_file(BANK, FILE, "# Title\n", HASH, 400)
    assert [(c.heading_path, c.first_line, c.last_line, c.text) for c in chunks] == [
        (("Title",), 1, 1, "# Title")
    ]


def test_crlf_and_bom_keep_line_numbers() -> None:
    text = "\ufeff# A\r\nalpha\r\n\r\n## B\r\nbeta\r\n"
    chunks = chunk_file(BANK, FILE, text, HASH, 400)
    assert [(c.heading_path, c.first_line, c.last_line, c.text) for c in chunks] == [
        (("A",), 1, 2, "# A\nalpha"),
        (("A", "B"), 4, 5, "## B\nbeta"),
    ]


def test_long_section_is_cut_to_the_token_limit_with_exact_lines() -> None:
    paragraphs = [
        f"Paragraph {i} says " + " ".join(f"word{i}x{j}" for j in range(12)) for i in range(8)
    ]
    assert all(40 < count_tokens(p) < 60 for p in paragraphs)
    text = "# Log\n\n## Entries\n" + "\n\n".join(paragraphs) + "\n"
    chunks = chunk_file(BANK, FILE, text, HASH, max_tokens=120)
    assert len(chunks) > 1
    assert all(c.tokens <= 120 for c in chunks)
    assert {c.heading_path for c in chunks} == {("Log", "Entries")}
    assert {c.chunk_count for c in chunks} == {len(chunks)}
    for chunk in chunks:
        assert chunk.text == lines_of(text, chunk.first_line, chunk.last_line)
    # Nothing is lost or repeated: every paragraph lands in exactly one chunk, in order.
    joined = "\n".join(c.text for c in chunks)
    assert [joined.count(p) for p in paragraphs] == [1] * 8
    assert chunks[0].first_line == 1
    assert chunks[-1].last_line == text.count("\n")


def test_one_huge_line_is_cut_by_words() -> None:
    text = "# Big\n" + " ".join(f"token{i}" for i in range(600))
    chunks = chunk_file(BANK, FILE, text, HASH, max_tokens=100)
    assert len(chunks) >= 6
    assert all(c.tokens <= 100 for c in chunks)
    assert (chunks[0].text, chunks[0].first_line, chunks[0].last_line) == ("# Big", 1, 1)
    assert {(c.first_line, c.last_line) for c in chunks[1:]} == {(2, 2)}
    # Pieces of one line are in order and, joined by single spaces, give the line back.
    assert " ".join(c.text for c in chunks[1:]) == text.split("\n")[1]


def test_count_and_truncate_tokens() -> None:
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    # Special-token markers in user text are counted as text, never raise.
    assert count_tokens("<|endoftext|>") > 1
    assert truncate_tokens("hello world again", 2) == "hello world"
    assert truncate_tokens("short", 10) == "short"
    assert truncate_tokens("anything", 0) == ""
