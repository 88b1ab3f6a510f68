"""Edge detectors that turn a photo into a sketch-like line drawing (thin dark lines on white)."""

from model.edges.base import EdgeDetector, EdgeWeightsMissing, build_edge_detector

__all__ = ["EdgeDetector", "EdgeWeightsMissing", "build_edge_detector"]
