"""With json_logs, every line on stderr is JSON: structlog's and every stdlib logger's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

# Run in a process of its own: logging's set-up is global, and this one is the server's.
SCRIPT = textwrap.dedent(
    """
    import logging, warnings
    import structlog, uvicorn
    from memory_router.logs import configure_logging

    configure_logging("INFO", json_logs=True)
    # What uvicorn does with serve's log_config=None: it must not bring handlers of its own.
    uvicorn.Config("memory_router.api.app:create_app", log_config=None)
    structlog.get_logger("memory_router.api").info("router_line", answer=42)
    structlog.contextvars.bind_contextvars(request_id="req-1")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1234)
    logging.getLogger("uvicorn.access").info("an access line, muted")
    logging.getLogger("onnxruntime").warning("onnxruntime says %s", "hello")
    logging.info("Quantization parameters for tensor: not specified")  # the root logger
    logging.getLogger("chromadb.telemetry").debug("below the level: not written")
    warnings.warn("a library warns", UserWarning)
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("watchfiles").exception("the watcher failed")
    """
)


def run_script() -> tuple[list[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stderr.splitlines(), result.stderr


def test_json_logs_render_every_stdlib_logger_as_json() -> None:
    lines, stderr = run_script()
    records: list[dict[str, Any]] = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON: {line!r}\n--- stderr:\n{stderr}") from None
    by_event = {record["event"]: record for record in records}
    assert by_event["router_line"]["answer"] == 42
    started = by_event["Started server process [1234]"]
    assert (started["logger"], started["level"], started["request_id"]) == (
        "uvicorn.error",
        "info",
        "req-1",
    )
    assert by_event["onnxruntime says hello"]["level"] == "warning"
    assert by_event["Quantization parameters for tensor: not specified"]["logger"] == "root"
    (warned,) = [r for r in records if "a library warns" in r["event"]]
    assert warned["logger"] == "py.warnings"
    failed = by_event["the watcher failed"]
    assert failed["level"] == "error" and "ZeroDivisionError" in failed["exception"]
    assert "an access line, muted" not in by_event
    assert "below the level: not written" not in by_event
    assert all(record["timestamp"].endswith("Z") for record in records)
    assert len(records) == 6
