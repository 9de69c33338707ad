"""Discovery: the working directory in Cline prompts, allowed roots, and every skip reason."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from memory_router.memory.discovery import (
    BankFile,
    bank_files,
    find_bank,
    read_bank_file,
    workspace_from_text,
)
from memory_router.memory.types import Bank, Skipped
from tests.memory.conftest import BANK_FILES, write_bank

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cline"
SIX = sorted(f"memory-bank/{name}" for name in BANK_FILES)


def system_prompt(name: str) -> str:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    content = body["messages"][0]["content"]
    return str(content) if isinstance(content, str) else "".join(p["text"] for p in content)


def environment_details(name: str) -> str:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    parts = [str(p["text"]) for p in body["messages"][1]["content"] if p.get("type") == "text"]
    return next(p for p in parts if "<environment_details>" in p)


def test_workspace_from_cli_env_block() -> None:
    assert workspace_from_text(system_prompt("native_turn1.json")) == "/tmp/cline_capture/todo-app"
    assert workspace_from_text(system_prompt("native_plan_turn1.json")) == "/tmp/cline_capture/ws1"


def test_workspace_from_extension_prompts() -> None:
    # "Current Working Directory: /path" in SYSTEM INFORMATION ...
    assert workspace_from_text(system_prompt("xml_turn1.json")) == "/tmp/cline_capture/todo-app"
    # ... and "# Current Working Directory (/path) Files" in the environment details.
    details = environment_details("xml_turn1.json")
    assert "Current Working Directory (/tmp/cline_capture/todo-app) Files" in details
    assert workspace_from_text(details) == "/tmp/cline_capture/todo-app"


def test_workspace_from_text_shapes() -> None:
    assert workspace_from_text("<env>\n4. Working Directory: /home/me/my project \n</env>") == (
        "/home/me/my project"
    )
    assert workspace_from_text("# Current Working Directory (/srv/a (old)) Files\nx") == (
        "/srv/a (old)"
    )
    assert workspace_from_text("Current Working Directory (c:/Users/me/app)") == "c:/Users/me/app"
    assert workspace_from_text("Home Directory: /root\nno working dir here") is None
    assert workspace_from_text("") is None


def test_find_bank_under_allowed_root(tmp_path: Path) -> None:
    bank = write_bank(tmp_path / "projects" / "app")
    found = find_bank(tmp_path / "projects" / "app", [tmp_path / "projects"])
    assert found == Bank(workspace=bank.workspace, root=bank.workspace / "memory-bank")
    # The workspace may be the root itself (the CLI passes the workspace as its own root).
    assert find_bank(bank.workspace, [bank.workspace]) == found
    assert find_bank(str(bank.workspace), [tmp_path]) == found


def test_find_bank_refusals(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    inside = write_bank(allowed / "app")
    outside = write_bank(tmp_path / "elsewhere" / "app")
    assert find_bank(outside.workspace, [allowed]) is None  # outside every allowed root
    assert find_bank(inside.workspace, []) is None  # no roots: nothing is allowed
    assert find_bank(Path("app"), [allowed]) is None  # relative: means nothing to a server
    (allowed / "no-bank").mkdir()
    assert find_bank(allowed / "no-bank", [allowed]) is None
    # A symlink inside the root that leads outside is judged by where it leads.
    (allowed / "sneaky").symlink_to(outside.workspace)
    assert find_bank(allowed / "sneaky", [allowed]) is None
    # memory-bank itself must be a real directory, not a link to anywhere.
    (allowed / "linked").mkdir()
    (allowed / "linked" / "memory-bank").symlink_to(inside.root)
    assert find_bank(allowed / "linked", [allowed]) is None
    (allowed / "file-bank").mkdir()
    (allowed / "file-bank" / "memory-bank").write_text("not a folder", encoding="utf-8")
    assert find_bank(allowed / "file-bank", [allowed]) is None


def test_bank_files_lists_markdown_recursively(tmp_path: Path) -> None:
    bank = write_bank(tmp_path / "ws", {**BANK_FILES, "features/search.md": "# Search\n"})
    (bank.root / "notes.txt").write_text("not markdown", encoding="utf-8")
    (bank.root / ".#progress.md").symlink_to("someone@host.123")  # an Emacs lock link
    files, skipped = bank_files(bank, max_bytes=100_000)
    assert skipped == []
    assert [f.rel_path for f in files] == sorted([*SIX, "memory-bank/features/search.md"])
    brief = next(f for f in files if f.rel_path == "memory-bank/projectbrief.md")
    data = (bank.root / "projectbrief.md").read_bytes()
    assert brief == BankFile(
        rel_path="memory-bank/projectbrief.md",
        path=bank.root / "projectbrief.md",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text=data.decode("utf-8"),
    )


def test_every_skip_reason(tmp_path: Path) -> None:
    bank = write_bank(tmp_path / "ws")
    secret = tmp_path / "secret.md"
    secret.write_text("# Secret\npassword", encoding="utf-8")
    (bank.root / "leak.md").symlink_to(secret)
    (bank.root / "alias.md").symlink_to(bank.root / "progress.md")  # stays inside: fine
    (bank.root / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (bank.root / "latin1.md").write_bytes("# Caf\xe9\n".encode("latin-1"))
    (bank.root / "huge.md").write_text("# Big\n" + "x" * 2000, encoding="utf-8")
    (bank.root / "dangling.md").symlink_to(bank.root / "gone.md")
    (bank.root / "outside-dir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(bank.root / "pipe.md")
    files, skipped = bank_files(bank, max_bytes=1000)
    assert [f.rel_path for f in files] == sorted([*SIX, "memory-bank/alias.md"])
    assert skipped == [
        Skipped("memory-bank/dangling.md", "unreadable: No such file or directory"),
        Skipped("memory-bank/huge.md", "larger than 1000 bytes (2006)"),
        Skipped("memory-bank/image.md", "binary (contains NUL bytes)"),
        Skipped("memory-bank/latin1.md", "not UTF-8 (byte 5)"),
        Skipped("memory-bank/leak.md", "symlink leads outside the memory bank"),
        Skipped("memory-bank/outside-dir", "symlinked directory (not followed)"),
        Skipped("memory-bank/pipe.md", "not a regular file"),
    ]


def test_read_bank_file_refuses_non_bank_paths(tmp_path: Path) -> None:
    bank = write_bank(tmp_path / "ws")
    (tmp_path / "ws" / "top.md").write_text("# Not in the bank", encoding="utf-8")
    assert read_bank_file(bank, "top.md", 1000) is None
    assert read_bank_file(bank, "memory-bank/../top.md", 1000) is None
    assert read_bank_file(bank, "memory-bank/missing.md", 1000) is None
    assert read_bank_file(bank, "memory-bank/progress.txt", 1000) is None
    # Through a symlinked folder (which listing skips too), even when the file is real.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.md").write_text("# Secret\n", encoding="utf-8")
    (bank.root / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert read_bank_file(bank, "memory-bank/linked/secret.md", 1000) is None
    found = read_bank_file(bank, "memory-bank/progress.md", 100_000)
    assert isinstance(found, BankFile)
    assert found.text == BANK_FILES["progress.md"]
    assert read_bank_file(bank, "memory-bank/progress.md", 10) == Skipped(
        "memory-bank/progress.md", f"larger than 10 bytes ({len(BANK_FILES['progress.md'])})"
    )
