"""The least an OpenAI-to-Ollama relay in Python can do: the floor for ``bench/overhead.py``.

A raw ASGI app on the same server stack as the router (uvicorn, uvloop, httptools) and the same
upstream client (aiohttp): it parses the OpenAI body, sends the Ollama body the router would
send for a plain chat turn, and turns the reply into an OpenAI chat completion. No routing,
validation, residency control, logging or error handling. What it adds to a request on a
machine is what any Python relay would add there; the router's figures are read against it.
Non-streamed only.

    python bench/bare_relay.py --port 8100 --upstream http://127.0.0.1:11500
"""

from __future__ import annotations

import argparse
import secrets
import time
from typing import Any

import aiohttp
import orjson
import uvicorn

MODEL = "qwen3:30b-a3b"


def make_app(upstream: str) -> Any:
    session: aiohttp.ClientSession | None = None

    async def lifespan(receive: Any, send: Any) -> None:
        nonlocal session
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if session is not None:
                    await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def respond(send: Any, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] != "/v1/chat/completions":
            await respond(send, 200, b"{}")
            return
        request = orjson.loads(body)
        options = {"num_ctx": 32768, "seed": request.get("seed")}
        sent = {"model": MODEL, "messages": request["messages"], "stream": False,
                "options": options, "keep_alive": -1}  # fmt: skip
        assert session is not None
        async with session.post(
            f"{upstream}/api/chat", data=orjson.dumps(sent),
            headers={"Content-Type": "application/json"},
        ) as reply:  # fmt: skip
            answer = orjson.loads(await reply.read())
        completion = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer["message"]["content"]},
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": answer.get("prompt_eval_count", 0),
                "completion_tokens": answer.get("eval_count", 0),
            },
        }  # fmt: skip
        await respond(send, 200, orjson.dumps(completion))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the Ollama-shaped upstream's URL")
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.upstream.rstrip("/")), host="127.0.0.1", port=args.port, loop="uvloop",
        http="httptools", log_level="warning", access_log=False, lifespan="on",
    )  # fmt: skip


if __name__ == "__main__":
    main()
