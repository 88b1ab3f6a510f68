"""`indexer export-onnx`: a checkpoint's ONNX graphs, for serving where PyTorch is not installed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image, ImageDraw

from catalog.logs import PLAIN, configure_logging
from catalog.scan import scan_source
from catalog.settings import get_settings
from model.checkpoint import CheckpointError, file_checksum, load_checkpoint
from model.encoding import ImageEncoder
from model.factory import Encoder, encoder_from_checkpoint
from model.imageio import ImageRejected, decode_photo
from model.onnx_export import export_graphs
from model.onnx_quantise import quantise_photo_branch
from model.onnx_runtime import PHOTO_INT8, graph_path


def _probe_images(size: int) -> tuple[list[Image.Image], list[Image.Image]]:
    """A drawn sketch and two synthetic photos to check the graphs against the PyTorch network."""
    sketch = Image.new("L", (size * 2, size * 2), 255)
    draw = ImageDraw.Draw(sketch)
    draw.ellipse((20, 30, size * 2 - 20, size * 2 - 40), outline=0, width=4)
    draw.line((30, size, size * 2 - 30, size // 2), fill=0, width=4)
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 256, (size + 17 * i, size, 3), dtype=np.uint8)) for i in (1, 2)]
    return [sketch], photos


MIN_BIT_AGREEMENT = 0.95  # int8 codes against float32's on the calibration photos, else refused


CHECK_PHOTOS = 16  # photos outside the calibration that the int8 graph's bits are checked on


def _quantise(folder: Path, lean: ImageEncoder, source: Path, count: int, max_pixels: int) -> Path:
    """The int8 photo graph, calibrated on ``count`` photos spread over ``source`` (sorted, evenly
    spaced, so every class of a class-per-folder gallery is likely in) and checked against float32 on
    up to CHECK_PHOTOS others spread the same way; a refused graph is not installed."""
    try:
        found = sorted(c.path for c in scan_source(source))
    except (OSError, ValueError) as exc:
        typer.echo(f"--int8-calibration {source}: {exc}", err=True)
        raise typer.Exit(2) from None
    photos = []
    for candidate in found[:: max(1, len(found) // (count + CHECK_PHOTOS))]:
        try:
            photos.append(decode_photo(candidate.read_bytes(), max_pixels))
        except (ImageRejected, OSError):
            continue  # a file the build would refuse too
        if len(photos) == count + CHECK_PHOTOS:
            break
    every = max(2, len(photos) // CHECK_PHOTOS)
    held_out = set(range(every - 1, len(photos), every)[:CHECK_PHOTOS])
    check = [p for i, p in enumerate(photos) if i in held_out]
    calibration = [p for i, p in enumerate(photos) if i not in held_out]
    if len(calibration) < 8 or len(check) < 4:
        typer.echo(
            f"--int8-calibration {source}: {len(photos)} readable photos; at least 12 are needed", err=True
        )
        raise typer.Exit(2)
    graph, agreement = quantise_photo_branch(
        folder,
        lean.checksum,
        lean.photo_arrays(calibration, lean.edge_maps(calibration)),
        lean.photo_arrays(check, lean.edge_maps(check)),
        MIN_BIT_AGREEMENT,
    )
    typer.echo(
        f"int8 photo graph, calibrated on {len(calibration)} photos: {agreement:.1%} of the bits of "
        f"{len(check)} other photos agree with float32"
    )
    if graph is None:
        typer.echo(
            f"refused: under {MIN_BIT_AGREEMENT:.0%} agreement; keep the photo precision fp32", err=True
        )
        raise typer.Exit(1)
    return graph


def export_onnx(
    checkpoint: Annotated[
        Path | None, typer.Option(help="checkpoint (.safetensors); default SKETCH_CHECKPOINT")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="folder of the graphs; default SKETCH_ONNX_CACHE_DIR")
    ] = None,
    prune: Annotated[bool, typer.Option(help="remove other checkpoints' graphs from the folder")] = False,
    int8_calibration: Annotated[
        Path | None,
        typer.Option(
            help="also quantise the photo branch to int8 (SKETCH_PHOTO_PRECISION=int8), calibrated on "
            "photos in this folder: real photos like the gallery's"
        ),
    ] = None,
    calibration_photos: Annotated[int, typer.Option(min=8, help="photos used for calibration")] = 64,
) -> None:
    """Export a checkpoint's ONNX graphs (both branches and the attention masks) and check them.
    With --int8-calibration, also the photo branch quantised to int8 (for SKETCH_PHOTO_PRECISION=int8).

    A server without PyTorch (the CPU Docker image) runs these graphs, found by the checkpoint's
    checksum in SKETCH_ONNX_CACHE_DIR. The graphs are checked against the PyTorch network: every bit of a
    sketch's and two photos' codes must agree."""
    configure_logging(PLAIN)
    settings = get_settings()
    path = checkpoint or settings.checkpoint
    folder = out or settings.onnx_cache
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    checksum = file_checksum(path)
    # The network on ONNX Runtime (its branch graphs exported on the way), with the checkpoint's own
    # edge detector: HED and PiDiNet run on PyTorch, which this command has.
    lean = encoder_from_checkpoint(loaded, checksum, "cpu", backend="onnx", cache_dir=folder)
    written = export_graphs(lean.model, checksum, folder, masks=True)
    if prune:
        for stale in folder.glob("*.onnx"):
            if stale not in written and stale != graph_path(
                folder, checksum, PHOTO_INT8
            ):  # keeps its int8 graph
                stale.unlink()
                typer.echo(f"removed {stale}")
    reference = Encoder(lean.model, loaded.config, lean.edges, lean.device, checksum)  # the same, on PyTorch
    sketches, photos = _probe_images(loaded.config.image_size)
    for kind, ours, theirs in (
        ("sketch", lean.encode_sketches(sketches), reference.encode_sketches(sketches)),
        ("photo", lean.encode_photos(photos), reference.encode_photos(photos)),
    ):
        if not np.array_equal(ours.packed, theirs.packed):
            typer.echo(f"the exported {kind} graph disagrees with the PyTorch network", err=True)
            raise typer.Exit(1)
    if int8_calibration is not None:
        written.append(_quantise(folder, lean, int8_calibration, calibration_photos, settings.max_pixels))
    for graph in written:
        typer.echo(f"{graph} ({graph.stat().st_size / 1e6:.1f} MB)")
    typer.echo(f"{path.name} (sha256 {checksum[:16]}…): {len(written)} graphs in {folder}, checked")
