"""Canny edges: no network, a few milliseconds a photo; a fast fallback to HED."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from model.edges.base import EdgeDetector, render_lines


class CannyEdgeDetector(EdgeDetector):
    name = "canny"

    def __init__(self, sigma: float = 0.33) -> None:
        self.sigma = sigma

    def detect_batch(self, photos: list[Image.Image]) -> list[Image.Image]:
        out = []
        for photo in photos:
            gray = cv2.GaussianBlur(np.asarray(photo.convert("L")), (5, 5), 1.4)
            median = float(np.median(gray))
            low, high = int(max(0, (1 - self.sigma) * median)), int(min(255, (1 + self.sigma) * median))
            edges = cv2.Canny(gray, low, max(high, low + 1)).astype(np.float32) / 255.0
            out.append(render_lines(edges, thickness=2))
        return out
