"""Real client CLIs installed from package indexes, talking to the router in front of the
Ollama emulator: aider (aider-chat 0.86.2, from PyPI, in its own venv .tools/aider) and the
Continue CLI (@continuedev/cli 1.5.47, ``cn``, from npm in .tools/continue).

Each runs headless with a scripted reply, HOME in a temporary folder and everything that
would reach the internet at start (update checks, analytics, model metadata) turned off.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, RouterFactory
from tests.ollama_emulator import OllamaEmulator, Script

pytestmark = pytest.mark.e2e

REPLY = "Hi there from the memory router!"
TIMEOUT_S = 180

AIDER = REPO / ".tools" / "aider" / "bin" / "aider"
CONTINUE = REPO / ".tools" / "continue" / "node_modules" / ".bin" / "cn"

# Preloaded into the Continue CLI: fetch() only to loopback. The CLI asks
# https://api.continue.dev/cn/info for its latest version as soon as it loads, with no
# option to turn that off; offline it fails and is ignored, and with this it never leaves.
LOOPBACK_FETCH = """\
const realFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (!["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) {
    return Promise.reject(new TypeError(`end-to-end test: no fetch to ${url.host}`));
  }
  return realFetch(input, init);
};
"""


def offline_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AIDER_"))}
    return {
        **env,
        "HOME": str(home),
        "NO_COLOR": "1",
        "CI": "true",
        # No proxies: the router is on loopback and nothing else may be reached.
        "NO_PROXY": "*",
        **extra,
    }


def chats(emulator: OllamaEmulator) -> list[object]:
    return [r for r in emulator.requests if r.path == "/api/chat"]


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=TIMEOUT_S,
    )  # fmt: skip


def test_aider_asks_the_router(
    emulator: OllamaEmulator, make_router: RouterFactory, tmp_path: Path
) -> None:
    if not AIDER.exists():
        pytest.skip("aider is not installed in .tools/aider: run ./scripts/setup.sh --dev")
    router = make_router(emulator.base_url)
    emulator.enqueue(Script(content=REPLY))
    home = tmp_path / "home"
    home.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "hello.py").write_text('print("hello")\n', encoding="utf-8")
    for git in (["init", "-q"], ["config", "user.name", "t"], ["config", "user.email", "t@t"]):
        subprocess.run(["git", *git], cwd=project, check=True)
    # Aider fetches litellm's model price map from GitHub for a model it has no metadata
    # for; metadata of its own keeps it from looking. LITELLM_LOCAL_MODEL_COST_MAP does the
    # same for litellm's copy.
    metadata = tmp_path / "model-metadata.json"
    metadata.write_text(json.dumps({"openai/cline-memory-router": {
        "max_input_tokens": 32768, "max_output_tokens": 4096, "max_tokens": 4096,
        "input_cost_per_token": 0, "output_cost_per_token": 0,
        "litellm_provider": "openai", "mode": "chat",
    }}))  # fmt: skip
    env = offline_env(home, LITELLM_LOCAL_MODEL_COST_MAP="True")
    result = run(
        [str(AIDER), "--model", "openai/cline-memory-router",
         "--openai-api-base", router.base_url + "/v1", "--openai-api-key", "x",
         "--no-show-model-warnings", "--no-check-update", "--no-show-release-notes",
         "--analytics-disable", "--no-analytics", "--yes-always", "--no-auto-commits",
         "--no-gitignore", "--no-pretty", "--no-fancy-input", "--no-detect-urls",
         "--model-metadata-file", str(metadata), "--map-tokens", "0", "--chat-mode", "ask",
         "--message", "say hi", "hello.py"],
        project, env,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert chats(emulator), output
    assert REPLY in result.stdout, output


def test_continue_cli_asks_the_router(
    emulator: OllamaEmulator, make_router: RouterFactory, tmp_path: Path
) -> None:
    if not CONTINUE.exists():
        pytest.skip("the Continue CLI is not installed in .tools/continue: run setup.sh --dev")
    router = make_router(emulator.base_url)
    emulator.enqueue(Script(content=REPLY))
    home = tmp_path / "home"
    home.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        "name: router\nversion: 0.0.1\nschema: v1\nmodels:\n"
        "  - name: router\n    provider: openai\n    model: cline-memory-router\n"
        f"    apiBase: {router.base_url}/v1\n    apiKey: x\n"
        "    roles: [chat]\n",
        encoding="utf-8",
    )
    guard = tmp_path / "loopback-fetch.mjs"
    guard.write_text(LOOPBACK_FETCH, encoding="utf-8")
    env = offline_env(
        home,
        CONTINUE_GLOBAL_DIR=str(home / ".continue"),
        CONTINUE_CLI_ENABLE_TELEMETRY="0",
        NODE_OPTIONS=f"--import={guard}",
    )
    result = run([str(CONTINUE), "--config", str(config), "-p", "say hi"], project, env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert chats(emulator), output
    assert REPLY in result.stdout, output
