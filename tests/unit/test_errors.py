"""The exception tree: each class's status, type and code, as its module docstring draws it."""

from __future__ import annotations

import re

import pytest

from memory_router import errors
from memory_router.errors import (
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ClientGone,
    ConfigError,
    ContextLengthExceeded,
    InvalidRequest,
    MemoryDisabled,
    ModelNotCapable,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    RouterError,
    WorkspaceNotAllowed,
)

# (class, status, type, code): the contract clients see, written out by hand.
TREE: list[tuple[type[RouterError], int, str, str | None]] = [
    (RouterError, 500, "server_error", None),
    (InvalidRequest, 400, "invalid_request_error", None),
    (ContextLengthExceeded, 400, "invalid_request_error", "context_length_exceeded"),
    (ModelNotCapable, 400, "invalid_request_error", "model_not_capable"),
    (AuthenticationFailed, 401, "authentication_error", "invalid_api_key"),
    (WorkspaceNotAllowed, 403, "permission_error", "workspace_not_allowed"),
    (ModelNotFound, 404, "invalid_request_error", "model_not_found"),
    (MemoryDisabled, 404, "invalid_request_error", "memory_disabled"),
    (PayloadTooLarge, 413, "invalid_request_error", "payload_too_large"),
    (RateLimited, 429, "rate_limit_error", "rate_limit_exceeded"),
    (ClientGone, 499, "client_gone", "client_gone"),
    (BackendError, 502, "upstream_error", "upstream_error"),
    (BackendUnavailable, 503, "service_unavailable", "backend_unavailable"),
    (BackendTimeout, 504, "timeout", "backend_timeout"),
]

PARENTS: dict[type[RouterError], type[Exception]] = {
    RouterError: Exception,
    InvalidRequest: RouterError,
    ContextLengthExceeded: InvalidRequest,
    ModelNotCapable: InvalidRequest,
    AuthenticationFailed: RouterError,
    WorkspaceNotAllowed: RouterError,
    ModelNotFound: RouterError,
    MemoryDisabled: RouterError,
    PayloadTooLarge: RouterError,
    RateLimited: RouterError,
    ClientGone: RouterError,
    BackendError: RouterError,
    BackendUnavailable: BackendError,
    BackendTimeout: BackendError,
}

# One drawn line: tree glyphs, the class name, the status, the type, optionally "/ code".
_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Za-z]+)\s+(?P<status>\d{3})\s+(?P<rest>.*)$")


def docstring_tree() -> dict[str, tuple[int, str, str | None, str | None]]:
    """name -> (status, type, code or None, parent name or None), parsed from the docstring."""
    assert errors.__doc__ is not None
    drawing = errors.__doc__.split("```")[1]
    out: dict[str, tuple[int, str, str | None, str | None]] = {}
    stack: list[tuple[int, str]] = []  # (depth, name)
    for line in drawing.strip("\n").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        depth = len(match["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        stack.append((depth, match["name"]))
        rest = re.sub(r"\(.*\)", "", match["rest"]).strip()
        kind, _, code = (part.strip() for part in rest.partition("/"))
        out[match["name"]] = (int(match["status"]), kind, code or None, parent)
    return out


def test_docstring_draws_every_http_error_class() -> None:
    drawn = set(docstring_tree())
    http_classes = {name for name in errors.__all__ if name != "ConfigError"}
    assert drawn == http_classes


@pytest.mark.parametrize(("cls", "status", "kind", "code"), TREE)
def test_class_matches_docstring(
    cls: type[RouterError], status: int, kind: str, code: str | None
) -> None:
    drawn_status, drawn_type, drawn_code, _ = docstring_tree()[cls.__name__]
    assert (cls.status, cls.type) == (drawn_status, drawn_type)
    if drawn_code is not None:
        assert cls.code == drawn_code
    assert (cls.status, cls.type, cls.code) == (status, kind, code)


@pytest.mark.parametrize(("cls", "parent"), list(PARENTS.items()))
def test_hierarchy_matches_docstring(cls: type[RouterError], parent: type[Exception]) -> None:
    assert cls.__bases__ == (parent,)
    drawn_parent = docstring_tree()[cls.__name__][3]
    assert drawn_parent == (None if parent is Exception else parent.__name__)


@pytest.mark.parametrize(("cls", "status", "kind", "code"), TREE)
def test_to_body_shape(cls: type[RouterError], status: int, kind: str, code: str | None) -> None:
    error = cls("something went wrong", param="messages.0.content")
    assert error.to_body() == {
        "error": {
            "message": "something went wrong",
            "type": kind,
            "param": "messages.0.content",
            "code": code,
        }
    }
    assert str(error) == "something went wrong"
    assert error.status == status


def test_to_body_defaults_param_to_none() -> None:
    assert InvalidRequest("bad").to_body() == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}
    }


def test_code_override_is_per_instance() -> None:
    error = InvalidRequest("bad", code="invalid_value")
    assert error.to_body()["error"]["code"] == "invalid_value"
    assert InvalidRequest.code is None
    assert InvalidRequest("other").code is None


@pytest.mark.parametrize(("cls", "status", "kind", "code"), TREE)
def test_no_retry_after_means_no_headers(
    cls: type[RouterError], status: int, kind: str, code: str | None
) -> None:
    assert cls("x").headers() == {}


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(2, "2"), (2.4, "2"), (2.6, "3"), (30.0, "30"), (0.2, "1"), (0, "1"), (-5, "1")],
)
def test_retry_after_header_is_rounded_and_at_least_one(retry_after: float, header: str) -> None:
    assert RateLimited("slow down", retry_after=retry_after).headers() == {"Retry-After": header}
    assert BackendUnavailable("down", retry_after=retry_after).headers() == {"Retry-After": header}


def test_config_error_is_not_an_http_error() -> None:
    error = ConfigError("config/models.yaml", "models.0.num_ctx", "too big")
    assert not isinstance(error, RouterError)
    assert (error.source, error.key, error.reason) == (
        "config/models.yaml",
        "models.0.num_ctx",
        "too big",
    )
    assert str(error) == "config/models.yaml: models.0.num_ctx: too big"
