"""Static int8 quantisation of the photo branch's ONNX graph, calibrated on real photos.

Indexing a gallery is the photo branch run once per photo, so its speed is the indexer's speed. ONNX
Runtime's static quantisation (weights int8 per output channel, activations uint8 with ranges measured
on calibration photos, QOperator kernels) runs it about twice as fast on a CPU; on the committed
checkpoint the dev mAP moves by under 0.001 (``python -m benchmarks.indexing_throughput``). The sketch
branch stays float32: a search encodes one sketch, and its continuous code is what re-ranking reads.

EfficientNet-Lite was designed to quantise well (ReLU6, no squeeze-and-excitation). Needs the ``onnx``
package (export side, like ``model.onnx_export``); serving only reads the graph written here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from model.onnx_runtime import PHOTO_INT8, graph_path

CALIBRATION_BATCH = 8


def quantise_photo_branch(folder: Path, checksum: str, photos: np.ndarray, edges: np.ndarray | None) -> Path:
    """Write the int8 photo graph of checkpoint ``checksum`` next to its float32 one in ``folder``.

    ``photos``/``edges``: prepared calibration inputs, (N, 3, S, S) float32 each (``photo_arrays``);
    a few dozen photos like the gallery's are enough (min/max ranges). Returns the graph's path.
    Raises FileNotFoundError when the float32 photo graph has not been exported."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = graph_path(folder, checksum, "photo")
    if not source.is_file():
        raise FileNotFoundError(source)
    feeds = [
        {"photo": photos[i : i + CALIBRATION_BATCH]}
        | ({"edge": edges[i : i + CALIBRATION_BATCH]} if edges is not None else {})
        for i in range(0, len(photos), CALIBRATION_BATCH)
    ]

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    target = graph_path(folder, checksum, PHOTO_INT8)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        written = folder / f".{target.name}.tmp"  # same file system: the rename is atomic
        # The quantiser logs a root-logger warning for every integer shape tensor it rightly leaves in
        # place (hundreds of lines, none of them a problem).
        logging.disable(logging.WARNING)
        try:
            quant_pre_process(str(source), str(prepared))  # shapes and fused ops, as the quantiser wants
            quantize_static(
                str(prepared),
                str(written),
                Photos(),
                quant_format=QuantFormat.QOperator,  # QDQ runs slower than float32 on these CPU kernels
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        finally:
            logging.disable(logging.NOTSET)
        written.chmod(0o644)  # the serving image's non-root user reads it
        written.replace(target)
    return target
