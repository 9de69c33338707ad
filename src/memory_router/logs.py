"""structlog set-up: JSON lines (or console lines) on stderr, with the request id bound."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

__all__ = ["configure_logging"]


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    """Configure structlog and the standard library's root logger once, at start-up."""
    numeric = logging.getLevelName(level.upper())
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json_logs:
        # orjson and a bytes logger: a log line per request must cost microseconds, not more.
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory: Any = structlog.BytesLoggerFactory(file=sys.stderr.buffer)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))

        def factory(*_: Any) -> structlog.PrintLogger:
            return structlog.PrintLogger(file=sys.stderr)  # whatever stderr is at the time

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=json_logs,
    )
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s"
    )
    # uvicorn's per-request access lines duplicate the router's own request log.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
