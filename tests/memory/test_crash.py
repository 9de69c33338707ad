"""Crash safety: an index run killed anywhere leaves a store the next run makes exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memory_router.memory.embedder import SentenceTransformerEmbedder
from memory_router.memory.indexer import sync_bank
from memory_router.memory.store import VectorStore
from memory_router.memory.types import Bank
from tests.memory.conftest import BANK_FILES, LIMITS, assert_store_matches_disk, write_bank

REPO = Path(__file__).resolve().parents[2]

# Runs sync_bank in a child process and reports each file written on stdout.
WORKER = """
import sys
from pathlib import Path
from memory_router.memory import indexer
from memory_router.memory.embedder import SentenceTransformerEmbedder
from memory_router.memory.indexer import sync_bank
from memory_router.memory.store import VectorStore
from memory_router.memory.types import Bank

indexer._GROUP_CHUNKS = 8  # two files a write: the small bank takes many writes to index
workspace = Path(sys.argv[1])
bank = Bank(workspace=workspace, root=workspace / "memory-bank")
store = VectorStore.open(path=Path(sys.argv[2]))
def progress(done, total):
    print(f"progress {done} {total}", flush=True)
sync_bank(bank, store, SentenceTransformerEmbedder(), max_bytes=100_000, max_tokens=400,
          progress=progress)
print("finished", flush=True)
"""


def big_bank(workspace: Path, files: int = 24) -> Bank:
    texts = {}
    for n in range(files):
        sections = [
            f"## Topic {n}.{s}\n\nModule {n} handles case {s}: "
            + " ".join(f"detail{w}" for w in range(8))
            for s in range(4)
        ]
        texts[f"area{n:02d}.md"] = f"# Area {n}\n\n" + "\n\n".join(sections) + "\n"
    return write_bank(workspace, texts)


def test_sigkill_mid_run_then_resync_is_exact(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    bank = big_bank(tmp_path / "ws")
    store_path = tmp_path / "store"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    seen: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", WORKER, str(bank.workspace), str(store_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as child:
        assert child.stdout is not None
        try:
            for line in child.stdout:
                seen.append(line.strip())
                # Kill as soon as one file is in: the run is then busy writing the others.
                if line.startswith("progress") and int(line.split()[1]) >= 1:
                    child.send_signal(signal.SIGKILL)
                    break
            assert child.wait(timeout=120) == -signal.SIGKILL, seen
        finally:
            if child.poll() is None:
                child.kill()
    assert seen[0] == "progress 0 24" and "finished" not in seen

    store = VectorStore.open(path=store_path)
    ws = str(bank.workspace)
    states = store.indexed_files(ws)
    on_disk = {f"memory-bank/area{n:02d}.md" for n in range(24)}
    # Killed mid-run: some files are complete, the rest missing or half-written.
    complete = {
        file
        for file, state in states.items()
        if state.file_hash is not None and state.is_complete(state.file_hash)
    }
    assert 1 <= len(complete) < 24
    assert set(states) <= on_disk

    report = sync_bank(bank, store, embedder, **LIMITS)
    assert report.files_unchanged == len(complete)
    assert report.files_indexed == 24 - len(complete)
    assert assert_store_matches_disk(bank, store) == 24 * 4 == report.chunks_total
    store.close()


class CrashingStore(VectorStore):
    """Dies in the middle of its ``crash_on``-th Chroma write: half of that write's rows
    land, the rest never arrive."""

    def __init__(self, store: VectorStore, crash_on: int) -> None:
        super().__init__(store.client, store.where)
        self.crash_on = crash_on
        self.writes = 0

    def _create(self, workspace: str | Path) -> Any:
        collection = super()._create(workspace)
        upsert = collection.upsert

        def crashing_upsert(**rows: Any) -> None:
            self.writes += 1
            if self.writes == self.crash_on:
                half = len(rows["ids"]) // 2
                upsert(**{key: value[:half] for key, value in rows.items()})
                raise RuntimeError("simulated crash")
            upsert(**rows)

        collection.upsert = crashing_upsert
        return collection


@pytest.mark.parametrize("crash_on", [1, 2])
def test_crash_inside_a_file_write_is_repaired(
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
    crash_on: int,
    request: pytest.FixtureRequest,
) -> None:
    bank = write_bank(tmp_path / "ws")
    store = VectorStore.open(path=tmp_path / "store")
    request.addfinalizer(store.close)
    sync_bank(bank, store, embedder, **LIMITS)
    ws = str(bank.workspace)
    extra = "\n## Later\n\nA fifth section about sextants and chart plotters.\n"
    (bank.root / "progress.md").write_text(BANK_FILES["progress.md"] + extra, encoding="utf-8")
    (bank.root / "techContext.md").write_text("# Tech\n\nRewritten.\n", encoding="utf-8")
    (bank.root / "new.md").write_text("# New\n\nA new file.\n\n## Two\n\nMore.\n", "utf-8")
    (bank.root / "activeContext.md").unlink()

    crashing = CrashingStore(store, crash_on)
    crashing._max_batch = 4  # the 8 chunks of the 3 changed files take two writes
    with pytest.raises(RuntimeError, match="simulated crash"):
        sync_bank(bank, crashing, embedder, **LIMITS)
    assert not crashing.write_lock(ws).locked()  # the lock is released on the way out

    report = sync_bank(bank, store, embedder, **LIMITS)
    assert report.files_deleted == 0  # activeContext.md went before the crash
    # The changed files' 5 other chunks, then their 3 markers, four rows a write: killed in
    # the first write, no file got its marker; halfway through the second, one of three did.
    assert crashing.writes == crash_on
    assert report.files_indexed == 3 - (crash_on - 1)
    assert assert_store_matches_disk(bank, store) == report.chunks_total == 4 + 4 + 4 + 5 + 1 + 2
