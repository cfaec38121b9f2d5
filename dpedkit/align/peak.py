"""Sub-pixel location of a correlation peak: the one parabolic fit both the aligner's grid
measurement and the patch search use (score maps as from ``cv2.matchTemplate``)."""

from __future__ import annotations


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
