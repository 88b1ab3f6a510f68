"""The encoder as the settings describe it: one call shared by the service and the indexer CLI."""

from __future__ import annotations

from catalog.settings import Settings
from model.encoding import DeviceUnavailable, ImageEncoder
from model.loader import load_encoder


def encoder_for(settings: Settings) -> ImageEncoder:
    """Raises CheckpointError for a bad checkpoint file, RuntimeError for an impossible device/backend
    (naming the setting; TorchRequired where PyTorch is not installed and the checkpoint or the settings
    need it)."""
    try:
        return load_encoder(
            settings.checkpoint,
            settings.device,
            str(settings.edge_weights) if settings.edge_weights else None,
            settings.encoder_backend,
            settings.onnx_cache,
            settings.photo_precision,
        )
    except DeviceUnavailable as exc:
        raise RuntimeError(f"SKETCH_DEVICE={settings.device}: {exc}") from None
