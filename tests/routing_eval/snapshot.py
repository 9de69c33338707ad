"""The repository files the evaluation cases quote, frozen in ``repo_files.tar.gz``.

Cases read files of this repository as tool results (``{from: path}`` entries and
``repo: true`` workspaces), so that long requests carry real code. Read from the working
tree, every edit to one of those files would change the cases, and with them the measured
accuracy. The archive holds the versions the figures in docs/benchmarks.md were measured on.

After adding a case that quotes a file not yet in the archive:

    python -m tests.routing_eval.snapshot

adds the missing files from the working tree and keeps every file already frozen.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from functools import cache
from pathlib import Path

__all__ = ["ARCHIVE", "frozen_paths", "frozen_text"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ARCHIVE = HERE / "repo_files.tar.gz"


@cache
def _files() -> dict[str, str]:
    if not ARCHIVE.exists():
        return {}
    with tarfile.open(ARCHIVE) as archive:
        found: dict[str, str] = {}
        for member in archive.getmembers():
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is not None:
                found[member.name] = handle.read().decode("utf-8")
        return found


def frozen_paths() -> frozenset[str]:
    """Every repository file frozen in the archive (paths relative to the repository root)."""
    return frozenset(_files())


def frozen_text(path: str) -> str:
    """The frozen copy of a repository file (a path relative to the repository root)."""
    try:
        return _files()[path]
    except KeyError:
        raise KeyError(
            f"{path} is not frozen in {ARCHIVE.name}: run `python -m tests.routing_eval.snapshot`"
        ) from None


def _quoted() -> dict[str, str]:
    """Every repository file the three sets and the long-request builder read."""
    from . import build

    read: dict[str, str] = {}

    def recording(path: str) -> str:
        if path not in read:
            try:
                read[path] = frozen_text(path)
            except KeyError:
                read[path] = (REPO / path).read_text(encoding="utf-8")
        return read[path]

    build.repo_text = recording  # type: ignore[assignment]
    for directory in ("cases", "holdout", "holdout2"):
        workspaces, cases = build.load_yaml_files(HERE / directory)
        for case in cases:
            build.expand(case, workspaces)
    from . import _LONG_READS

    for path in _LONG_READS:
        recording(path)
    return read


def main() -> None:
    files = _quoted()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(files):
            data = files[path].encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    ARCHIVE.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0))
    added = sorted(set(files) - set(_files()))
    print(f"{ARCHIVE.name}: {len(files)} files" + (f", added {', '.join(added)}" if added else ""))


if __name__ == "__main__":
    main()
