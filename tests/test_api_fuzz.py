"""Property-based fuzzing of every endpoint: hostile or malformed requests never get a 5xx, and
every 4xx is the OpenAI error envelope.

A real router on a loopback socket (uvicorn, as in production) in front of the Ollama emulator,
so nothing reaches a real model; chat and completion bodies ask for at most a few tokens.
Deterministic (``derandomize``, no example database) and bounded: the request count and the
time taken are printed, and recorded as the test's ``fuzz_requests`` property.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory_router.settings import load_settings
from tests import conftest
from tests.conftest import RouterThread, write_config
from tests.memory.conftest import write_bank
from tests.ollama_emulator import OllamaEmulator, fast_profile

MAX_BODY = 1_000_000  # the router's limit here: some generated bodies pass it (413)
FUZZ = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
)

# Strings a parser or a file system may trip on: NUL, lone surrogates (invalid in UTF-8, so
# they arrive as JSON escapes), bidi and BOM marks, line separators, path tricks.
ODD = [
    "\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "\uffff", "\u2028", "\u0085", "\U0001d54f",
    "../../etc/passwd", "/etc", "~", "%00", "\\", '"', "\r\n", "", " ", "null", "{{.Prompt}}",
]  # fmt: skip

odd_text = st.lists(st.sampled_from(ODD) | st.text(max_size=8), max_size=6).map("".join)
huge_text = st.tuples(st.sampled_from(["x", "é", "\x00", "🌊", "a b "]), st.integers(1, 300_000))
texts = st.one_of(
    st.text(max_size=40),
    odd_text,
    huge_text.map(lambda pair: pair[0] * (pair[1] // len(pair[0].encode()) + 1)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities too: not JSON, json.dumps writes them anyway
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def nest(value: Any, depth: int, shape: str) -> Any:
    for level in range(depth):
        kind = shape[level % len(shape)]
        value = [value] if kind == "l" else {"properties": value} if kind == "d" else {"a": [value]}
    return value


# Depths around the router's limit (64) and orjson's (254 to encode); json.dumps, which
# encodes them here, stops at about 1000 (raw bodies go deeper: RAW_DEEP).
DEPTHS = [1, 2, 3, 8, 59, 60, 63, 64, 65, 126, 127, 128, 250, 254, 255, 300, 900]
deep = st.builds(
    nest, values, st.integers(1, 20) | st.sampled_from(DEPTHS), st.sampled_from(["l", "d", "x"])
)
# Paths as a client might send them, and as an attacker would.
paths = st.builds(
    "".join,
    st.tuples(st.sampled_from(["/tmp/", "/", "", "~/", "../", "{bank}/", "{bank}/../"]), odd_text),
)
prompts = paths.map(lambda path: f"You are Cline.\n\nCurrent Working Directory: {path}\n")
hostile = st.one_of(values, deep, texts, paths, prompts)

CHAT = {
    "model": "cline-memory-router",
    "messages": [
        {"role": "system", "content": "You are Cline."},
        {"role": "user", "content": "hi"},
    ],
    "max_tokens": 4,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            },
        }
    ],
}
TEMPLATES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": CHAT,
    "/v1/route/explain": CHAT,
    "/v1/completions": {"model": "qwen2.5-coder:32b", "prompt": "def f(", "max_tokens": 4},
    "/v1/embeddings": {"model": "cline-memory-router", "input": ["tide", "current"]},
    "/v1/memory/search": {"query": "slack water", "workspace": "{bank}", "k": 3},
}
# Where a mutation may land, per endpoint: its fields, paths into nested ones, an extra field.
CHAT_PLACES: list[tuple[str | int, ...]] = [
    ("model",), ("messages",), ("max_tokens",), ("tools",), ("stream",), ("temperature",),
    ("stop",), ("tool_choice",), ("response_format",), ("stream_options",), ("n",), ("seed",),
    ("max_completion_tokens",), ("reasoning_effort",), ("user",), ("x-extra",),
    ("messages", 0), ("messages", 0, "content"), ("messages", 1, "content"),
    ("messages", 1, "role"), ("messages", 0, "x"), ("messages", 1, "content", 0),
    ("tools", 0), ("tools", 0, "function", "parameters"), ("tools", 0, "function", "name"),
    ("tools", 0, "function", "parameters", "properties", "path"),
]  # fmt: skip
PLACES: dict[str, list[tuple[str | int, ...]]] = {
    "/v1/chat/completions": CHAT_PLACES,
    "/v1/route/explain": CHAT_PLACES,
    "/v1/completions": [
        ("model",), ("prompt",), ("max_tokens",), ("suffix",), ("echo",), ("stream",),
        ("stop",), ("x-extra",), ("prompt", 0),
    ],
    "/v1/embeddings": [
        ("model",), ("input",), ("encoding_format",), ("dimensions",), ("user",), ("x-extra",),
        ("input", 0), ("input", 1),
    ],
    "/v1/memory/search": [("query",), ("workspace",), ("k",), ("x-extra",)],
}  # fmt: skip


EVERY_PLACE = [(path, place) for path, places in PLACES.items() for place in places]
# Places that take any JSON, so that depth passes validation and reaches the backend.
FREE_FORM: list[tuple[str, tuple[str | int, ...]]] = [
    *[
        (path, place)
        for path in ("/v1/chat/completions", "/v1/route/explain")
        for place in [
            ("tools", 0, "function", "parameters"),
            ("tools", 0, "function", "parameters", "properties", "path"),
            ("response_format",),
            ("tool_choice",),
            ("x-extra",),
            ("messages", 0, "x"),
        ]
    ],
    *[(path, ("x-extra",)) for path in PLACES if path not in ("/v1/chat/completions",)],
]


def mutations(path: str) -> st.SearchStrategy[list[tuple[str, tuple[str | int, ...], Any]]]:
    """One to three changes to the endpoint's valid body: set a place to a hostile value, or
    delete it."""
    place = st.sampled_from(PLACES[path])
    change = st.one_of(
        st.tuples(st.just("set"), place, hostile),
        st.tuples(st.just("del"), place, st.none()),
    )
    return st.lists(change, min_size=1, max_size=3)


def mutate(body: Any, op: str, path: tuple[str | int, ...], value: Any) -> None:
    """Set or delete ``path`` in ``body`` where the path exists (or its last step is a key)."""
    target = body
    for step in path[:-1]:
        found = (isinstance(target, dict) and step in target) or (
            isinstance(target, list) and isinstance(step, int) and step < len(target)
        )
        if not found:
            return
        target = target[step]
    last = path[-1]
    if isinstance(target, dict) and isinstance(last, str):
        if op == "set":
            target[last] = value
        else:
            target.pop(last, None)
    elif isinstance(target, list) and isinstance(last, int) and last < len(target):
        if op == "set":
            target[last] = value
        else:
            del target[last]


class Fuzzer:
    """The router under test and a tally of what was sent."""

    def __init__(self, router: RouterThread, bank: str) -> None:
        self.client = httpx.Client(base_url=router.base_url, timeout=60)
        self.bank = bank
        self.sent = 0
        self.statuses: dict[int, int] = {}
        self.seconds = 0.0

    def send(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        # A connection each: an example's answer (or a dropped connection) cannot reach the next.
        headers = {**(headers or {}), "connection": "close"}
        started = time.monotonic()
        response = self.client.request(method, path, content=content, headers=headers)
        self.seconds += time.monotonic() - started
        self.sent += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        check(response)
        return response


def check(response: httpx.Response) -> None:
    """No 5xx (``/ready`` too: the emulator has every model); every 4xx an OpenAI envelope."""
    request = response.request
    where = f"{request.method} {request.url.path} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    if response.status_code < 400:
        return
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, where
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"], where
    assert isinstance(error["type"], str) and error["type"], where
    assert "code" in error and "param" in error, where


def tcp_socket() -> socket.socket:
    """A listening socket whose connections asyncio sets TCP_NODELAY on, as uvicorn's own are.

    asyncio does so only for sockets made with ``proto=IPPROTO_TCP``; ``free_socket``'s have
    proto 0, so each answer's body waited for the client's delayed ACK: 40 ms a request."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    tmp = tmp_path_factory.mktemp("fuzz")
    bank = write_bank(tmp / "projects" / "harborlight").workspace
    with OllamaEmulator(fast_profile()) as emulator:
        server = {
            "server": {"max_body_bytes": MAX_BODY},
            "ollama": {"base_url": emulator.base_url, "connect_timeout_s": 1},
            "embedded": {"mode": "never"},
            "logging": {"level": "ERROR", "decision_log": {"path": str(tmp / "decisions.jsonl")}},
            "routing": {
                "budget": {"vram_bytes": 16 * 1024**3, "ram_bytes": 128 * 1024**3},
                "warm_pinned": False,
            },
            "memory": {
                "vector_store_path": str(tmp / "store"),
                "embedder": "sentence-transformers",
                "allowed_roots": [str(tmp / "projects")],
                "watch": False,
            },
        }
        settings_ = load_settings(write_config(tmp / "config", server), environ={}, env_file=None)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(conftest, "free_socket", tcp_socket)
            router = RouterThread(settings_).start()
        fuzz = Fuzzer(router, str(bank))
        # Load the embedder (and warm it up) before the count starts.
        warm = fuzz.send("POST", "/v1/embeddings", encode(TEMPLATES["/v1/embeddings"]))
        assert warm.status_code == 200
        fuzz.sent, fuzz.seconds, fuzz.statuses = 0, 0.0, {}
        try:
            yield fuzz
        finally:
            fuzz.client.close()
            router.stop()
    statuses = sorted(fuzz.statuses.items())
    print(f"\nfuzz: {fuzz.sent} requests in {fuzz.seconds:.1f}s, by status {statuses}")


def encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # ensure_ascii: lone surrogates survive


def url_safe(text: str) -> str:
    """Any text as a URL's path or query: lone surrogates (not UTF-8) dropped, the rest
    percent-encoded, so the router decodes NULs, controls and odd unicode."""
    return quote(text.encode("utf-8", "ignore"), safe="")


def run(fuzzer: Fuzzer, record_property: Any, test: Any) -> None:
    """Run a ``@given`` test; print and record how many requests it sent and how long."""
    sent, seconds = fuzzer.sent, fuzzer.seconds
    test()
    sent, seconds = fuzzer.sent - sent, fuzzer.seconds - seconds
    record_property("fuzz_requests", sent)
    print(
        f"\nfuzz: {sent} generated requests in {seconds:.1f}s (statuses so far {fuzzer.statuses})"
    )
    assert sent > 0


def test_mutated_requests(fuzzer: Fuzzer, record_property: Any) -> None:
    """Valid requests to each POST endpoint with fields replaced by hostile values or removed."""

    @settings(FUZZ, max_examples=450)
    @given(path=st.sampled_from(sorted(TEMPLATES)), stream=st.booleans(), data=st.data())
    def mutated(path: str, stream: bool, data: st.DataObject) -> None:
        body = json.loads(json.dumps(TEMPLATES[path]))
        if stream and path in ("/v1/chat/completions", "/v1/completions"):
            body["stream"] = True
        for op, where, value in data.draw(mutations(path), label="mutations"):
            mutate(body, op, where, value)
        raw = encode(body).replace(b"{bank}", json.dumps(fuzzer.bank)[1:-1].encode())
        fuzzer.send("POST", path, raw, headers={"content-type": "application/json"})

    run(fuzzer, record_property, mutated)


def test_deep_nesting_anywhere(fuzzer: Fuzzer, record_property: Any) -> None:
    """A valid request with one place nested deep: a 400 naming the place past 64 levels,
    never a 500 (a tool schema 130 objects deep failed re-encoding it for Ollama)."""

    @settings(FUZZ, max_examples=150)
    @given(
        where=st.sampled_from(FREE_FORM) | st.sampled_from(EVERY_PLACE),
        depth=st.sampled_from(DEPTHS),
        shape=st.sampled_from(["l", "d", "x"]),
        leaf=st.sampled_from([{}, [], "x", {"type": "string"}]),
    )
    def nested(where: tuple[str, tuple[str | int, ...]], depth: int, shape: str, leaf: Any) -> None:
        path, place = where
        body = json.loads(json.dumps(TEMPLATES[path]).replace("{bank}", fuzzer.bank))
        mutate(body, "set", place, nest(leaf, depth, shape))
        fuzzer.send("POST", path, encode(body), headers={"content-type": "application/json"})

    run(fuzzer, record_property, nested)


RAW_TEMPLATES = [encode(t) for t in TEMPLATES.values()]
BAD_BYTES = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"", b"}", b'"', b"\\u0000"]


def test_malformed_bodies(fuzzer: Fuzzer, record_property: Any) -> None:
    """Bodies that are not the JSON object expected: bytes, other JSON types, broken JSON."""

    @settings(FUZZ, max_examples=200)
    @given(
        path=st.sampled_from(sorted(TEMPLATES)),
        body=st.one_of(
            st.binary(max_size=200),  # invalid UTF-8, control bytes, nothing at all
            values.map(encode),  # a JSON value of any type
            deep.map(encode),
            st.builds(
                lambda raw, cut, junk: raw[:cut] + junk + raw[cut:],
                st.sampled_from(RAW_TEMPLATES),
                st.integers(0, 200),
                st.sampled_from(BAD_BYTES),
            ),
            st.sampled_from(RAW_TEMPLATES).map(lambda raw: raw[:-3]),  # cut short
            st.sampled_from([1023, 1024, 1025, 100_000]).map(lambda n: b"[" * n + b"]" * n),
        ),
        content_type=st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"]),
    )
    def malformed(path: str, body: bytes, content_type: str) -> None:
        fuzzer.send("POST", path, body, headers={"content-type": content_type})

    run(fuzzer, record_property, malformed)


GET_PATHS = ["/v1/models", "/v1/memory/status", "/health", "/ready", "/metrics"]


def test_every_endpoint_any_method(fuzzer: Fuzzer, record_property: Any) -> None:
    """Every endpoint (and made-up ones beside them) with any method, query and body."""

    @settings(FUZZ, max_examples=200)
    @given(
        method=st.sampled_from(["GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        path=st.one_of(
            st.sampled_from([*GET_PATHS, *TEMPLATES]),
            odd_text.map(lambda text: "/v1/models/" + url_safe(text)),
            odd_text.map(lambda text: "/v1/memory/" + url_safe(text)),
        ),
        query=st.lists(st.tuples(st.text(max_size=6), odd_text), max_size=3).map(
            lambda pairs: "&".join(f"{url_safe(k)}={url_safe(v)}" for k, v in pairs)
        ),
        body=st.none() | values.map(encode),
        request_id=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=100),
    )
    def any_method(method: str, path: str, query: str, body: bytes | None, request_id: str) -> None:
        headers = {"x-request-id": request_id}
        fuzzer.send(method, f"{path}?{query}" if query else path, body, headers=headers)

    run(fuzzer, record_property, any_method)
