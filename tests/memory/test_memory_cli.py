"""The README's example: index the example bank, then search it from the shell."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memory_router.cli import app
from tests.conftest import REPO, write_config

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "config",
        {
            "embedded": {"mode": "never"},
            "memory": {"vector_store_path": str(tmp_path / "store")},
        },
    )


def test_index_then_search_prints_the_expected_file_first(tmp_path: Path, config: Path) -> None:
    workspace = tmp_path / "tidewater"
    shutil.copytree(REPO / "examples" / "tidewater", workspace)
    # Something for every skip reason the summary reports.
    (workspace / "memory-bank" / "diagram.md").write_bytes(b"\x89PNG\x00\x00binary")
    result = runner.invoke(app, ["index", str(workspace), "--config-dir", str(config)])
    assert result.exit_code == 0, result.output
    summary = f"{workspace.resolve()}: 6 files (6 changed, 0 unchanged, 0 deleted), "
    assert summary in result.output
    assert " chunks, 1 skipped" in result.output
    assert "skipped memory-bank/diagram.md: " in result.output

    result = runner.invoke(
        app,
        ["search", "how are conflicting offline edits resolved?", "--workspace", str(workspace),
         "-k", "3", "--config-dir", str(config)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("1. memory-bank/systemPatterns.md lines ")
    assert "System Patterns > Conflict resolution" in result.output

    # A second index run re-embeds nothing.
    result = runner.invoke(app, ["index", str(workspace), "--config-dir", str(config)])
    assert "(0 changed, 6 unchanged, 0 deleted)" in result.output


def test_index_of_a_folder_without_a_bank_says_what_to_do(tmp_path: Path, config: Path) -> None:
    result = runner.invoke(app, ["index", str(tmp_path), "--config-dir", str(config)])
    assert result.exit_code != 0
    assert "expected a folder" in str(result.exception) or "expected a folder" in result.output
