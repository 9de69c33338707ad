"""The incremental line and SSE decoders, fed the same bytes split at every position."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memory_router import sse


def splits(data: bytes) -> Iterator[list[bytes]]:
    """The whole stream, then every two-way split, then every three-way split, then bytewise."""
    yield [data]
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    for i in range(1, len(data)):
        for j in range(i + 1, len(data)):
            yield [data[:i], data[i:j], data[j:]]
    yield [data[i : i + 1] for i in range(len(data))]


def lines_of(chunks: list[bytes]) -> list[str]:
    decoder = sse.LineDecoder()
    out: list[str] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.flush())
    return out


def events_of(chunks: list[bytes]) -> list[str]:
    decoder = sse.SSEDecoder()
    out: list[str] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.flush())
    return out


# --- LineDecoder ---------------------------------------------------------------------------

LINE_CASES: list[tuple[bytes, list[str]]] = [
    (b"a\nb\n", ["a", "b"]),
    (b"a\r\nb\r\n", ["a", "b"]),
    (b"a\rb\r", ["a", "b"]),
    (b"a\r\n\r\nb", ["a", "", "b"]),
    (b"a\r\rb\n\nc", ["a", "", "b", "", "c"]),
    (b"\n\r\n\r", ["", "", ""]),
    ("caf\u00e9\r\n\U0001f642 ok\n".encode(), ["café", "🙂 ok"]),
    ("tail without newline \u00e9".encode(), ["tail without newline é"]),
]


@pytest.mark.parametrize(("data", "expected"), LINE_CASES)
def test_line_decoder_any_split(data: bytes, expected: list[str]) -> None:
    for chunks in splits(data):
        assert lines_of(chunks) == expected, chunks


def test_line_decoder_crlf_split_between_cr_and_lf_is_one_break() -> None:
    decoder = sse.LineDecoder()
    assert decoder.feed(b"one\r") == ["one"]
    assert decoder.feed(b"\ntwo\n") == ["two"]
    assert decoder.flush() == []


def test_line_decoder_lone_cr_then_text_is_a_break() -> None:
    decoder = sse.LineDecoder()
    assert decoder.feed(b"one\r") == ["one"]
    assert decoder.feed(b"two\r") == ["two"]
    assert decoder.feed(b"\r") == [""]


def test_line_decoder_holds_partial_utf8_character() -> None:
    snake = "🙂".encode()
    decoder = sse.LineDecoder()
    assert decoder.feed(b"x" + snake[:1]) == []
    assert decoder.feed(snake[1:3]) == []
    assert decoder.feed(snake[3:] + b"\n") == ["x🙂"]


def test_line_decoder_invalid_utf8_is_replaced_not_raised() -> None:
    assert lines_of([b"bad \xff byte\n"]) == ["bad \ufffd byte"]


def test_line_decoder_truncated_utf8_at_end_is_replaced_on_flush() -> None:
    decoder = sse.LineDecoder()
    assert decoder.feed(b"end " + "é".encode()[:1]) == []
    assert decoder.flush() == ["end \ufffd"]


def test_line_decoder_flush_twice_is_empty() -> None:
    decoder = sse.LineDecoder()
    decoder.feed(b"x")
    assert decoder.flush() == ["x"]
    assert decoder.flush() == []


# --- SSEDecoder ----------------------------------------------------------------------------

STREAM = (
    b": keepalive comment\n"
    b'data: {"a":1}\n'
    b"\n"
    b"event: message\r\n"
    b"id: 7\r\n"
    b"data: first line\r\n"
    b"data:second line\r\n"
    b"\r\n"
    b"data: caf\xc3\xa9 \xf0\x9f\x99\x82\r"
    b"\r"
    b"retry: 100\n"
    b"data\n"
    b"\n"
    b"data:  two spaces\n"
    b"\n"
    b"\n"
    b"data: [DONE]\n\n"
)
STREAM_EVENTS = ['{"a":1}', "first line\nsecond line", "café 🙂", "", " two spaces", "[DONE]"]


def test_sse_decoder_whole_stream() -> None:
    assert events_of([STREAM]) == STREAM_EVENTS


def test_sse_decoder_every_two_way_split() -> None:
    for i in range(len(STREAM) + 1):
        assert events_of([STREAM[:i], STREAM[i:]]) == STREAM_EVENTS, i


def test_sse_decoder_one_byte_at_a_time() -> None:
    decoder = sse.SSEDecoder()
    seen: list[tuple[int, str]] = []
    for i in range(len(STREAM)):
        seen.extend((i, event) for event in decoder.feed(STREAM[i : i + 1]))
    assert decoder.flush() == []
    assert [event for _, event in seen] == STREAM_EVENTS
    # Each event is released by the byte that completes its blank line, not later.
    assert seen[0][0] == STREAM.index(b'{"a":1}\n\n') + len(b'{"a":1}\n\n') - 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"data: a\r\n\r\n", ["a"]),
        (b"data: a\r\ndata: b\r\n\r\n", ["a\nb"]),
        (b"data: a\rdata: b\r\r", ["a\nb"]),
        (b": only a comment\n\n", []),
        (b":\n\n", []),
        ("data: \u00e9\U0001f642\n\n".encode(), ["é🙂"]),
        (b"id: 1\nevent: ping\n\n", []),
    ],
)
def test_sse_decoder_small_cases_any_split(data: bytes, expected: list[str]) -> None:
    for chunks in splits(data):
        assert events_of(chunks) == expected, chunks


def test_sse_decoder_crlf_split_does_not_end_the_event() -> None:
    decoder = sse.SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r\n") == ["a\nb"]


@pytest.mark.parametrize(
    "data",
    [b"data: tail", b"data: tail\n", b"data: tail\r", b"data: tail\r\n"],
)
def test_sse_decoder_flush_returns_trailing_event_without_blank_line(data: bytes) -> None:
    for chunks in splits(data):
        decoder = sse.SSEDecoder()
        fed = [event for chunk in chunks for event in decoder.feed(chunk)]
        assert fed == []
        assert decoder.flush() == ["tail"]
        assert decoder.flush() == []


def test_sse_decoder_empty_chunk_between_cr_and_lf() -> None:
    decoder = sse.SSEDecoder()
    out = decoder.feed(b"data: a\r") + decoder.feed(b"") + decoder.feed(b"\ndata: b\n\n")
    assert out == ["a\nb"]


# --- encoder -------------------------------------------------------------------------------


def test_encode_shape() -> None:
    assert sse.encode(b'{"x":1}') == b'data: {"x":1}\n\n'


def test_done_shape() -> None:
    assert sse.DONE == b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    ("args", "expected"), [((), b": keepalive\n\n"), (("loading qwen",), b": loading qwen\n\n")]
)
def test_comment_shape(args: tuple[str, ...], expected: bytes) -> None:
    assert sse.comment(*args) == expected


def test_encoded_events_round_trip_through_decoder() -> None:
    stream = sse.comment() + sse.encode(b'{"a":"\xc3\xa9"}') + sse.encode(b"2") + sse.DONE
    for chunks in splits(stream):
        assert events_of(chunks) == ['{"a":"é"}', "2", "[DONE]"], chunks
