"""Run the emulator standalone: ``python -m tests.ollama_emulator --port 11434 --profile fast``."""

from __future__ import annotations

import argparse
import signal
import threading

from .config import fast_profile, reference_profile
from .server import OllamaEmulator


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.ollama_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--profile", choices=["reference", "fast"], default="reference")
    parser.add_argument("--token-delay", type=float, help="seconds between streamed chunks")
    parser.add_argument("--load-seconds-per-gb", type=float, help="simulated load time")
    parser.add_argument("--num-parallel", type=int, help="parallel requests per loaded model")
    parser.add_argument("--reply-words", type=int, help="words in the default reply")
    args = parser.parse_args(argv)
    config = reference_profile() if args.profile == "reference" else fast_profile()
    if args.token_delay is not None:
        config.token_delay_s = args.token_delay
    if args.load_seconds_per_gb is not None:
        config.load_seconds_per_gb = args.load_seconds_per_gb
    if args.num_parallel is not None:
        config.num_parallel = args.num_parallel
    if args.reply_words is not None:
        config.default_content = " ".join(f"w{i}" for i in range(args.reply_words))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    emu = OllamaEmulator(config, host=args.host, port=args.port).start()
    print(f"Ollama emulator ({args.profile}) listening on {emu.base_url}", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
