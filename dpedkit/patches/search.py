"""Find, for each DSLR window on a grid, the phone window that matches it best.

Conventions. The DSLR window at grid position ``(x, y)`` is ``dslr[y:y+S, x:x+S]`` and its
centre is ``c = (x + (S-1)/2, y + (S-1)/2)``. The matching phone patch is sampled at

    phone( c + R(angle) · ((j, i) − (S−1)/2) + (dx, dy) )     for row i, column j

with ``R`` the rotation by ``angle`` degrees (counter-clockwise on screen for positive
angles, x right, y down), bilinear interpolation. ``dx = dy = angle = 0`` is
``phone[y:y+S, x:x+S]``.

Correlation is zero-mean normalised cross-correlation of **luminance** (OpenCV's Rec. 601
gray): the cameras differ most in colour rendition, while structure — what alignment is
about — lives in luminance; one channel also keeps the search three times cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_STD = 2.0  # gray levels (0–255): below this a window has no texture to correlate


@dataclass(frozen=True)
class SearchOptions:
    size: int = 100
    max_shift: int = 5          # px, each direction
    max_angle: float = 1.0      # degrees, each direction
    angle_step: float = 0.5     # degrees
    min_std: float = MIN_STD
    subpixel: bool = True       # parabolic peak refinement of the shift (and of the score used to pick the angle)

    def angles(self) -> np.ndarray:
        if self.max_angle <= 0 or self.angle_step <= 0:
            return np.zeros(1)
        n = int(np.floor(self.max_angle / self.angle_step + 1e-9))
        return np.arange(-n, n + 1) * self.angle_step


@dataclass
class WindowMatch:
    x: int
    y: int
    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    ncc: float = float("nan")
    status: str = "ok"          # ok | flat | outside (search would leave the image)


def luminance(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    return g.astype(np.float32)


def ncc(a: np.ndarray, b: np.ndarray, min_std: float = MIN_STD) -> float:
    """Zero-mean normalised cross-correlation of two equal-size images (RGB → luminance).

    Returns ``nan`` when either has a standard deviation below ``min_std`` gray levels: a
    flat window is rejected, never scored by a near-zero division.
    """
    a, b = luminance(a).astype(np.float64), luminance(b).astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    sa, sb = np.sqrt((a * a).mean()), np.sqrt((b * b).mean())
    if sa < min_std or sb < min_std:
        return float("nan")
    return float((a * b).mean() / (sa * sb))


def _parabola(a: float, b: float, c: float) -> tuple[float, float]:
    """Vertex offset in (-0.5, 0.5) and height gain of the parabola through (-1,a), (0,b), (1,c)."""
    den = a - 2 * b + c
    if den >= 0:
        return 0.0, 0.0
    off = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return off, float(-0.125 * (a - c) ** 2 / den)


def refine_peak(scores: np.ndarray, px: int, py: int) -> tuple[float, float, float]:
    """Sub-pixel ``(x, y)`` of a correlation peak and its interpolated height gain; at the
    border of the score map the integer peak is kept."""
    h, w = scores.shape
    fx = gx = fy = gy = 0.0
    if 0 < px < w - 1:
        fx, gx = _parabola(scores[py, px - 1], scores[py, px], scores[py, px + 1])
    if 0 < py < h - 1:
        fy, gy = _parabola(scores[py - 1, px], scores[py, px], scores[py + 1, px])
    return px + fx, py + fy, gx + gy


def _rotation(angle: float) -> np.ndarray:
    t = np.deg2rad(angle)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def patch_affine(x: int, y: int, dx: float, dy: float, angle: float, size: int) -> np.ndarray:
    """The 2×3 matrix mapping patch pixel ``(j, i)`` to phone coordinates (module docstring)."""
    R = _rotation(angle)
    h = (size - 1) / 2
    c = np.array([x + h + dx, y + h + dy])
    return np.c_[R, c - R @ [h, h]]


def extract_phone_patch(phone: np.ndarray, x: int, y: int, dx: float, dy: float, angle: float, size: int) -> np.ndarray:
    """The phone patch that ``(dx, dy, angle)`` describe for the DSLR window at ``(x, y)``."""
    if dx == int(dx) and dy == int(dy) and angle == 0:
        x0, y0 = x + int(dx), y + int(dy)
        return phone[y0:y0 + size, x0:x0 + size].copy()
    A = patch_affine(x, y, dx, dy, angle, size)
    # warp from a small region around the samples: OpenCV's cost grows with the source size
    pts = A @ np.array([[0, size - 1, 0, size - 1], [0, 0, size - 1, size - 1], [1, 1, 1, 1]])
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in pts.min(axis=1))
    x1, y1 = (int(np.ceil(v)) + 3 for v in pts.max(axis=1))
    A[:, 2] -= (x0, y0)
    return cv2.warpAffine(phone[y0:y1, x0:x1], A, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def grid_positions(width: int, height: int, o: SearchOptions) -> list[tuple[int, int]]:
    """Top-left corners of non-overlapping ``size`` windows, inset so that every shift and
    rotation of the search stays inside the image (no invented pixels)."""
    S = o.size
    reach = (S - 1) / 2 * (abs(np.cos(np.deg2rad(o.max_angle))) + abs(np.sin(np.deg2rad(o.max_angle))) - 1)
    margin = int(np.ceil(o.max_shift + reach + 1))
    xs = range(margin, width - S - margin + 1, S)
    ys = range(margin, height - S - margin + 1, S)
    return [(x, y) for y in ys for x in xs]


def match_windows(dslr: np.ndarray, phone: np.ndarray, o: SearchOptions = SearchOptions()) -> list[WindowMatch]:
    """Exhaustive search over integer shifts ``|dx|, |dy| ≤ max_shift`` and the angle grid for
    every window of :func:`grid_positions` (then, with ``subpixel``, a parabolic refinement of
    each angle's peak, whose refined height picks the angle); one :class:`WindowMatch` per window.

    For each angle the phone luminance is rotated once about the image centre; a window of
    that rotated image is the phone patch rotated about its own centre, with a sub-pixel
    offset that goes into ``dx, dy`` exactly. The shifts are scored with
    ``cv2.matchTemplate(TM_CCOEFF_NORMED)``.
    """
    D, P = luminance(dslr), luminance(phone)
    h_img, w_img = P.shape
    S, m = o.size, o.max_shift
    half = (S - 1) / 2
    centre = np.array([(w_img - 1) / 2, (h_img - 1) / 2])
    windows = [WindowMatch(x, y) for x, y in grid_positions(w_img, h_img, o)]
    best = np.full(len(windows), -np.inf)
    textured = []
    for k, w in enumerate(windows):
        t = D[w.y:w.y + S, w.x:w.x + S]
        if t.std() < o.min_std:
            w.status = "flat"
        else:
            textured.append(k)
    for angle in o.angles():
        R = _rotation(angle)
        if angle == 0:
            Pa = P
        else:  # Pa(q) = P(centre + R (q − centre))
            A = np.c_[R, centre - R @ centre]
            Pa = cv2.warpAffine(P, A, (w_img, h_img), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        for k in textured:
            w = windows[k]
            c = np.array([w.x + half, w.y + half])
            c_rot = centre + R.T @ (c - centre)      # where c sits in the rotated image
            a0, b0 = int(round(c_rot[0] - half)), int(round(c_rot[1] - half))
            if a0 - m < 0 or b0 - m < 0 or a0 + S + m > w_img or b0 + S + m > h_img:
                continue
            region = Pa[b0 - m:b0 + S + m, a0 - m:a0 + S + m]
            scores = cv2.matchTemplate(region, D[w.y:w.y + S, w.x:w.x + S], cv2.TM_CCOEFF_NORMED)
            _, peak, _, (px, py) = cv2.minMaxLoc(scores)
            if o.subpixel:
                px, py, gain = refine_peak(scores, px, py)
                peak += gain
            if peak > best[k]:
                best[k] = peak
                wc = np.array([a0 - m + px + half, b0 - m + py + half])
                d = centre + R @ (wc - centre) - c   # the patch centre, relative to c
                w.dx, w.dy, w.angle = float(d[0]), float(d[1]), float(angle)
    for k in textured:
        if not np.isfinite(best[k]):
            windows[k].status = "outside"
    return windows
