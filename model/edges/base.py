"""Common interface and post-processing for edge detectors."""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np
from PIL import Image


class EdgeWeightsMissing(FileNotFoundError, ValueError):
    """An edge detector's weights are not installed or not given; the message says how to get them.
    (A FileNotFoundError and, as a missing argument, a ValueError: what callers caught before.)"""


class EdgeDetector(ABC):
    """Maps RGB photos to uint8 edge drawings: dark lines (0) on white (255), same size as the input."""

    name: str

    @property
    def cache_key(self) -> str:
        """Folder name in the edge cache: everything that changes the output must be in it."""
        size = getattr(self, "size", None)
        return f"{self.name}-{size}" if size else self.name

    @abstractmethod
    def detect_batch(self, photos: list[Image.Image]) -> list[Image.Image]: ...

    def detect(self, photo: Image.Image) -> Image.Image:
        return self.detect_batch([photo])[0]


def thin_edges(prob: np.ndarray, low: float = 0.25, high: float = 0.45) -> np.ndarray:
    """Non-maximum suppression across the edge direction, then hysteresis: thick soft HED responses
    become one-pixel lines like a pen stroke. Returns a float map in [0, 1]."""
    gy = cv2.Sobel(prob, cv2.CV_32F, 0, 1, ksize=3)
    gx = cv2.Sobel(prob, cv2.CV_32F, 1, 0, ksize=3)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    padded = np.pad(prob, 1, mode="edge")
    h, w = prob.shape

    def shifted(dy: int, dx: int) -> np.ndarray:
        return padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    keep = np.zeros_like(prob, dtype=bool)
    for lo_deg, hi_deg, (dy, dx) in (
        (0, 22.5, (0, 1)),
        (157.5, 180.1, (0, 1)),
        (22.5, 67.5, (1, 1)),
        (67.5, 112.5, (1, 0)),
        (112.5, 157.5, (1, -1)),
    ):
        sel = (angle >= lo_deg) & (angle < hi_deg)
        local_max = (prob >= shifted(dy, dx)) & (prob >= shifted(-dy, -dx))
        keep |= sel & local_max
    thin = np.where(keep, prob, 0.0).astype(np.float32)
    strong = (thin >= high).astype(np.uint8)
    weak = (thin >= low).astype(np.uint8)
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    if n <= 1:
        return np.zeros_like(prob)
    strong_labels = np.unique(labels[strong.astype(bool)])
    connected = np.isin(labels, strong_labels[strong_labels > 0])
    return np.where(connected, np.clip(thin * 1.5, 0.0, 1.0), 0.0).astype(np.float32)


def render_lines(strength: np.ndarray, thickness: int = 1) -> Image.Image:
    """Edge strength in [0, 1] to dark-on-white uint8, optionally thickened to a pen-like width."""
    ink: np.ndarray = (strength * 255).astype(np.uint8)
    if thickness > 1:
        ink = cv2.dilate(ink, np.ones((thickness, thickness), np.uint8))
    return Image.fromarray(255 - ink, mode="L")
