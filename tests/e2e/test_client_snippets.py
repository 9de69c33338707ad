"""docs/ide-setup.md's Python snippets, run as written against a router in front of the Ollama
emulator: only the doc's ``http://localhost:8000/v1`` is replaced by the test router's URL."""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, RouterFactory
from tests.ollama_emulator import OllamaEmulator, Script

pytestmark = pytest.mark.e2e

GUIDE = REPO / "docs" / "ide-setup.md"
DOC_URL = "http://localhost:8000/v1"
MARKED = re.compile(r"<!-- snippet: ([\w-]+) -->\s*\n```python\n(.*?)\n```", re.DOTALL)


def snippet(name: str) -> str:
    """The fenced python block that follows ``<!-- snippet: NAME -->`` in the guide."""
    found: dict[str, str] = dict(MARKED.findall(GUIDE.read_text(encoding="utf-8")))
    assert name in found, f"no python block marked `<!-- snippet: {name} -->` in {GUIDE}"
    return found[name]


def run(name: str, base_url: str) -> tuple[str, dict[str, Any]]:
    """Execute the snippet with the router's URL in place of the doc's; its stdout and names."""
    source = snippet(name)
    assert source.count(DOC_URL) == 1, f"the {name} snippet should name {DOC_URL} once"
    code = compile(source.replace(DOC_URL, base_url + "/v1"), f"{GUIDE}#{name}", "exec")
    out = io.StringIO()
    # The snippet's own print, not a redirected sys.stdout: the router in this process logs
    # there too.
    namespace: dict[str, Any] = {
        "__name__": f"snippet_{name.replace('-', '_')}",
        "print": functools.partial(print, file=out),
    }
    exec(code, namespace)  # the documented snippet is what is under test
    return out.getvalue(), namespace


def test_every_marked_snippet_is_in_its_clients_section() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    heading_of = {}
    for match in MARKED.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.MULTILINE)
        heading_of[match.group(1)] = headings[-1]
    assert heading_of == {
        "openai-sdk": "The openai SDK (Python)",
        "langchain": "LangChain (`ChatOpenAI`)",
    }


def test_the_openai_sdk_snippet_streams_a_reply(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    emulator.enqueue(Script(content="Hello from the router, one word at a time."))
    out, namespace = run("openai-sdk", router.base_url)
    lines = out.splitlines()
    assert lines == ["context window: 32768", "Hello from the router, one word at a time."]
    namespace["client"].close()
    chats = [r for r in emulator.requests if r.path == "/api/chat"]
    assert len(chats) == 1 and chats[0].json["stream"] is True
    assert chats[0].json["messages"][-1]["content"] == "Say hello in one sentence."


def test_the_langchain_snippet_streams_text_and_returns_a_tool_call(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    arguments = {"city": "Lisbon"}
    emulator.enqueue(
        Script(content="Hello there, streamed in pieces."),
        Script(tool_calls=[{"name": "get_weather", "arguments": arguments}]),
    )
    out, namespace = run("langchain", router.base_url)
    assert out.splitlines() == [
        "Hello there, streamed in pieces.",
        "tool call: get_weather {'city': 'Lisbon'}",
    ]
    reply = namespace["reply"]
    assert type(reply).__name__ in ("AIMessage", "AIMessageChunk")
    assert [(call["name"], call["args"]) for call in reply.tool_calls] == [
        ("get_weather", arguments)
    ]
    assert reply.tool_calls[0]["id"]
    chats = [r for r in emulator.requests if r.path == "/api/chat"]
    assert len(chats) == 2 and all(chat.json["stream"] is True for chat in chats)
    tools = chats[1].json["tools"]
    assert [tool["function"]["name"] for tool in tools] == ["get_weather"]
    assert tools[0]["function"]["parameters"]["properties"]["city"]["type"] == "string"

    # Another streamed call on the snippet's own ChatOpenAI: the chunks join to the reply.
    said = "Three small chunks, then the end."
    emulator.enqueue(Script(content=said))
    chunks = [chunk.content for chunk in namespace["llm"].stream("Once more, please.")]
    assert len([c for c in chunks if c]) > 1, "the reply arrives in several chunks"
    assert "".join(chunks) == said


def test_the_snippets_name_the_router_as_the_guide_says() -> None:
    """The copy-paste values in the snippets are the ones the guide's table states."""
    for name in ("openai-sdk", "langchain"):
        source = snippet(name)
        assert DOC_URL in source and '"cline-memory-router"' in source
        assert 'api_key="any-string"' in source
    assert "streaming=True" in snippet("langchain") and ".bind_tools([" in snippet("langchain")


def test_the_guide_is_linked_from_the_readme() -> None:
    assert "docs/ide-setup.md" in (REPO / "README.md").read_text(encoding="utf-8")
    assert Path(GUIDE).is_file()
