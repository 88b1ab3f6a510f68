"""Encoding a gallery's new photos on a Ray cluster: the step that outgrows one machine first.

The photos to encode become a Ray Data dataset of (path, sha256) rows; ``map_batches`` runs an actor
pool in which every actor loads the encoder once (one GPU each when the cluster has GPUs, else CPU
actors) and turns a batch of paths into packed codes, decoding, edge maps and the network included.
The codes stream back to the one process that builds the index, which keeps everything else as it is:
the gallery lock, the code cache (filled as codes arrive, so an interrupted build resumes), the
manifest, the atomic activation, and broken photos reported in the job rather than failing it.

The checkpoint travels through Ray's object store and each actor checks its checksum, so a worker can
never encode with another model than the index records. The photos are read by the actors: their paths
must be the same on every node (a shared volume, as in docker-compose.ray.yml).

Ray is imported only here, and only when a build asks for it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from catalog.scan import Candidate
from catalog.settings import Settings
from model.checkpoint import file_checksum
from model.choices import PhotoPrecision
from model.encoding import ImageEncoder
from model.files import atomic_write
from model.imageio import ImageRejected, decode_photo
from model.loader import configure_threads, load_encoder
from model.onnx_runtime import PHOTO_INT8, graph_path, photo_graph

log = logging.getLogger(__name__)
LOCAL = "local"  # start (or join) a Ray instance on this machine


@dataclass(frozen=True)
class RayOptions:
    address: str = (
        LOCAL  # "local", "auto" (the cluster this machine belongs to), "host:port", "ray://host:port"
    )
    batch_size: int = 32
    actors: int | None = None  # default: one per GPU, else one per CPU the cluster offers
    # An actor that dies (node lost, OOM kill) is restarted and its batch retried: Ray Data's own default
    # for actor pools, since the per-call `max_restarts` (a `ray_remote_args` entry) is deprecated.


def ray_options(settings: Settings) -> RayOptions | None:
    """Reindex jobs encode on Ray when SKETCH_RAY_ADDRESS is set."""
    return RayOptions(settings.ray_address) if settings.ray_address else None


class PhotoEncoderActor:
    """One loaded encoder per actor; called with a batch of rows, returns their codes or errors."""

    def __init__(
        self,
        checkpoint: Any,  # the checkpoint file's bytes, as a Ray object reference
        checksum: str,
        device: str,
        backend: str,
        edge_weights: str | None,
        onnx_cache: str,
        max_pixels: int,
        threads: int,
        photo_precision: str = PhotoPrecision.FP32,
        int8_graph: Any = None,  # the driver's quantised photo graph (bytes, as an object reference)
        codes_key: str | None = None,  # the build's ImageEncoder.photo_codes_key
    ) -> None:
        import ray

        configure_threads(threads)
        data: bytes = ray.get(checkpoint) if isinstance(checkpoint, ray.ObjectRef) else checkpoint
        folder = Path(tempfile.mkdtemp(prefix="sketch-ray-"))
        try:
            path = folder / "checkpoint.safetensors"
            path.write_bytes(data)
            cache = Path(onnx_cache)
            # e.g. the CPU image's graphs, read-only
            shipped = graph_path(cache, checksum, photo_graph(PhotoPrecision(photo_precision))).is_file()
            if not shipped and not os.access(cache if cache.exists() else cache.parent, os.W_OK):
                cache = folder / "onnx"  # a node that cannot write the shared cache exports its own copy
            if int8_graph is not None and not graph_path(cache, checksum, PHOTO_INT8).is_file():
                graph: bytes = ray.get(int8_graph) if isinstance(int8_graph, ray.ObjectRef) else int8_graph
                atomic_write(graph_path(cache, checksum, PHOTO_INT8), graph)  # the same graph: the same codes
            self.encoder = load_encoder(
                path, device, edge_weights, backend, cache, photo_precision=PhotoPrecision(photo_precision)
            )
        finally:
            # The encoder holds what it reads in memory (weights, ONNX sessions): a checkpoint copy left
            # behind by every actor of every build would fill the node's disk, 16 MB at a time.
            shutil.rmtree(folder, ignore_errors=True)
        if self.encoder.checksum != checksum:
            raise RuntimeError("the checkpoint received by this Ray worker is not the one the build uses")
        if codes_key is not None and self.encoder.photo_codes_key != codes_key:  # e.g. a stale int8 graph
            raise RuntimeError(
                "this Ray worker's photo graph is not the one the build uses: its codes would differ"
            )
        self.max_pixels = max_pixels
        self.actor_id = ray.get_runtime_context().get_actor_id() or "driver"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths, hashes = batch["path"], batch["sha256"]
        codes = np.zeros((len(paths), self.encoder.bits // 8), np.uint8)
        errors = np.array([""] * len(paths), dtype=object)
        images, rows = [], []
        for i, path in enumerate(paths):
            try:
                images.append(decode_photo(Path(path).read_bytes(), self.max_pixels))
                rows.append(i)
            except ImageRejected as exc:
                errors[i] = f"{exc.reason}: {exc}"
            except OSError as exc:
                errors[i] = f"unreadable: {exc}"
        if images:
            codes[rows] = self.encoder.encode_photos(images, None, len(images)).packed
        actor = np.array([self.actor_id] * len(paths), dtype=object)  # who did the work, for the log
        return {"sha256": hashes, "code": codes, "error": errors, "actor": actor}


def connect(address: str) -> None:
    import ray

    if ray.is_initialized():
        return
    ray.init(
        address=None if address == LOCAL else address, log_to_driver=False, logging_level=logging.WARNING
    )


def _pool(options: RayOptions, settings: Settings) -> tuple[int, float, float]:
    """How many actors, and the GPUs and CPUs each one asks for."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus and settings.device != "cpu":
        return options.actors or gpus, 1.0, 1.0
    cpus = max(1, int(resources.get("CPU", 1)))
    return options.actors or cpus, 0.0, 1.0


def encode_on_ray(
    todo: list[Candidate],
    settings: Settings,
    encoder: ImageEncoder,
    options: RayOptions,
    accept: Callable[[str, np.ndarray], None],
    fail: Callable[[str, str], None],
    progress: Callable[[int], None],
    show_progress: bool = True,
) -> None:
    """Encode ``todo`` on Ray; ``accept(sha256, code)`` as codes arrive, ``fail(path, reason)`` for each
    photo that cannot be encoded, ``progress(n)`` after every batch of n photos."""
    if not todo:
        return
    checksum = file_checksum(settings.checkpoint)
    if checksum != encoder.checksum:
        raise RuntimeError(
            f"the build's encoder is not {settings.checkpoint}: "
            "Ray workers load the checkpoint the settings name"
        )
    connect(options.address)
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the build shows its own bar, as without Ray
    actors, gpus, cpus = _pool(options, settings)
    if gpus and encoder.photo_precision == PhotoPrecision.INT8:
        raise RuntimeError(
            "SKETCH_PHOTO_PRECISION=int8 runs on ONNX Runtime on CPUs, and this Ray cluster encodes on GPUs: "
            "use fp32 there"
        )
    device = "cuda" if gpus else "cpu"
    paths = {c.sha256: str(c.path) for c in todo}
    # One block per batch: Ray Data hands an actor one block per task, so fewer blocks than actors
    # would leave actors idle (and a block is what is retried when an actor dies).
    blocks = -(-len(todo) // options.batch_size)
    dataset = ray.data.from_items(
        [{"path": str(c.path), "sha256": c.sha256} for c in todo], override_num_blocks=blocks
    )
    encoded = dataset.map_batches(
        PhotoEncoderActor,
        batch_size=options.batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus,
        num_cpus=cpus,
        fn_constructor_kwargs={
            "checkpoint": ray.put(settings.checkpoint.read_bytes()),
            "checksum": checksum,
            "device": device,
            "backend": "torch" if gpus else settings.encoder_backend,
            "edge_weights": str(settings.edge_weights) if settings.edge_weights else None,
            "onnx_cache": str(settings.onnx_cache),
            "max_pixels": settings.max_pixels,
            "threads": max(1, int(cpus)),
            "photo_precision": str(encoder.photo_precision),
            "codes_key": encoder.photo_codes_key,  # the same codes as the cache's key, or a refusal
            "int8_graph": (
                ray.put(graph_path(settings.onnx_cache, checksum, PHOTO_INT8).read_bytes())
                if encoder.photo_precision == PhotoPrecision.INT8
                else None
            ),
        },
    )
    log.info("encoding %d photos on Ray: %d %s actor(s)", len(todo), actors, device.upper())
    bar = tqdm(
        total=len(todo), desc=f"encode (ray, {actors} {device} actors)", unit="img", disable=not show_progress
    )
    batch: dict[str, Any]
    per_actor: Counter[str] = Counter()
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        per_actor.update(str(a) for a in batch["actor"])
        for sha, code, error in zip(batch["sha256"], batch["code"], batch["error"], strict=True):
            if error:
                fail(paths[str(sha)], str(error))
            else:
                accept(str(sha), code)
        bar.update(len(batch["sha256"]))
        progress(len(batch["sha256"]))
    bar.close()
    log.info("Ray actors encoded %s photos", " + ".join(str(n) for n in sorted(per_actor.values())))
