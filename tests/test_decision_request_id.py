"""A decision record carries the request id of its request (its log line, its response)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import structlog

from memory_router.decision_log import DecisionLog, read_records
from memory_router.settings import DecisionLogSettings
from tests.conftest import RouterFactory
from tests.ollama_emulator import OllamaEmulator


def records_of(path: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10  # records are written just after the answer, in a batch
    while True:
        records = read_records(path) if path.exists() else []
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def test_decision_records_carry_their_requests_ids(
    emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = make_router(emulator.base_url)
    body = {"model": "cline-memory-router", "messages": [{"role": "user", "content": "Fix it"}]}
    ids = []
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        for stream, given in ((False, None), (True, None), (False, "client-chosen-id")):
            headers = {"x-request-id": given} if given else {}
            request = {**body, "stream": stream}
            reply = client.post("/v1/chat/completions", json=request, headers=headers)
            assert reply.status_code == 200
            ids.append(reply.headers["x-request-id"])
    assert ids[2] == "client-chosen-id" and len(set(ids)) == 3
    records = records_of(router.settings.config.logging.decision_log.path, 3)
    assert sorted(record.get("request_id") for record in records) == sorted(ids)


def test_a_record_written_outside_a_request_has_no_request_id(tmp_path: Path) -> None:
    log = DecisionLog(DecisionLogSettings(path=tmp_path / "d.jsonl"))
    try:
        structlog.contextvars.bind_contextvars(request_id="abc")
        log.write({"model": "m", "request_id_of": "inside"})
        structlog.contextvars.unbind_contextvars("request_id")
        log.write({"model": "m", "request_id_of": "outside"})
        assert log.flush(timeout=10)
    finally:
        log.close()
    inside, outside = read_records(tmp_path / "d.jsonl")
    assert inside["request_id"] == "abc"
    assert list(inside)[:2] == ["ts", "request_id"]
    assert "request_id" not in outside
