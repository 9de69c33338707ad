"""Embedding the next group of chunks while the store writes this one.

An index run alternates between embedding a group of chunks (ONNX Runtime on every core) and
writing it to Chroma (about a tenth of the run, on one core). Threads cannot overlap the two:
Chroma's write holds the GIL from start to end, and the embedder's workers need it between
texts (measured: embedding beside a writer thread took longer than embedding, then writing).
A child process can. For a large run, an embedder that can rebuild itself elsewhere
(``child_spec``) gets a twin in a child process for the run's length, and group k+1 is
embedded there while this process writes group k. An embedder whose work already happens in
another process (Ollama's ``/api/embed``) gets one thread to wait on it. Anything else, and
every small run, embeds in line as before.

The child runs the same code on the same model file, text by text, so its vectors are the
ones this process would compute. It is a plain ``python -m`` of this module talking pickles
over its stdin and stdout (never multiprocessing's spawn, which re-imports the parent's main
module: the server's). If it dies, the run goes on in this process; if this process dies,
the child reads the end of its input and exits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import structlog

from .types import Embedder

__all__ = ["BULK_CHUNKS", "Ahead", "embed_ahead"]

log = structlog.get_logger("memory_router.memory")

BULK_CHUNKS = 1024
"""Chunks to embed from which a run starts a child process (about a second to start)."""

Vectors = list[list[float]]
Pending = Callable[[], Vectors]


class _Child:
    """The child process and its two pipes; requests are answered in order."""

    def __init__(self, factory: type, spec: dict[str, Any]) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._in: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        self._out: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        self.send((factory, spec))

    def send(self, message: object) -> None:
        pickle.dump(message, self._in, protocol=pickle.HIGHEST_PROTOCOL)
        self._in.flush()

    def receive(self) -> Any:
        reply = pickle.load(self._out)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def close(self, answers_pending: bool = False) -> None:
        """Stop the child: let it see the end of its input, or kill it when an answer is
        still coming (it would block writing an answer nobody reads)."""
        if answers_pending:
            self.process.kill()
        with contextlib.suppress(OSError):
            self._in.close()  # the child's cue to exit
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):
            self._out.close()


class Ahead:
    """Starts embeddings that finish later: ``submit(texts)()`` gives the vectors.

    Results are read in the order the texts were submitted."""

    def __init__(
        self, embedder: Embedder, child: _Child | None, thread: ThreadPoolExecutor | None
    ) -> None:
        self._embedder = embedder
        self._child = child
        self._thread = thread
        self._queue: deque[list[str]] = deque()  # sent to the child, not yet read back

    def submit(self, texts: Sequence[str]) -> Pending:
        """Start embedding ``texts``; the returned function waits for and returns them."""
        batch = list(texts)
        if not batch:
            return lambda: []
        if self._child is not None:
            try:
                self._child.send(batch)
            except OSError:
                self._lose_child("its input closed")
            else:
                self._queue.append(batch)
                return lambda: self._from_child(batch)
        if self._thread is not None:
            pending: Future[Vectors] = self._thread.submit(self._embedder.embed_documents, batch)
            return pending.result
        vectors = self._embedder.embed_documents(batch)
        return lambda: vectors

    def _from_child(self, batch: list[str]) -> Vectors:
        if self._child is not None:
            assert self._queue[0] is batch, "results are read in submission order"
            try:
                vectors: Vectors = self._child.receive().tolist()
                self._queue.popleft()
                return vectors
            except Exception as exc:  # any failure there: embed here instead
                self._lose_child(str(exc) or type(exc).__name__)
        # The child died (killed, out of memory): embed here, as a small run would.
        self._queue.clear()
        return self._embedder.embed_documents(batch)

    def _lose_child(self, reason: str) -> None:
        if self._child is not None:
            log.warning("embedding_child_lost", reason=reason, fallback="this process")
            self._child.close(answers_pending=True)
            self._child = None

    def close(self) -> None:
        """End the run's child or thread; an interrupted run does not wait for its answers."""
        if self._child is not None:
            self._child.close(answers_pending=bool(self._queue))
            self._child = None
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def embed_ahead(embedder: Embedder, chunks: int) -> Iterator[Ahead]:
    """An ``Ahead`` for a run that will embed about ``chunks`` chunks with ``embedder``."""
    child_spec = getattr(embedder, "child_spec", None)
    child: _Child | None = None
    thread: ThreadPoolExecutor | None = None
    if chunks >= BULK_CHUNKS and child_spec is not None:
        try:
            child = _Child(*child_spec())
        except OSError as exc:
            log.warning("embedding_child_not_started", reason=str(exc), fallback="this process")
    elif getattr(embedder, "runs_elsewhere", False):
        thread = ThreadPoolExecutor(1, thread_name_prefix="embed-ahead")
    ahead = Ahead(embedder, child, thread)
    try:
        yield ahead
    finally:
        ahead.close()


def _serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The child: build the embedder, then answer each list of texts with an array."""
    factory, spec = pickle.load(source)
    embedder = factory(**spec)
    while True:
        try:
            texts = pickle.load(source)
        except EOFError:  # the parent closed our input: done (or it died)
            return
        try:
            reply: object = embedder.embed_array(texts)
        except Exception as exc:  # the parent re-raises it
            reply = RuntimeError(f"embedding in the child process failed: {exc!r}")
        # A float32 array pickles as one buffer: ~0.4 MB for a group of 256.
        pickle.dump(reply, sink, protocol=pickle.HIGHEST_PROTOCOL)
        sink.flush()


if __name__ == "__main__":
    import signal

    # Ctrl-C reaches the whole process group: the parent decides, and closes our input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol owns the real stdout; anything printed (logs, warnings) goes to stderr.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from ..logs import configure_logging

    configure_logging("WARNING", json_logs=False)
    _serve(sys.stdin.buffer, protocol_out)
