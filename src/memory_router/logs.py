"""structlog set-up: JSON lines (or console lines) on stderr, with the request id bound.

The router's own lines go straight through structlog. Every other logger (uvicorn's,
onnxruntime's, chromadb's, warnings) reaches the root logger's one handler, which renders
its records with the same processors, so with ``json_logs`` every stderr line is JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

__all__ = ["configure_logging"]

# uvicorn's loggers: with log_config=None it installs no handlers, and they must not have any
# (a handler of their own would write plain text beside the JSON).
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class _RouterHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler installed here (told apart from others on a second set-up); it
    writes to whatever ``sys.stderr`` is at the time, as the console logger does."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _dumps_text(data: Any, **_: Any) -> str:
    return orjson.dumps(data, default=str).decode()


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    """Configure structlog and the standard library's root logger once, at start-up."""
    numeric = logging.getLevelName(level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors = list(shared)
    renderer: structlog.types.Processor
    if json_logs:
        # orjson and a bytes logger: a log line per request must cost microseconds, not more.
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory: Any = structlog.BytesLoggerFactory(file=sys.stderr.buffer)
        renderer = structlog.processors.JSONRenderer(serializer=_dumps_text)
        finish: list[structlog.types.Processor] = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        processors.append(renderer)
        finish = []

        def factory(*_: Any) -> structlog.PrintLogger:
            return structlog.PrintLogger(file=sys.stderr)  # whatever stderr is at the time

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=json_logs,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish, renderer],
    )
    handler = _RouterHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RouterHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _UVICORN:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # uvicorn's per-request access lines duplicate the router's own request log.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn() from libraries: a log record, not raw text
