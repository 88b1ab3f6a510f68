"""CSCAN's two branches run by ONNX Runtime: the CPU inference path of the service and the indexer.

On this project's 2-core CPU, ONNX Runtime runs the sketch branch about twice as fast as eager PyTorch
at batch 1 and about three times at batch 8 (`python -m benchmarks.encode_latency`), with the same
codes to float precision (every bit equal on the dev split). The branches are exported once per
checkpoint (``model.onnx_export``, which needs PyTorch) into a folder, named by the checkpoint's
checksum, so a restart loads them in a fraction of a second, and a serving image without PyTorch ships
them. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from model.checkpoint import file_checksum
from model.choices import PhotoPrecision

# ONNX Runtime (1.32 on Linux) otherwise records usage telemetry with a device id under ~/.cache and
# tries to upload it; a search service has no business doing either. Only the variable works, and only
# when set before onnxruntime is first imported, which every caller does through this module.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

OPSET = 17
BRANCHES = ("sketch", "photo")  # what encoding needs
PHOTO_INT8 = "photo-int8"  # the photo branch quantised to int8 (model.onnx_quantise), when asked for
MASKS = ("sketch-mask", "photo-mask")  # the attention masks behind explain=1 (models with attention)
# The int8 photo graph's metadata entry (model.onnx_quantise) giving its weights' bits. A graph without
# it has full 8-bit weights (quantised before 7-bit ones), whose codes drift on a CPU without VNNI.
INT8_WEIGHT_BITS = "sketch_search.int8_weight_bits"

log = logging.getLogger(__name__)


def onnx_runtime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def default_folder() -> Path:
    """Where the graphs go when no folder is named (the service names one under its data dir)."""
    return Path.home() / ".cache" / "sketch-search" / "onnx"


def graph_path(folder: Path, checksum: str, name: str) -> Path:
    """Where the ONNX graph ``name`` (one of BRANCHES, MASKS or PHOTO_INT8) of a checkpoint lives in
    ``folder``."""
    return folder / f"{checksum[:16]}-opset{OPSET}-{name}.onnx"


def session_for(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between calls: spinning threads would take the cores from the rest of the
    # request (decoding, ranking, HTTP) on a small machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def weight_bits(session: Any) -> int | None:
    """The bits of a quantised graph's weights as ``model.onnx_quantise`` records them (7), None for
    a graph that does not say (float32, or quantised before they were recorded: 8)."""
    value = session.get_modelmeta().custom_metadata_map.get(INT8_WEIGHT_BITS)
    return int(value) if value is not None and value.isdigit() else None  # unreadable: unknown


def _feeds(names: list[str], photos: np.ndarray, edges: np.ndarray | None, use_edge: bool) -> dict:
    feeds = {names[0]: np.ascontiguousarray(photos, dtype=np.float32)}
    if use_edge:
        if edges is None:
            raise ValueError("this model uses edge maps: pass the photos' edge maps")
        feeds[names[1]] = np.ascontiguousarray(edges, dtype=np.float32)
    return feeds


class Int8GraphMissing(RuntimeError):
    """int8 photo precision was asked for, but the checkpoint's quantised photo graph was never made."""


def photo_graph(precision: PhotoPrecision) -> str:
    return PHOTO_INT8 if precision == PhotoPrecision.INT8 else "photo"


class OnnxBranches:
    """Sketch and photo branches as ONNX Runtime sessions; inputs are prepared (N, 3, S, S) float32
    arrays. The attention-mask graphs, when exported, are loaded on the first explanation only.
    ``photo_precision`` int8 runs the quantised photo graph (``model.onnx_quantise``).

    Raises FileNotFoundError when a branch's graph is not in ``folder`` (Int8GraphMissing for the
    quantised one, with the command that makes it)."""

    def __init__(
        self,
        folder: Path,
        checksum: str,
        use_edge: bool,
        threads: int,
        photo_precision: PhotoPrecision = PhotoPrecision.FP32,
    ) -> None:
        self.folder, self.checksum, self.use_edge, self.threads = folder, checksum, use_edge, threads
        self.photo_precision = photo_precision
        for name in BRANCHES:
            if not graph_path(folder, checksum, name).is_file():
                raise FileNotFoundError(graph_path(folder, checksum, name))
        photo = graph_path(folder, checksum, photo_graph(photo_precision))
        if not photo.is_file():
            raise Int8GraphMissing(
                f"int8 photo precision asks for {photo}, which does not exist: make it with "
                f"'indexer export-onnx --out {folder} --int8-calibration PHOTO_FOLDER' (a folder of real "
                "photos like the gallery's), or use fp32"
            )
        self._sketch = session_for(graph_path(folder, checksum, "sketch"), threads)
        self._photo = session_for(photo, threads)
        bits = weight_bits(self._photo) if photo_precision == PhotoPrecision.INT8 else None
        if photo_precision == PhotoPrecision.INT8 and (bits is None or bits > 7):
            log.warning(
                "%s was quantised with 8-bit weights, whose int16 sums saturate on a CPU without VNNI "
                "(about 1%% of a code's bits flip): remake it with 'indexer export-onnx --out %s "
                "--int8-calibration PHOTO_FOLDER' (where PyTorch is installed), then reindex the "
                "galleries built with it",
                photo,
                folder,
            )
        # Which quantised graph made the codes: a recalibration makes other codes, never mixed with these.
        self.photo_graph_digest = file_checksum(photo)[:8] if photo_precision == PhotoPrecision.INT8 else ""
        self._masks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def sketch(self, batch: np.ndarray) -> np.ndarray:
        """(N, bits) continuous codes."""
        return self._sketch.run(None, {"sketch": np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def photo(self, photos: np.ndarray, edges: np.ndarray | None) -> np.ndarray:
        """(N, bits) continuous codes."""
        return self._photo.run(None, _feeds(["photo", "edge"], photos, edges, self.use_edge))[0]

    def _mask_session(self, name: str) -> Any:
        with self._lock:
            if name not in self._masks:
                self._masks[name] = session_for(graph_path(self.folder, self.checksum, name), self.threads)
            return self._masks[name]

    def sketch_mask(self, batch: np.ndarray) -> np.ndarray:
        """(N, h, w) attention masks in (0, 1); needs the mask graphs (models with attention)."""
        feeds = {"sketch": np.ascontiguousarray(batch, dtype=np.float32)}
        return self._mask_session("sketch-mask").run(None, feeds)[0][:, 0]

    def photo_mask(self, photos: np.ndarray, edges: np.ndarray | None) -> np.ndarray:
        """(N, h, w) co-attention masks in (0, 1); needs the mask graphs (models with attention)."""
        feeds = _feeds(["photo", "edge"], photos, edges, self.use_edge)
        return self._mask_session("photo-mask").run(None, feeds)[0][:, 0]
