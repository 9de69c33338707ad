"""What routes depend on: the service, the API-key check, and a bounded JSON body reader."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from ..errors import AuthenticationFailed, InvalidRequest, PayloadTooLarge
from ..service import RouterService

__all__ = ["Authorized", "Service", "read_json"]


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
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(limit))
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise InvalidRequest("the request body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None


def _too_large(limit: int) -> str:
    return (
        f"the request body exceeds the router's limit of {limit} bytes "
        f"(server.max_body_bytes): start a new task or raise the limit"
    )


Service = Annotated[RouterService, Depends(get_service)]
Authorized = Depends(check_api_key)
