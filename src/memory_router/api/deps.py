"""What routes depend on: the service, the API-key check, and a bounded JSON body reader."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import orjson
import structlog
from fastapi import Depends, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..errors import AuthenticationFailed, ClientGone, InvalidRequest, PayloadTooLarge
from ..service import RouterService

__all__ = ["MAX_JSON_DEPTH", "Authorized", "JSONBytes", "Service", "read_json"]

log = structlog.get_logger("memory_router.api")

MAX_JSON_DEPTH = 64
"""How deep a request body's arrays and objects may nest. A JSON schema a client sends as a
tool's parameters is passed on to the backend, and orjson refuses to encode past 254 levels:
a body deeper than that used to fail as a 500 on the way out. Real schemas stay under 20."""


class JSONBytes(Response):
    """A JSON response rendered by orjson (several times faster than the standard one)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def get_service(request: Request) -> RouterService:
    service: RouterService = request.app.state.service
    return service


async def check_api_key(request: Request) -> None:
    """With keys configured, require ``Authorization: Bearer <key>``; else accept anything."""
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "missing API key: send `Authorization: Bearer <key>` with a key from the router's "
            "server.api_keys"
        )
    offered = token.strip().encode()
    # Compare against every key, always, so the time taken says nothing about which matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(offered, key)
    if not matched:
        raise AuthenticationFailed("the API key is not valid for this router")


async def read_json(request: Request) -> Any:
    """The request body as JSON, refusing bodies over the configured limit (413)."""
    limit: int = request.app.state.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(limit))
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(_too_large(limit))
            chunks.append(chunk)
    except (ClientDisconnect, ConnectionError):
        # Not the router's failure: no traceback, not a 500; counted as client_gone.
        log.info("client_gone", path=request.url.path, read_bytes=size)
        request.app.state.service.metrics.gone_unread()
        raise ClientGone("the client closed the connection while sending its body") from None
    body = b"".join(chunks)
    if not body.strip():
        raise InvalidRequest("the request body is empty: send a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if type(data) is dict or type(data) is list:
        _check_depth(data, MAX_JSON_DEPTH)
    return data


def _check_depth(data: dict[str, Any] | list[Any], limit: int) -> None:
    """Refuse (400) arrays and objects nested deeper than ``limit``; the outermost is level 1.

    Level by level over lists, not recursion: the walk itself cannot run out of stack. On the
    hot path: 2-45 µs for Cline's requests (the most for native tool calls' schemas)."""
    level: list[Any] = [data]
    depth = 1
    while level:
        deeper: list[Any] = []
        push = deeper.append
        for value in level:
            for child in value.values() if type(value) is dict else value:
                kind = type(child)
                if kind is dict or kind is list:
                    push(child)
        if deeper and depth >= limit:
            path = _too_deep_path(data, limit)
            shown = ".".join(path[:12]) + (".…" if len(path) > 12 else "")
            raise InvalidRequest(
                f"the request body is nested deeper than {limit} levels (at {shown}): "
                f"the router takes arrays and objects up to {limit} levels deep",
                param=".".join(path[:4]),
            )
        level = deeper
        depth += 1


def _too_deep_path(data: dict[str, Any] | list[Any], limit: int) -> list[str]:
    """The path (keys and indices) to the first value nested past ``limit``: its first few
    steps name the field (``tools.0.function.parameters``), as a validation error would."""
    stack: list[tuple[Any, list[str]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        if len(path) >= limit:
            return path
        items = value.items() if type(value) is dict else enumerate(value)
        stack.extend(
            (child, [*path, str(key)])
            for key, child in reversed(list(items))
            if type(child) is dict or type(child) is list
        )
    return []


def _too_large(limit: int) -> str:
    return (
        f"the request body exceeds the router's limit of {limit} bytes "
        f"(server.max_body_bytes): start a new task or raise the limit"
    )


Service = Annotated[RouterService, Depends(get_service)]
Authorized = Depends(check_api_key)
