"""PNG figures: training curves, precision-recall curves and grids of example retrievals."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw, ImageOps


def training_curve(history: list[dict], out: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("total", "triplet", "cls", "quant", "sketch_only_cls"):
        if key in history[0]:
            ax1.plot(epochs, [h[key] for h in history], marker="o", label=key)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss (epoch mean)")
    ax1.set_yscale("log")
    ax1.legend()
    val = [(h["epoch"], h["val"]) for h in history if "val" in h]
    if val:
        ax2.plot([e for e, _ in val], [v["mAP"] for _, v in val], marker="o", label="Hamming mAP")
        if "cont_mAP" in val[0][1]:
            ax2.plot([e for e, _ in val], [v["cont_mAP"] for _, v in val], marker="s", label="continuous mAP")
        if "extra_mAP" in val[0][1]:
            ax2.plot(
                [e for e, _ in val],
                [v["extra_mAP"] for _, v in val],
                marker="^",
                label="drawn from memory (TU-Berlin)",
            )
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("validation mAP")
        ax2.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def pr_curve(precision: np.ndarray, recall: np.ndarray, out: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision, marker=".")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def retrieval_grid(
    queries: list[Image.Image],
    results: list[list[tuple[Image.Image, bool]]],
    out: Path,
    cell: int = 96,
) -> None:
    """One row per query: the sketch, then its top matches framed green (right class) or red."""
    cols = 1 + max(len(r) for r in results)
    grid = Image.new("RGB", (cols * (cell + 4), len(queries) * (cell + 4)), "white")
    draw = ImageDraw.Draw(grid)
    for row, (query, matches) in enumerate(zip(queries, results, strict=True)):
        y = row * (cell + 4) + 2
        grid.paste(ImageOps.pad(query.convert("RGB"), (cell, cell), color="white"), (2, y))
        for col, (image, correct) in enumerate(matches, start=1):
            x = col * (cell + 4) + 2
            grid.paste(ImageOps.pad(image.convert("RGB"), (cell, cell), color="white"), (x, y))
            draw.rectangle(
                [x - 2, y - 2, x + cell + 1, y + cell + 1], outline="green" if correct else "red", width=3
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
