"""Small image operations several stages share (previews, thumbnails, reduced copies).

Images are NumPy arrays (H, W[, C]); sizes are in pixels; a scale maps full-image pixel
coordinates to those of the resized copy (x' = s·x, y' = s·y, pixel centres at integers).
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_longest_side(img: np.ndarray, max_side: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Shrink ``img`` (area averaging) so its longer side is at most ``max_side`` px; never
    enlarges. Returns the copy (``img`` itself when small enough) and the per-axis scales
    ``(sx, sy)`` = copy size / full size, after rounding the copy's size to whole pixels."""
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return img, (1.0, 1.0)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), (size[0] / w, size[1] / h)


def checkerboard(a: np.ndarray, b: np.ndarray, cells: int = 8, max_side: int = 1024) -> np.ndarray:
    """A preview that alternates squares of two aligned images of one size: seams show
    misalignment. Reduced so the longer side is at most ``max_side`` px; ``cells`` squares
    along the longer side."""
    a, _ = resize_longest_side(a, max_side)
    b, _ = resize_longest_side(b, max_side)
    h, w = a.shape[:2]
    cell = max(w, h) // cells or 1
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy // cell + xx // cell) % 2).astype(bool)
    out = a.copy()
    out[mask] = b[mask]
    return out
