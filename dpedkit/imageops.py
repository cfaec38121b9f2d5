"""Small image operations several stages share (previews, thumbnails, reduced copies, the
sub-pixel peak of a correlation map).

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


# The parabolic sub-pixel peak: one fit for the aligner's grid measurement and the patch
# search (score maps as from cv2.matchTemplate).

def parabola(a: float, b: float, c: float) -> tuple[float, float]:
    """Vertex offset in [-0.5, 0.5] and height gain of the parabola through (-1,a), (0,b),
    (1,c); ``(0, 0)`` when ``b`` is not a strict local maximum of a concave parabola."""
    a, b, c = float(a), float(b), float(c)    # scalars: NumPy's clip costs more than the fit
    den = a - 2 * b + c
    if den >= 0:
        return 0.0, 0.0
    off = min(0.5, max(-0.5, 0.5 * (a - c) / den))
    return off, -0.125 * (a - c) ** 2 / den


def refine_peak(scores: np.ndarray, px: int, py: int) -> tuple[float, float, float]:
    """Sub-pixel ``(x, y)`` of the peak at integer ``(px, py)`` of a score map (separable
    parabolas through the 3-neighbourhoods, in score-map pixels) and its interpolated height
    gain; along an axis where the peak is on the map's border the integer position is kept."""
    h, w = scores.shape
    fx = gx = fy = gy = 0.0
    if 0 < px < w - 1:
        fx, gx = parabola(scores[py, px - 1], scores[py, px], scores[py, px + 1])
    if 0 < py < h - 1:
        fy, gy = parabola(scores[py - 1, px], scores[py, px], scores[py + 1, px])
    return px + fx, py + fy, gx + gy


def refine_peaks(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`refine_peak` for a stack of score maps ``(K, h, w)`` at once: per map the first
    maximum in row-major order (as ``cv2.minMaxLoc``), then the same separable parabolas
    (:func:`parabola`'s fit on arrays; the scalar one stays for single maps, where NumPy's
    per-call cost would exceed the fit; a test holds the two equal).
    Returns ``(fx, fy, peak, px, py)``, arrays of ``K`` (score-map px; ``peak`` is the
    integer maximum's score)."""
    k, h, w = maps.shape
    flat = maps.reshape(k, -1)
    at = flat.argmax(axis=1)
    py, px = np.divmod(at, w)
    idx = np.arange(k)
    peak = flat[idx, at]

    def vertex(a, c, inside):
        den = a - 2 * peak + c
        off = np.clip(0.5 * (a - c) / np.where(den < 0, den, -1.0), -0.5, 0.5)
        return np.where(inside & (den < 0), off, 0.0)

    inx, iny = (px > 0) & (px < w - 1), (py > 0) & (py < h - 1)
    fx = vertex(maps[idx, py, np.maximum(px - 1, 0)], maps[idx, py, np.minimum(px + 1, w - 1)], inx)
    fy = vertex(maps[idx, np.maximum(py - 1, 0), px], maps[idx, np.minimum(py + 1, h - 1), px], iny)
    return px + fx, py + fy, peak, px, py
