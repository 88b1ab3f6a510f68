"""Checkpoints: one safetensors file holding fp16 weights and, in its metadata, the JSON config.

The metadata says how to rebuild the network and its preprocessing, what it was trained on and how well
it did, so a checkpoint is the single thing the indexer and the server need.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError

from model.config import ModelConfig
from model.files import atomic_write
from model.version import package_version

if TYPE_CHECKING:  # reading a checkpoint's config and a few tensors needs no PyTorch (serving image)
    import torch

FORMAT = "cscan-checkpoint/1"


class CheckpointError(ValueError):
    """The file is missing, corrupt or not a CSCAN checkpoint that this code can load."""


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)  # training data, split, metrics, ...


def file_checksum(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, checkpoint: Checkpoint, half: bool = True) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in checkpoint.state_dict.items():
        value = value.detach().cpu().contiguous()
        tensors[key] = value.half() if half and value.is_floating_point() else value
    metadata = {
        "format": FORMAT,
        "config": json.dumps(checkpoint.config.to_dict()),
        "info": json.dumps(checkpoint.info),
        "code_version": package_version(),
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return f.metadata() or {}


def _readable(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable safetensors checkpoint: {exc}")


def _parse_metadata(path: Path, metadata: dict[str, str]) -> tuple[ModelConfig, dict[str, Any]]:
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a CSCAN checkpoint (format {metadata.get('format')!r})")
    try:
        return ModelConfig.from_dict(json.loads(metadata["config"])), json.loads(metadata.get("info", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an invalid config: {exc}") from None


def read_config(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """A checkpoint's config and info without loading its weights (and without PyTorch);
    raises CheckpointError like ``load_checkpoint``."""
    path = _readable(path)
    try:
        metadata = read_metadata(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None
    return _parse_metadata(path, metadata)


def read_arrays(path: str | Path, names: list[str]) -> dict[str, np.ndarray]:
    """Some of a checkpoint's tensors as float32 NumPy arrays (fp16 widened exactly, as
    ``load_checkpoint`` does), without PyTorch; raises CheckpointError for a bad file or a missing name."""
    from safetensors import safe_open

    path = _readable(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            stored = set(f.keys())
            missing = [n for n in names if n not in stored]
            if missing:
                raise CheckpointError(f"{path} has no tensor {missing[0]!r}")
            return {n: np.asarray(f.get_tensor(n), dtype=np.float32) for n in names}
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    from safetensors.torch import load_file

    path = _readable(path)
    try:
        metadata = read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None
    config, info = _parse_metadata(path, metadata)
    return Checkpoint(
        config, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, info
    )
