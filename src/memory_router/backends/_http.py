"""The one place aiohttp is imported: a small JSON/stream client and its error seam.

Every aiohttp exception is translated into the router's error tree here
(``ClientErrors``), so backends never see a foreign exception. A streamed response is
closed in ``finally``: when the router's client goes away, the generator is closed and the
upstream connection is dropped at once, which makes Ollama abort the generation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import BackendError, BackendTimeout, BackendUnavailable, RouterError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["ClientErrors", "ErrorMapper", "HttpClient"]

# (status, decoded body, model the request was for) -> the error to raise
ErrorMapper = Callable[[int, Any, str | None], RouterError]


class ClientErrors:
    """Translate aiohttp and timeout exceptions into router errors, around each upstream call.

    A class, not a generator-based context manager: it wraps every upstream call, and a
    generator-based one costs several times more to enter and leave."""

    __slots__ = ("base_url", "hint", "label")

    def __init__(self, label: str, base_url: str, hint: str) -> None:
        self.label, self.base_url, self.hint = label, base_url, hint

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if exc is None or isinstance(exc, RouterError):
            return
        import aiohttp

        label, base_url = self.label, self.base_url
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            raise BackendTimeout(f"{label} at {base_url} timed out: {exc or 'no answer'}") from exc
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError):
            raise BackendUnavailable(
                f"cannot reach {label} at {base_url}: {self.hint}", retry_after=5
            ) from exc
        if isinstance(exc, aiohttp.ClientError):
            raise BackendError(f"{label} at {base_url} broke the connection: {exc}") from exc


def _deadline(timeout: float | None) -> AbstractAsyncContextManager[Any]:
    # A request's own call has no deadline (the socket read timeout covers a stalled model).
    return asyncio.timeout(timeout) if timeout is not None else nullcontext()


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()


class HttpClient:
    """JSON requests and byte streams against one base URL, with one pooled session."""

    def __init__(
        self,
        base_url: str,
        *,
        label: str,
        hint: str,
        on_error: ErrorMapper,
        connect_timeout: float,
        read_timeout: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.label = label
        self.hint = hint
        self._on_error = on_error
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._headers = headers or {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp

            self._session = aiohttp.ClientSession(
                headers={"Content-Type": "application/json", **self._headers},
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout
                ),
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )
        return self._session

    def _errors(self) -> ClientErrors:
        return ClientErrors(self.label, self.base_url, self.hint)

    async def _raise_for_status(self, response: aiohttp.ClientResponse, model: str | None) -> None:
        if response.status >= 400:
            body = _decode(await response.read())
            raise self._on_error(response.status, body, model)

    async def get_json(self, path: str, *, timeout: float | None = None) -> Any:
        """GET a JSON document."""
        with self._errors():
            async with (
                _deadline(timeout),
                self._client().get(self.base_url + path) as response,
            ):
                await self._raise_for_status(response, None)
                return _decode(await response.read())

    async def post_json(
        self, path: str, body: Any, *, model: str | None = None, timeout: float | None = None
    ) -> Any:
        """POST a JSON body and return the decoded JSON reply."""
        with self._errors():
            async with (
                _deadline(timeout),
                self._client().post(self.base_url + path, data=orjson.dumps(body)) as response,
            ):
                await self._raise_for_status(response, model)
                return _decode(await response.read())

    async def stream(
        self, path: str, body: Any, *, model: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """POST a JSON body and yield the reply's bytes as they arrive."""
        with self._errors():
            response = await self._client().post(self.base_url + path, data=orjson.dumps(body))
            try:
                await self._raise_for_status(response, model)
                async for chunk in response.content.iter_any():
                    yield chunk
            finally:
                # Dropping the connection (not returning it to the pool) is what tells the
                # model server to stop generating when our client has gone away.
                if not response.content.at_eof():
                    response.close()
                else:
                    response.release()

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
