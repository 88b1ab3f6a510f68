"""Checkpoints: one safetensors file holding fp16 weights and, in its metadata, the JSON config.

The metadata says how to rebuild the network and its preprocessing, what it was trained on and how well
it did, so a checkpoint is the single thing the indexer and the server need.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.config import ModelConfig
from model.files import atomic_write
from model.version import package_version

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

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        metadata = read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {exc}") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a CSCAN checkpoint (format {metadata.get('format')!r})")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        info = json.loads(metadata.get("info", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an invalid config: {exc}") from None
    return Checkpoint(
        config, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, info
    )
