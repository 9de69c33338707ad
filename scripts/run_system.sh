#!/usr/bin/env bash
# Install what is needed, then start the router on 127.0.0.1:8000 (ROUTER_PORT to change).
# With no Ollama answering, the router starts its embedded demo model and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False
exec .venv/bin/memory-router serve "$@"
