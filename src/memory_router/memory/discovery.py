"""Find memory banks and list the files in them that are safe to index.

A bank is ``<workspace>/memory-bank/``. A workspace named by a request (Cline states its
working directory in the system prompt) is trusted only when it lies under an allowed root.
Listing a bank never raises for a bad file: it is left out with a reason instead, so one
stray binary cannot stop the rest of the bank from being indexed.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .types import Bank, Skipped

__all__ = [
    "BANK_DIR",
    "BankFile",
    "bank_files",
    "bank_paths",
    "find_bank",
    "read_bank_file",
    "workspace_from_text",
]

BANK_DIR = "memory-bank"

# The CLI (3.x) writes "4. Working Directory: /path" in an <env> block; the 2.x CLI and the
# VS Code extension write "Current Working Directory: /path" in SYSTEM INFORMATION, and
# "# Current Working Directory (/path) Files" in their environment details.
_COLON_STYLE = re.compile(
    r"^[ \t]*(?:(?:\d+\.|[-*])[ \t]*)?(?:Current )?Working Directory:[ \t]*(\S[^\r\n]*)", re.M
)
_PAREN_STYLE = re.compile(r"Current Working Directory \(([^\r\n]+?)\)(?: Files)?[ \t]*$", re.M)


@dataclass(frozen=True, slots=True)
class BankFile:
    """One indexable file: the exact text that was hashed, so chunks and hash always agree."""

    rel_path: str  # relative to the workspace, POSIX style: "memory-bank/progress.md"
    path: Path  # absolute path (the link's own location when it is an in-bank symlink)
    size: int  # bytes
    sha256: str  # of the raw bytes
    text: str


def workspace_from_text(system_prompt: str) -> str | None:
    """The working directory a Cline prompt states, or None when it states none."""
    for pattern in (_COLON_STYLE, _PAREN_STYLE):
        match = pattern.search(system_prompt)
        if match:
            path = match.group(1).strip()
            if path:
                return path
    return None


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def find_bank(workspace: Path | str, allowed_roots: Sequence[Path]) -> Bank | None:
    """The bank of ``workspace`` if it lies under an allowed root and has a real bank dir.

    Relative paths are refused (a request's "." means nothing to the server), symlinks are
    resolved before the root check, and ``memory-bank`` itself must not be a symlink, since
    it could point anywhere on the machine.
    """
    candidate = Path(workspace).expanduser()
    if not candidate.is_absolute():
        return None
    try:
        resolved = candidate.resolve()
        roots = [Path(root).expanduser().resolve() for root in allowed_roots]
    except (OSError, RuntimeError, ValueError):  # symlink loops, unreadable parents, NULs
        return None
    if not any(_within(resolved, root) for root in roots):
        return None
    bank_root = resolved / BANK_DIR
    try:
        mode = os.lstat(bank_root).st_mode
    except OSError:
        return None
    if not stat.S_ISDIR(mode):  # lstat: a symlink is not a directory here
        return None
    return Bank(workspace=resolved, root=bank_root)


def _is_candidate(name: str) -> bool:
    # Dotfiles are editor droppings (Emacs ".#x.md" lock links, ".x.md.swp"), never bank files.
    return not name.startswith(".") and name.lower().endswith(".md")


def read_bank_file(bank: Bank, rel_path: str, max_bytes: int) -> BankFile | Skipped | None:
    """Inspect one file named relative to the workspace.

    Returns the file, or ``Skipped`` with the reason it cannot be indexed, or None when the
    path is not a bank file at all (gone, a directory, outside ``memory-bank/``, not ``*.md``).
    """
    parts = PurePosixPath(rel_path).parts
    if len(parts) < 2 or parts[0] != BANK_DIR or ".." in parts or not _is_candidate(parts[-1]):
        return None
    path = bank.workspace.joinpath(*parts)
    try:
        # Inside a symlinked folder: the listing does not follow those, so neither do we.
        if path.parent.resolve() != path.parent:
            return None
    except (OSError, RuntimeError) as exc:
        return Skipped(rel_path, f"unreadable: {getattr(exc, 'strerror', None) or exc}")
    return _inspect(bank, rel_path, path, max_bytes)


def _inspect(bank: Bank, rel_path: str, path: Path, max_bytes: int) -> BankFile | Skipped | None:
    """``read_bank_file`` once the path is known to lie in no symlinked folder."""
    try:
        link_mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Skipped(rel_path, f"unreadable: {exc.strerror or exc}")
    if stat.S_ISDIR(link_mode):
        return None
    if stat.S_ISLNK(link_mode):
        try:
            target = path.resolve()
        except (OSError, RuntimeError) as exc:
            return Skipped(rel_path, f"unreadable symlink: {exc}")
        if not _within(target, bank.root.resolve()):
            return Skipped(rel_path, "symlink leads outside the memory bank")
    return _read(rel_path, path, max_bytes)


def _read_at_most(handle: BinaryIO, limit: int) -> bytes:
    # read(limit) would allocate ``limit`` bytes up front, whatever the file's size.
    blocks: list[bytes] = []
    total = 0
    while total < limit:
        block = handle.read(min(1 << 20, limit - total))
        if not block:
            break
        blocks.append(block)
        total += len(block)
    return b"".join(blocks)


def _read(rel_path: str, path: Path, max_bytes: int) -> BankFile | Skipped:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # FIFOs and devices would block or never end
            return Skipped(rel_path, "not a regular file")
        if info.st_size > max_bytes:
            return Skipped(rel_path, f"larger than {max_bytes} bytes ({info.st_size})")
        with open(path, "rb") as handle:
            data = _read_at_most(handle, max_bytes + 1)  # it may have grown since stat()
    except OSError as exc:
        return Skipped(rel_path, f"unreadable: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return Skipped(rel_path, f"larger than {max_bytes} bytes")
    if b"\x00" in data:
        return Skipped(rel_path, "binary (contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Skipped(rel_path, f"not UTF-8 (byte {exc.start})")
    return BankFile(
        rel_path=rel_path,
        path=path,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text=text,
    )


def _walk(bank: Bank, skipped: list[Skipped]) -> Iterable[tuple[str, str]]:
    """(workspace-relative path, absolute path) of every candidate file, in no symlinked
    folder: os.walk does not follow links, and symlinked folders are pruned (and reported)."""

    def on_error(exc: OSError) -> None:
        where = Path(exc.filename or bank.root)
        rel = where.relative_to(bank.workspace).as_posix() if where.is_absolute() else str(where)
        skipped.append(Skipped(rel, f"unreadable directory: {exc.strerror or exc}"))

    for directory, dirnames, filenames in os.walk(bank.root, onerror=on_error):
        base_rel = Path(directory).relative_to(bank.workspace).as_posix()
        for name in list(dirnames):
            if name.startswith(".") or os.path.islink(os.path.join(directory, name)):
                dirnames.remove(name)
                if not name.startswith("."):
                    skipped.append(
                        Skipped(f"{base_rel}/{name}", "symlinked directory (not followed)")
                    )
        dirnames.sort()
        for name in sorted(filenames):
            if _is_candidate(name):
                yield f"{base_rel}/{name}", os.path.join(directory, name)


def bank_paths(bank: Bank) -> list[str]:
    """The workspace-relative paths of every ``*.md`` under the bank, sorted (not read)."""
    return sorted(rel_path for rel_path, _ in _walk(bank, []))


def bank_files(bank: Bank, max_bytes: int) -> tuple[list[BankFile], list[Skipped]]:
    """Every indexable ``*.md`` under the bank (recursive, sorted), and what was left out."""
    files: list[BankFile] = []
    skipped: list[Skipped] = []
    for rel_path, path in _walk(bank, skipped):
        result = _inspect(bank, rel_path, Path(path), max_bytes)
        if isinstance(result, BankFile):
            files.append(result)
        elif isinstance(result, Skipped):
            skipped.append(result)
    files.sort(key=lambda item: item.rel_path)
    skipped.sort(key=lambda item: item.path)
    return files, skipped
