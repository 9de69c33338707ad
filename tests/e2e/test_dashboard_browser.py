"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The router runs in front of the Ollama emulator with the example memory bank indexed. The
page must load without console errors, show a routed request's decision within 2 s and the
model it loaded on its host's residency bar, and find a memory-bank hit. A screenshot is
saved under the test's tmp_path (and, with ``DASHBOARD_SCREENSHOT=<path>``, there too: the
documentation's ``docs/dashboard.png`` is made that way).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, RouterFactory
from tests.ollama_emulator import OllamaEmulator

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
VIRTUAL = "cline-memory-router"


def wait_for(predicate: Any, timeout: float, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(step)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: apt-get install -y chromium"
)
def test_dashboard_in_chromium(
    tmp_path: Path, emulator: OllamaEmulator, make_router: RouterFactory
) -> None:
    from playwright.sync_api import sync_playwright

    workspace = tmp_path / "tidewater"
    shutil.copytree(REPO / "examples" / "tidewater", workspace)
    router = make_router(
        emulator.base_url,
        memory={
            "vector_store_path": str(tmp_path / "store"),
            "embedder": "sentence-transformers",
            "workspace_roots": [str(workspace)],
        },
    )
    client = httpx.Client(base_url=router.base_url, timeout=60)

    def indexed() -> bool:
        banks = client.get("/v1/memory/status").json()["banks"]
        return bool(banks) and banks[0]["chunks"] > 0

    wait_for(indexed, timeout=60)

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "requestfailed",
                lambda r: (
                    errors.append(f"{r.url}: {r.failure}")
                    if "/dashboard/events" not in r.url  # the stream ends when the page closes
                    else None
                ),
            )
            page.goto(router.base_url + "/dashboard")
            page.wait_for_selector("#conn .dot.ok", timeout=5000)  # the stream is live
            page.wait_for_selector("#banks table", timeout=10_000)

            answer = client.post(
                "/v1/chat/completions",
                json={
                    "model": VIRTUAL,
                    "stream": False,
                    "messages": [{"role": "user", "content": "hi, how are you today?"}],
                },
            )
            assert answer.status_code == 200, answer.text
            model = answer.json()["model"]
            sent = time.monotonic()
            page.wait_for_selector(f'#decisions tbody tr[data-model="{model}"]', timeout=2000)
            assert time.monotonic() - sent < 2.5  # the row came with the decision event
            row = page.locator(f'#decisions tbody tr[data-model="{model}"]').first
            assert "ollama" in row.inner_text()
            bar = page.locator(f'#residency .host[data-host="ollama"] .seg[data-model="{model}"]')
            bar.wait_for(timeout=6000)  # the next state event (every 2 s) after the refresh
            assert bar.is_visible()
            assert "up" in page.locator('#hosts [data-backend="ollama"]').inner_text()
            page.wait_for_selector("#chart svg rect", timeout=4000)

            page.fill("#query", "how are conflicting offline edits resolved?")
            page.click("#searchform button")
            hit = page.locator("#hits .hit .where").first
            hit.wait_for(timeout=10_000)
            assert "memory-bank/systemPatterns.md" in hit.inner_text()
            assert "Conflict resolution" in page.locator("#hits .hit").first.inner_text()

            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            if target := os.environ.get("DASHBOARD_SCREENSHOT"):
                page.screenshot(path=target, full_page=True)
            print(f"screenshot: {tmp_path / 'dashboard.png'}")
            page.close()
        finally:
            browser.close()
    client.close()
    assert errors == [], errors
