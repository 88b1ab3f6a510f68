"""CSCAN's two branches run by ONNX Runtime: the CPU inference path of the service and the indexer.

On this project's 2-core CPU, ONNX Runtime runs the sketch branch about twice as fast as eager PyTorch
at batch 1 and about three times at batch 8 (`python -m benchmarks.encode_latency`), with the same
codes to float precision (every bit equal on the dev split). The branches are exported once per
checkpoint and cached on disk by its checksum, so a restart loads them in a fraction of a second.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from model.cscan import CSCAN
from model.files import atomic_write

log = logging.getLogger(__name__)
OPSET = 17


def onnx_runtime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Sketch(torch.nn.Module):
    def __init__(self, model: CSCAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        return self.model.encode_sketch(sketch)


class _Photo(torch.nn.Module):
    def __init__(self, model: CSCAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, photo: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        return self.model.encode_photo(photo, edge)


class _PhotoOnly(_Photo):
    def forward(self, photo: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.model.encode_photo(photo, None)


def _export(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                module.eval(),
                inputs,
                str(tmp),
                input_names=names,
                output_names=["codes"],
                dynamic_axes={name: {0: "batch"} for name in names},
                opset_version=OPSET,
                dynamo=False,
            )

    atomic_write(path, write)


class OnnxBranches:
    """Sketch and photo branches as ONNX Runtime sessions; inputs are the preprocessed tensors."""

    def __init__(self, model: CSCAN, checksum: str, cache_dir: Path, threads: int) -> None:
        import onnxruntime as ort

        size = model.config.image_size
        image = torch.zeros(1, 3, size, size)
        tag = f"{checksum[:16]}-opset{OPSET}"
        sketch_path = cache_dir / f"{tag}-sketch.onnx"
        photo_path = cache_dir / f"{tag}-photo.onnx"
        self.use_edge = model.config.use_edge
        if not sketch_path.exists():
            log.info("exporting the sketch branch to ONNX (once per checkpoint): %s", sketch_path)
            _export(_Sketch(model), (image,), ["sketch"], sketch_path)
        if not photo_path.exists():
            log.info("exporting the photo branch to ONNX (once per checkpoint): %s", photo_path)
            if self.use_edge:
                _export(_Photo(model), (image, image), ["photo", "edge"], photo_path)
            else:
                _export(_PhotoOnly(model), (image,), ["photo"], photo_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between calls: spinning threads would take the cores from the rest of the
        # request (decoding, ranking, HTTP) on a small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        self._sketch = ort.InferenceSession(str(sketch_path), options, providers=providers)
        self._photo = ort.InferenceSession(str(photo_path), options, providers=providers)

    def sketch(self, batch: torch.Tensor) -> np.ndarray:
        return self._sketch.run(None, {"sketch": batch.contiguous().numpy()})[0]

    def photo(self, photos: torch.Tensor, edges: torch.Tensor | None) -> np.ndarray:
        feeds = {"photo": photos.contiguous().numpy()}
        if self.use_edge:
            assert edges is not None
            feeds["edge"] = edges.contiguous().numpy()
        return self._photo.run(None, feeds)[0]
