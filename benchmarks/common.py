"""Shared helpers for benchmarks: machine description, percentiles, writing figures into docs/."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks"


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(),
    }


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.array(samples_s) * 1000  # "n" below counts the timed samples
    return {
        "median_ms": round(float(np.median(ms)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "n": len(ms),
    }


def rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now (for a server started next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_result(name: str, result: dict, command: str) -> Path:
    """Write ``docs/benchmarks/<name>.json``; its "command" is ``command`` with the arguments this run
    was given, so that it reproduces these figures."""
    DOCS.mkdir(parents=True, exist_ok=True)
    result = {"command": " ".join([command, *sys.argv[1:]]), "machine": machine(), **result}
    path = DOCS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def wait_until_serving(
    base: str,
    process: subprocess.Popen[Any],
    path: str = "/readyz",
    timeout: float = 120,
    log: Path | None = None,
) -> None:
    """Poll ``base + path`` until it answers 200. Raises RuntimeError (with ``log``'s text, if given) when
    ``process`` exits first or ``timeout`` seconds pass."""
    import httpx  # here: the GPU check imports this module where only the model's packages are

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(base + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            why = "exited" if process.poll() is not None else f"did not answer {path} in {timeout:.0f} s"
            raise RuntimeError(f"the server {why}" + (f":\n{log.read_text()}" if log else ""))
        time.sleep(0.3)


def training_only_modules() -> list[str]:
    """The modules of the packages the CPU image leaves out (``TRAINING_ONLY`` in scripts/requirements.py,
    which the Dockerfile's requirements come from): what a process without them must not import."""
    spec = importlib.util.spec_from_file_location("requirements", REPO / "scripts" / "requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sorted(module.TRAINING_ONLY.values())


def timed_runs(fn, repeats: int, warmups: int = 5) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds of each of ``repeats`` calls of ``fn()``, after ``warmups`` calls that pay for
    allocations and kernel selection."""
    for _ in range(warmups):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples
