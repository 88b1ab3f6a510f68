"""Static int8 quantisation of the photo branch's ONNX graph, calibrated on real photos.

Indexing a gallery is the photo branch run once per photo, so its speed is the indexer's speed. ONNX
Runtime's static quantisation (weights int8 per output channel, activations uint8 with ranges measured
on calibration photos, QOperator kernels) builds indexes about 1.8x as fast as float32 on a CPU; on
the committed checkpoint the dev mAP moves by 0.0004 (Hamming) and 0.0014 (asymmetric re-ranking)
(``python -m benchmarks.indexing_throughput``). The sketch branch stays float32: a search encodes one
sketch, and its continuous code is what re-ranking reads.

EfficientNet-Lite was designed to quantise well (ReLU6, no squeeze-and-excitation). Needs the ``onnx``
package (export side, like ``model.onnx_export``); serving only reads the graph written here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from model.hashing import binarise
from model.onnx_runtime import INT8_WEIGHT_BITS, PHOTO_INT8, graph_path, session_for

CALIBRATION_BATCH = 8
# 7-bit weights (quantize_static's reduce_range): a CPU without VNNI (AVX2, AVX-512 without it) sums
# uint8 x int8 pairs into int16 and saturates with full 8-bit weights, which flipped whole bits of a
# photo's code on an AVX2 host; VNNI machines lose almost nothing.
WEIGHT_BITS = 7


def _photo_bits(graph: Path, photos: np.ndarray, edges: np.ndarray | None) -> np.ndarray:
    """(N, bits) the photo graph's bits for prepared inputs."""
    session = session_for(graph, threads=1)
    feeds = {"photo": photos} | ({"edge": edges} if edges is not None else {})
    return binarise(session.run(None, feeds)[0])


def _record_weight_bits(graph: Path) -> None:
    """WEIGHT_BITS in the graph's metadata, where loading it looks (``model.onnx_runtime``): a graph
    made before 7-bit weights says nothing, and is warned about."""
    import onnx

    model = onnx.load(str(graph))
    entry = model.metadata_props.add()
    entry.key, entry.value = INT8_WEIGHT_BITS, str(WEIGHT_BITS)
    onnx.save(model, str(graph))


def quantise_photo_branch(
    folder: Path,
    checksum: str,
    calibration: tuple[np.ndarray, np.ndarray | None],
    check: tuple[np.ndarray, np.ndarray | None],
    min_agreement: float,
) -> tuple[Path | None, float]:
    """Quantise the float32 photo graph of checkpoint ``checksum`` in ``folder`` to int8, and install it
    next to it only when its bits agree with float32's on at least ``min_agreement`` of the ``check``
    photos' bits (photos that were not among the calibration's).

    ``calibration``/``check``: prepared (photos, edges), (N, 3, S, S) float32 each (``photo_arrays``);
    a few dozen photos like the gallery's are enough to calibrate (min/max ranges). Returns the
    installed graph's path (None when refused: a graph installed before stays) and the agreement.
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
    photos, edges = calibration
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
    candidate = folder / f".{target.name}.candidate"  # same file system: the rename is atomic
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            # The quantiser logs a root-logger warning for every integer shape tensor it rightly leaves
            # in place (hundreds of lines, none of them a problem).
            logging.disable(logging.WARNING)
            try:
                quant_pre_process(str(source), str(prepared))  # shapes and fused ops, as it wants them
                quantize_static(
                    str(prepared),
                    str(candidate),
                    Photos(),
                    quant_format=QuantFormat.QOperator,  # QDQ runs slower than float32 on these kernels
                    per_channel=True,
                    reduce_range=WEIGHT_BITS == 7,  # see WEIGHT_BITS
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
            finally:
                logging.disable(logging.NOTSET)
        _record_weight_bits(candidate)
        agreement = float((_photo_bits(candidate, *check) == _photo_bits(source, *check)).mean())
        if agreement < min_agreement:
            return None, agreement
        candidate.chmod(0o644)  # the serving image's non-root user reads it
        candidate.replace(target)
        return target, agreement
    finally:
        candidate.unlink(missing_ok=True)
