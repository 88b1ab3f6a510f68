#!/usr/bin/env bash
# The GPU check: on an NVIDIA machine, install what the CUDA paths need, run the CUDA tests, and time
# encoding, GPU FAISS search (1M and 10M codes) and one training epoch against the CPU in the same run.
# Writes $OUT/gpu_check.json (OUT defaults to docs/benchmarks) and $OUT/gpu_check.log. Sized for the
# 8 minutes an H200 is lent for (an estimate: it has not run on a GPU yet); exits 2 at once, saying why,
# on a machine without a GPU.
#
#   scripts/gpu_check.sh                      # with the network: pip installs from PyPI
#   WHEELS=.whl scripts/gpu_check.sh          # without: from wheels carried in .whl (faiss-gpu and our deps)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/benchmarks}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi lists none); run this on a machine with one" >&2
  exit 2
fi
nvidia-smi -L

# What the GPU paths need beside the project's own dependencies: a CUDA build of PyTorch (PyPI's torch
# is one) and FAISS with GPU support. A machine that has them (a CUDA image) keeps its own.
site=$(mktemp -d)/site
if [ -n "${WHEELS:-}" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$WHEELS"/*.whl
else
  mapfile -t requirements < <("$PYTHON" scripts/requirements.py gpu)
  if "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    # keep the machine's own CUDA PyTorch
    mapfile -t requirements < <(printf '%s\n' "${requirements[@]}" | grep -v -E '^(torch|torchvision)([^a-z-]|$)')
  fi
  "$PYTHON" -m pip install -q --target "$site" "${requirements[@]}"
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  echo "== CUDA tests"
  "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests || echo "CUDA tests failed (exit $?)"
  echo "== timings"
  "$PYTHON" -m benchmarks.gpu_check --out "$OUT/gpu_check.json"
} 2>&1 | tee "$OUT/gpu_check.log"
