"""Real client CLIs installed from package indexes, talking to the router in front of the
Ollama emulator: aider (aider-chat 0.86.2, from PyPI, in its own venv .tools/aider) and the
Continue CLI (@continuedev/cli 1.5.47, ``cn``, from npm in .tools/continue).

Each runs headless with a scripted reply, HOME in a temporary folder and everything that
would reach the internet at start (update checks, analytics, model metadata) turned off.
"""

from __future__ import annotations

import os
import re
import shlex
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


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "ide-setup.md"
DOC_URL = "http://localhost:8000/v1"


def guide_block(name: str) -> str:
    """The fenced block that follows ``<!-- snippet: NAME -->`` in docs/ide-setup.md."""
    text = GUIDE.read_text(encoding="utf-8")
    found = re.search(rf"<!-- snippet: {name} -->\s*\n```\w*\n(.*?)\n```", text, re.DOTALL)
    assert found is not None, f"no block marked `<!-- snippet: {name} -->` in {GUIDE}"
    return found.group(1)


def chats(emulator: OllamaEmulator) -> list[object]:
    return [r for r in emulator.requests if r.path == "/api/chat"]


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=TIMEOUT_S,
    )  # fmt: skip


def home_and_project(tmp_path: Path) -> tuple[Path, Path]:
    """An empty home for the client and an empty project folder to run it in."""
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    return home, project


def assert_answered(result: subprocess.CompletedProcess[str], emulator: OllamaEmulator) -> None:
    """The client exited cleanly, its request reached Ollama, and it printed the answer."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert chats(emulator), output
    assert REPLY in result.stdout, output


def test_aider_asks_the_router(
    emulator: OllamaEmulator, make_router: RouterFactory, tmp_path: Path
) -> None:
    if not AIDER.exists():
        pytest.skip("aider is not installed in .tools/aider: run ./scripts/setup.sh --dev")
    router = make_router(emulator.base_url)
    emulator.enqueue(Script(content=REPLY))
    home, project = home_and_project(tmp_path)
    (project / "hello.py").write_text('print("hello")\n', encoding="utf-8")
    for git in (["init", "-q"], ["config", "user.name", "t"], ["config", "user.email", "t@t"]):
        subprocess.run(["git", *git], cwd=project, check=True)
    # The guide's aider set-up as written: its environment, command and metadata file. Its
    # metadata also keeps aider from fetching litellm's price map from GitHub for a model it
    # does not know; LITELLM_LOCAL_MODEL_COST_MAP does the same for litellm's own copy.
    (project / ".aider.model.metadata.json").write_text(
        guide_block("aider-metadata"), encoding="utf-8"
    )
    exports, command = {}, []
    for line in guide_block("aider-command").splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            exports[key] = value.replace(DOC_URL, router.base_url + "/v1")
        elif line.strip():
            command = shlex.split(line)
    assert exports.keys() == {"OPENAI_API_BASE", "OPENAI_API_KEY"} and command[0] == "aider"
    env = offline_env(home, LITELLM_LOCAL_MODEL_COST_MAP="True", **exports)
    result = run(
        [str(AIDER), *command[1:],
         # the test's own: no prompts, no network, no edits, one message
         "--no-show-model-warnings", "--no-check-update", "--no-show-release-notes",
         "--analytics-disable", "--no-analytics", "--yes-always", "--no-auto-commits",
         "--no-gitignore", "--no-pretty", "--no-fancy-input", "--no-detect-urls",
         "--map-tokens", "0", "--chat-mode", "ask", "--message", "say hi", "hello.py"],
        project, env,
    )  # fmt: skip
    assert_answered(result, emulator)


def test_continue_cli_asks_the_router(
    emulator: OllamaEmulator, make_router: RouterFactory, tmp_path: Path
) -> None:
    if not CONTINUE.exists():
        pytest.skip("the Continue CLI is not installed in .tools/continue: run setup.sh --dev")
    router = make_router(emulator.base_url)
    emulator.enqueue(Script(content=REPLY))
    home, project = home_and_project(tmp_path)
    config = tmp_path / "config.yaml"  # the guide's configuration, the router's URL in it
    documented = guide_block("continue-config")
    assert documented.count(DOC_URL) == 1
    config.write_text(documented.replace(DOC_URL, router.base_url + "/v1"), encoding="utf-8")
    guard = tmp_path / "loopback-fetch.mjs"
    guard.write_text(LOOPBACK_FETCH, encoding="utf-8")
    env = offline_env(
        home,
        CONTINUE_GLOBAL_DIR=str(home / ".continue"),
        CONTINUE_CLI_ENABLE_TELEMETRY="0",
        NODE_OPTIONS=f"--import={guard}",
    )
    result = run([str(CONTINUE), "--config", str(config), "-p", "say hi"], project, env)
    assert_answered(result, emulator)
