"""The router's exception tree: every error a client can see, with its HTTP status.

```
RouterError                      500 server_error        (our own bugs end up here)
 ├── InvalidRequest              400 invalid_request_error
 │    ├── ContextLengthExceeded  400 invalid_request_error / context_length_exceeded
 │    └── ModelNotCapable        400 invalid_request_error / model_not_capable
 ├── AuthenticationFailed        401 authentication_error / invalid_api_key
 ├── WorkspaceNotAllowed         403 permission_error / workspace_not_allowed
 ├── ModelNotFound               404 invalid_request_error / model_not_found
 │    └── ModelNotPulled         404 (its host lacks it: another host may have it)
 ├── MemoryDisabled              404 invalid_request_error / memory_disabled
 ├── PayloadTooLarge             413 invalid_request_error / payload_too_large
 ├── RateLimited                 429 rate_limit_error (carries Retry-After)
 │    └── BackendBusy            429 (the model server's queue is full: retried, then 429)
 ├── ClientGone                  499 client_gone / client_gone (nobody reads the answer)
 └── BackendError                502 upstream_error
      ├── BackendUnavailable     503 service_unavailable (carries Retry-After)
      └── BackendTimeout         504 timeout
ConfigError                      not an HTTP error: the CLI prints it and exits 2
```

Foreign exceptions (aiohttp, pydantic, xllamacpp) are translated into this tree at one seam
each; nothing maps ``ValueError`` or ``TypeError`` wholesale, so our own bugs stay 500s.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationFailed",
    "BackendBusy",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "ClientGone",
    "ConfigError",
    "ContextLengthExceeded",
    "InvalidRequest",
    "MemoryDisabled",
    "ModelNotCapable",
    "ModelNotFound",
    "ModelNotPulled",
    "PayloadTooLarge",
    "RateLimited",
    "RouterError",
    "WorkspaceNotAllowed",
]


class RouterError(Exception):
    """Base of every error the API renders; also the 500 for anything unexpected."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def to_body(self) -> dict[str, Any]:
        """The OpenAI error envelope for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After`` where the client should retry)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class InvalidRequest(RouterError):
    status = 400
    type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.reason = reason or message
        """Why, without the advice on what to do that ends ``message`` (a configured
        escalation gives it as the reason for escalating)."""


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class ModelNotCapable(InvalidRequest):
    """The request needs something (images, tools) that no model it may go to takes."""

    code = "model_not_capable"


class AuthenticationFailed(RouterError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class WorkspaceNotAllowed(RouterError):
    """A request named a workspace outside the memory bank's allowed roots."""

    status = 403
    type = "permission_error"
    code = "workspace_not_allowed"


class ModelNotFound(RouterError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class ModelNotPulled(ModelNotFound):
    """The model is configured but its host does not have it: another host may."""


class MemoryDisabled(RouterError):
    """A memory endpoint was asked for while ``memory.enabled`` is false."""

    status = 404
    type = "invalid_request_error"
    code = "memory_disabled"


class PayloadTooLarge(RouterError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class ClientGone(RouterError):
    """The client hung up before the router could answer (while it sent its body): no one
    reads this answer; the status is nginx's "client closed request", as logs count it."""

    status = 499
    type = "client_gone"
    code = "client_gone"


class RateLimited(RouterError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BackendBusy(RateLimited):
    """The model server's own queue is full (Ollama's 503): another host may take it."""


class BackendError(RouterError):
    """The model server failed in a way the client cannot fix by changing the request."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class BackendUnavailable(BackendError):
    status = 503
    type = "service_unavailable"
    code = "backend_unavailable"


class BackendTimeout(BackendError):
    status = 504
    type = "timeout"
    code = "backend_timeout"


class ConfigError(Exception):
    """Invalid configuration: names the file, the key and what is wrong."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason
