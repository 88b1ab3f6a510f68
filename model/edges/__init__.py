"""Edge detectors that turn a photo into a sketch-like line drawing (thin dark lines on white).

``build_edge_detector`` is the registry: one builder per ``EdgeDetectorName``. Each builder imports its
detector when called, so a Canny-only process never imports PyTorch (HED and PiDiNet need it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from model.choices import EdgeDetectorName, parse_choice
from model.edges.base import EdgeDetector, EdgeWeightsMissing

Builder = Callable[[str, str | Path | None, int | None], EdgeDetector]


def _canny(device: str, weights: str | Path | None, size: int | None) -> EdgeDetector:
    from model.edges.canny import CannyEdgeDetector

    return CannyEdgeDetector()  # works at the photo's own resolution: no device, weights or size


def _hed(device: str, weights: str | Path | None, size: int | None) -> EdgeDetector:
    from model.edges.hed import HEDEdgeDetector

    return HEDEdgeDetector(weights_path=weights, device=device, **({"size": size} if size else {}))


def _pidinet(device: str, weights: str | Path | None, size: int | None) -> EdgeDetector:
    if weights is None:
        raise EdgeWeightsMissing(
            "the PiDiNet edge detector needs its weights: pass a path (research-only licence, see "
            "model/edges/pidinet.py); 'hed' and 'canny' need none"
        )
    from model.edges.pidinet import PiDiNetEdgeDetector

    return PiDiNetEdgeDetector(weights, device=device, **({"size": size} if size else {}))


_BUILDERS: dict[EdgeDetectorName, Builder] = {
    EdgeDetectorName.CANNY: _canny,
    EdgeDetectorName.HED: _hed,
    EdgeDetectorName.PIDINET: _pidinet,
}


def build_edge_detector(
    name: EdgeDetectorName | str,
    device: str = "cpu",
    weights: str | Path | None = None,
    size: int | None = None,
) -> EdgeDetector:
    """The detector a checkpoint names. PiDiNet needs ``weights`` (research-only licence, never default).

    ``size`` (a checkpoint's ``edge_size``) is the longer side the learned detectors work at; Canny works
    at the photo's own resolution and ignores it. Raises ValueError for an unknown name and
    EdgeWeightsMissing when the detector's weights are not there."""
    return _BUILDERS[parse_choice(EdgeDetectorName, name, "edge detector")](device, weights, size)


__all__ = ["EdgeDetector", "EdgeWeightsMissing", "build_edge_detector"]
