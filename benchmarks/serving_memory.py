"""Resident memory of the API server with PyTorch (as before) and without it (the CPU Docker image),
side by side in one run, on the same gallery and the same searches.

    python -m benchmarks.serving_memory [--classes cat teapot airplane bicycle guitar]

Each variant: `indexer build` of the classes' Sketchy photos into a scratch SQLite data dir, then
`uvicorn app.asgi:app` (the container's command) on loopback, one search per class and one explained
search; the server's VmRSS is read after start-up and after the searches. "without PyTorch" runs the
same code with the packages the CPU image leaves out made unimportable (scripts/requirements.py), on the
ONNX graphs `indexer export-onnx` writes. Writes docs/benchmarks/serving_memory.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from benchmarks.common import free_port, rss_mb, training_only_modules, wait_until_serving, write_result
from catalog.settings import DEFAULT_CHECKPOINT
from model.checkpoint import file_checksum, load_checkpoint
from model.factory import build_model
from model.onnx_export import export_graphs

REPO = Path(__file__).resolve().parent.parent
SKETCHY = REPO.parent / "shared" / "data" / "sketchy-subset"
CLASSES = ["cat", "teapot", "airplane", "bicycle", "guitar"]


def python_code(code: str, lean: bool) -> list[str]:
    block = f"import sys; sys.modules.update(dict.fromkeys({training_only_modules()!r}, None))\n"
    return [sys.executable, "-c", (block if lean else "") + code]


def measure(lean: bool, gallery: Path, graphs: Path, scratch: Path) -> dict[str, float]:
    data = scratch / ("lean" if lean else "torch")
    env = {
        **os.environ,
        "SKETCH_DATA_DIR": str(data),
        "SKETCH_CHECKPOINT": str(DEFAULT_CHECKPOINT),
        "SKETCH_ONNX_CACHE_DIR": str(graphs),
        "SKETCH_EMBEDDED_WORKER": "false",
    }
    build = "import sys; sys.argv = ['indexer', *sys.argv[1:]]; from indexer.cli import main; main()"
    for args in (["migrate"], ["build", "--gallery", "demo", "--source", str(gallery)]):
        subprocess.run([*python_code(build, lean), *args], env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        python_code(f"import uvicorn; uvicorn.run('app.asgi:app', host='127.0.0.1', port={port})", lean),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server)
        started = rss_mb(server.pid)
        for cls in CLASSES:
            sketch = sorted((SKETCHY / "sketch" / "tx_000000000000" / cls).glob("*.png"))[0]
            files = {"file": (sketch.name, sketch.read_bytes(), "image/png")}
            assert httpx.post(f"{base}/search?k=5&gallery=demo", files=files).status_code == 200
        r = httpx.post(f"{base}/search?k=5&gallery=demo&explain=1", files=files, timeout=60)
        assert r.status_code == 200
        return {"rss_mb_started": round(started, 1), "rss_mb_after_searches": round(rss_mb(server.pid), 1)}
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", nargs="+", default=CLASSES)
    args = parser.parse_args()
    CLASSES[:] = args.classes
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        gallery = scratch / "gallery"
        for cls in CLASSES:
            shutil.copytree(SKETCHY / "photo" / "tx_000000000000" / cls, gallery / cls)
        graphs = scratch / "graphs"
        model = build_model(load_checkpoint(DEFAULT_CHECKPOINT)).eval()
        export_graphs(model, file_checksum(DEFAULT_CHECKPOINT), graphs, masks=True)
        photos = sum(1 for _ in gallery.rglob("*.jpg"))
        result = {
            "gallery_photos": photos,
            "searches": len(CLASSES) + 1,
            "with_pytorch": measure(False, gallery, graphs, scratch),
            "without_pytorch": measure(True, gallery, graphs, scratch),
        }
    write_result("serving_memory", result, "python -m benchmarks.serving_memory")


if __name__ == "__main__":
    main()
