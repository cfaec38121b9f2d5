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

import functools
import threading
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from dpedkit.imageops import refine_peak, refine_peaks

MIN_STD = 2.0  # gray levels (0–255): below this a window has no texture to correlate


@dataclass(frozen=True)
class SearchOptions:
    size: int = field(default=100, metadata={"help": "Patch side (px)."})
    max_shift: int = field(default=5, metadata={"help": "Largest phone-window shift searched, each direction (px)."})
    max_angle: float = field(default=1.0, metadata={"help": "Largest rotation searched, each direction (degrees)."})
    angle_step: float = field(default=0.5, metadata={"help": "Rotation step of the search (degrees)."})
    min_std: float = field(default=MIN_STD, metadata={
        "help": "A window whose grey-level standard deviation (0-255) is below this is flat and not scored."})
    subpixel: bool = field(default=True, metadata={
        "help": "Refine the best shift to sub-pixel precision (parabolic peak)."})
    method: Literal["verified", "exhaustive"] = field(default="verified", metadata={"choices": ["verified", "exhaustive"],
        "help": "Window search: 'verified' = integer NCC peak, then an iterated sub-pixel shift with the DSLR side "
                "resampled (bicubic; the phone patch is an exact crop), a rotation only where sub-blocks show one; "
                "'exhaustive' = DPED-style exhaustive shift × angle search, phone side bilinearly resampled."})
    verify: bool = field(default=True, metadata={
        "help": "Keep a window only when its content moves as one (sub-block shifts agree, no search-limit "
                "peak, forward and backward estimates agree); rejections are recorded with their reason."})
    blocks: int = field(default=4, metadata={"help": "Sub-blocks per window side for the verifier (they overlap)."})
    block_size: float = field(default=0.35, metadata={
        "help": "Side of a verifier sub-block as a fraction of the window side (larger: less noise, coarser)."})
    max_spread: float = field(default=0.75, metadata={
        "help": "Largest deviation of a sub-block's shift from the window's model (px) for a verified window."})
    max_asymmetry: float = field(default=0.75, metadata={
        "help": "Largest disagreement between forward (phone→DSLR) and backward estimates of a window's shift (px)."})
    block_std: float = field(default=3.0, metadata={
        "help": "A sub-block takes part in the verification when its DSLR side has at least this standard "
                "deviation (gray levels 0–255); flatter blocks cannot show a shift."})
    min_textured: float = field(default=0.35, metadata={
        "help": "Share of a window's sub-blocks and border strips that must have texture for it to vouch "
                "for itself; below, all its sides are judged with its neighbours (see vouch_agreement)."})
    min_textured_sides: int = field(default=2, metadata={
        "help": "Border strips (a quarter of the window deep) that must have texture for a window to vouch "
                "for its textured sides; below, all its sides are judged with its neighbours."})
    vouch_agreement: float = field(default=0.5, metadata={
        "help": "A side without texture may hide another depth: the flat region beyond it (walked across "
                "flat sides and flat windows) is accepted only when the fully verified windows around it "
                "(at least two) and the region's windows agree on the shift within this many px "
                "(else 'sparse')."})
    rotation_gain: float = field(default=0.5, metadata={
        "help": "A rotation is used only when it leaves at most this fraction of the shift-only sub-block "
                "misfit (sum of squares) and moves the window's corners by 0.2 px or more (else zero rotation)."})

    def angles(self) -> np.ndarray:
        if self.max_angle <= 0 or self.angle_step <= 0:
            return np.zeros(1)
        n = int(np.floor(self.max_angle / self.angle_step + 1e-9))
        return np.arange(-n, n + 1) * self.angle_step


# statuses a window can end in; the first is acceptance (the patches stage adds low_ncc)
WINDOW_STATUSES = ("ok", "flat", "outside", "low_ncc", "at_search_limit", "inconsistent", "asymmetric", "sparse")


@dataclass
class WindowMatch:
    x: int
    y: int
    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    ncc: float = float("nan")
    status: str = "ok"          # one of WINDOW_STATUSES
    residual: float | None = None  # px: largest sub-block deviation from the window's model (verified windows)
    model: str = "exhaustive"   # shift | rotation (verified method) | exhaustive
    # verified method: the window's sides (t, b, l, r) whose border strip has no texture; a
    # window with one is verified only when the grid neighbour beyond each such side vouches for it
    flat_sides: str = field(default="", repr=False)


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
    """One :class:`WindowMatch` per window of :func:`grid_positions`, by ``o.method``."""
    if o.method == "verified":
        return match_windows_verified(dslr, phone, o)
    if o.method != "exhaustive":
        raise ValueError(f"unknown search method {o.method!r} (verified or exhaustive)")
    return match_windows_exhaustive(dslr, phone, o)


def match_windows_exhaustive(dslr: np.ndarray, phone: np.ndarray, o: SearchOptions = SearchOptions()) -> list[WindowMatch]:
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
        w = windows[k]
        if not np.isfinite(best[k]):
            w.status = "outside"
        elif o.verify and max(abs(w.dx), abs(w.dy)) >= m - 0.5:
            w.status = "at_search_limit"      # the best shift is at the range's edge: the truth may lie beyond
    return windows


# --- the verified search (SearchOptions.method == "verified") -------------------------------
#
# Written pixels. The phone patch is an exact crop, phone[y+oy : y+oy+S, x+ox : x+ox+S] with
# (ox, oy) = round(dx, dy) — the phone photo is sharpened and denoised by its ISP and any
# resampling would smooth it. The DSLR patch is resampled (bicubic) at the points the model
# puts under those phone pixels: phone(c + d + R u) = dslr(c + u) gives, for the phone
# pixel c + o + v, the DSLR point c + R⁻¹(v + o − d). The row (x, y, dx, dy, angle) states
# the same correspondence as in the exhaustive method.

_SUBPIXEL_ITERS = 4
# the sub-pixel iteration stops after a step below this (px): a step typically leaves a fifth
# of its size (the median on bench/patches.py's pair), so the estimate is then within ~0.01 px
# (against a stop at 0.01 px the estimates moved by 0.002 px median, 0.02 px at the 99th percentile)
_SUBPIXEL_STEP = 0.03


def patch_offset(w: WindowMatch) -> tuple[int, int]:
    """Integer offset ``(ox, oy)`` of the phone crop of a verified window."""
    return int(np.floor(w.dx + 0.5)), int(np.floor(w.dy + 0.5))


def _dslr_affine(x: int, y: int, dx: float, dy: float, angle: float, size: int, ox: int, oy: int,
                 margin: int = 0) -> np.ndarray:
    """2×3 matrix: pixel ``(j, i)`` of the DSLR sample grid (the phone crop's pixels, extended
    by ``margin`` on each side) → DSLR aligned-image coordinates."""
    h = (size - 1) / 2
    # v = (j − margin − h, i − margin − h); point = c + Ri (v + o − d)
    vx, vy = ox - dx - margin - h, oy - dy - margin - h
    if angle == 0:
        return np.array([[1.0, 0.0, x + h + vx], [0.0, 1.0, y + h + vy]])
    Ri = _rotation(-angle)
    return np.hstack([Ri, (np.array([x + h, y + h]) + Ri @ (vx, vy))[:, None]])


def _cubic_taps(f: float) -> np.ndarray:
    """Weights of the four samples at offsets −1, 0, 1, 2 for a point ``f`` ∈ [0, 1) past the
    second: OpenCV's bicubic kernel (Keys, a = −0.75), so a shift and a warp agree."""
    a = -0.75
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1          # noqa: E731  |x| ≤ 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a     # noqa: E731  1 < |x| < 2
    return np.array([far(1 + f), near(f), near(1 - f), far(2 - f)], np.float32)


def _sample(img: np.ndarray, A: np.ndarray, out: int, interpolation=cv2.INTER_CUBIC) -> np.ndarray:
    """``img`` sampled at ``A @ (j, i, 1)`` on an ``out × out`` grid (read from a small region).

    A pure translation away from the image border, the verified search's usual case, is two
    separable 4-tap filters with the warp's own kernel: the same values in a quarter of the
    time."""
    if interpolation == cv2.INTER_CUBIC and A[0, 0] == 1 and A[1, 1] == 1 and A[0, 1] == 0 and A[1, 0] == 0:
        ix, iy = int(np.floor(A[0, 2])), int(np.floor(A[1, 2]))
        if ix >= 1 and iy >= 1 and ix + out + 2 <= img.shape[1] and iy + out + 2 <= img.shape[0]:
            src = img[iy - 1:iy + out + 2, ix - 1:ix + out + 2]
            kx, ky = _cubic_taps(A[0, 2] - ix), _cubic_taps(A[1, 2] - iy)
            # anchor 1: output q = Σ_t k[t] src[q − 1 + t], so rows/columns 1..out are the samples
            return cv2.sepFilter2D(src, -1, kx, ky, anchor=(1, 1))[1:out + 1, 1:out + 1]
    pts = A @ np.array([[0, out - 1, 0, out - 1], [0, 0, out - 1, out - 1], [1, 1, 1, 1]])
    x0, y0 = (max(0, int(np.floor(v)) - 3) for v in pts.min(axis=1))
    x1, y1 = (min(n, int(np.ceil(v)) + 4) for v, n in zip(pts.max(axis=1), img.shape[1::-1]))
    A = A.copy()
    A[:, 2] -= (x0, y0)
    return cv2.warpAffine(img[y0:y1, x0:x1], A, (out, out), flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def extract_patch_pair(dslr: np.ndarray, phone: np.ndarray, w: WindowMatch, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(dslr_patch, phone_patch)`` written for a window (RGB or gray, ``size × size``)."""
    if w.model == "exhaustive":
        return (dslr[w.y:w.y + size, w.x:w.x + size].copy(),
                extract_phone_patch(phone, w.x, w.y, w.dx, w.dy, w.angle, size))
    ox, oy = patch_offset(w)
    p = phone[w.y + oy:w.y + oy + size, w.x + ox:w.x + ox + size].copy()
    if w.dx == ox and w.dy == oy and w.angle == 0:
        return dslr[w.y:w.y + size, w.x:w.x + size].copy(), p
    A = _dslr_affine(w.x, w.y, w.dx, w.dy, w.angle, size, ox, oy)
    return _sample(dslr, A, size), p


class _Scratch(threading.local):
    """Per-thread scratch arrays by shape. Why: a fresh array of a few hundred kB is mapped
    anew by the allocator on every call, and touching its pages cost as much as the
    arithmetic done in it (the correlation maps below, computed per window)."""
    def __init__(self):
        self.arrays: dict[tuple, np.ndarray] = {}


_scratch_arrays = _Scratch()


def _scratch(shape: tuple) -> np.ndarray:
    a = _scratch_arrays.arrays.get(shape)
    if a is None:
        a = _scratch_arrays.arrays[shape] = np.empty(shape, np.float32)
    return a


def _shifted_views(region: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``out[v, u] = region[v:v+h, u:u+w]`` for every shift that fits, as one strided view
    (``sliding_window_view`` without its argument checks, which cost more than the view)."""
    (rh, rw), (h, w) = region.shape, shape
    return np.lib.stride_tricks.as_strided(region, (rh - h + 1, rw - w + 1, h, w), region.strides * 2,
                                           writeable=False)


def ncc_map_small(region: np.ndarray, templ: np.ndarray) -> np.ndarray:
    """``cv2.matchTemplate(region, templ, TM_CCOEFF_NORMED)`` computed directly, for a large
    template and a score map of a few pixels (OpenCV's Fourier path costs as much for 3×3
    scores as for 11×11 ones): one matrix-vector product plus box sums from integral images.
    :meth:`Cells.ncc_maps` computes the same for many rectangles at once; for the whole
    template alone this costs half as much."""
    th, tw = templ.shape
    T = templ.astype(np.float32)
    T -= np.float32(cv2.mean(T)[0])
    tn = float(np.sqrt(np.vdot(T, T)))
    shifted = _shifted_views(region, (th, tw))
    buf = _scratch(shifted.shape)
    buf[...] = shifted
    cross = (buf.reshape(-1, th * tw) @ T.ravel()).reshape(shifted.shape[:2])
    s, sq = cv2.integral2(region, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    box = lambda a: a[th:, tw:] - a[:-th, tw:] - a[th:, :-tw] + a[:-th, :-tw]  # noqa: E731
    n = th * tw
    var = np.maximum(box(sq) - box(s) ** 2 / n, 0)
    den = np.sqrt(var) * tn
    return np.where(den > 1e-9 * n, cross / np.maximum(den, 1e-300), 0.0).astype(np.float32)


def _ncc_peak(region: np.ndarray, templ: np.ndarray) -> tuple[float, float, float, int, int, tuple[int, int]]:
    """Sub-pixel peak ``(fx, fy)`` (score-map px), its score, integer peak and map shape."""
    small = (region.shape[0] - templ.shape[0] + 1) * (region.shape[1] - templ.shape[1] + 1) <= 9
    scores = (ncc_map_small(region, templ) if small and templ.size >= 4096
              else cv2.matchTemplate(region, templ, cv2.TM_CCOEFF_NORMED))
    _, peak, _, (px, py) = cv2.minMaxLoc(scores)
    fx, fy, _ = refine_peak(scores, px, py)
    return fx, fy, peak, px, py, scores.shape


@dataclass(frozen=True)
class Cells:
    """Rectangles ``(by, bx, bh, bw)`` (rows, columns; px) inside an ``S × S`` window, with the
    row and column indicator matrices that sum an image over all of them with two products."""
    size: int
    rects: tuple[tuple[int, int, int, int], ...]
    strip_rects: tuple[int, ...] = ()       # which rectangles are the border strips (top, bottom, left, right)

    def __post_init__(self):
        r = np.array(self.rects, dtype=np.intp).reshape(-1, 4)
        rows = sorted({(y, h) for y, _, h, _ in self.rects})
        cols = sorted({(x, w) for _, x, _, w in self.rects})
        Rm = np.zeros((len(rows), self.size), np.float32)
        Cm = np.zeros((self.size, len(cols)), np.float32)
        for k, (y, h) in enumerate(rows):
            Rm[k, y:y + h] = 1
        for k, (x, w) in enumerate(cols):
            Cm[x:x + w, k] = 1
        ri = np.array([rows.index((y, h)) for y, _, h, _ in self.rects], dtype=np.intp)
        ci = np.array([cols.index((x, w)) for _, x, _, w in self.rects], dtype=np.intp)
        area = (r[:, 2] * r[:, 3]).astype(np.float64)
        h = (self.size - 1) / 2
        # a rotation θ moves a rectangle's centre u (from the window's centre) by θ·(−u_y, u_x)
        rotation_field = np.c_[-(r[:, 0] + (r[:, 2] - 1) / 2 - h), r[:, 1] + (r[:, 3] - 1) / 2 - h]
        strips = np.array(self.strip_rects, dtype=np.intp)
        for name, v in dict(_r=r, _Rm=Rm, _Cm=Cm, _ri=ri, _ci=ci, _area=area, rotation_field=rotation_field,
                            strips=strips).items():
            object.__setattr__(self, name, v)

    @functools.lru_cache(maxsize=4)
    def _corners(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices into an integral image of the ``(S+2r)²`` region (row length S+2r+1):
        the four corners of every rectangle at every shift, ``(4, n, n, K)``, and those of the
        rectangles in the template's own integral image (row length S+1), ``(4, K)``."""
        n, S = 2 * r + 1, self.size
        by, bx, bh, bw = self._r.T
        v = np.arange(n)[:, None, None]
        y0, x0 = by + v, bx + v.transpose(1, 0, 2)
        y1, x1 = y0 + bh, x0 + bw
        row = S + 2 * r + 1
        region = np.stack(np.broadcast_arrays(y1 * row + x1, y0 * row + x1, y1 * row + x0, y0 * row + x0))
        own = np.stack([(by + bh) * (S + 1) + bx + bw, by * (S + 1) + bx + bw, (by + bh) * (S + 1) + bx,
                        by * (S + 1) + bx])
        return region, own

    def ncc_maps(self, region: np.ndarray, templ: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each rectangle's ``cv2.matchTemplate(TM_CCOEFF_NORMED)`` map over shifts ``0..2r``.

        ``templ`` is ``S × S`` and ``region`` ``(S+2r) × (S+2r)``; ``maps[k, v, u]`` is the NCC of
        ``templ[by:by+bh, bx:bx+bw]`` with ``region[by+v:by+v+bh, bx+u:bx+u+bw]`` (so ``u = v = r``
        is the rectangle's own place). Also returns, per rectangle, the standard deviations
        (grey levels) of ``region`` at its own place and of ``templ``.

        Why not one ``matchTemplate`` call per rectangle: for 20 rectangles of a 100 px window
        the calls and their Python loop cost twice as much as these few array products (the
        cross terms of all shifts from two indicator-matrix products, box sums from integral
        images)."""
        S = self.size
        corners, own = self._corners(r)
        area = self._area
        # centred by one constant each: NCC does not change, the float32 products stay small
        T = templ.astype(np.float32)
        T -= np.float32(cv2.mean(T)[0])
        G = region.astype(np.float32)
        G -= np.float32(cv2.mean(G)[0])
        shifted = _shifted_views(G, (S, S))                                    # (n, n, S, S)
        prod = np.multiply(shifted, T, out=_scratch(shifted.shape))
        cross = (self._Rm @ (prod @ self._Cm))[:, :, self._ri, self._ci]        # (n, n, K)
        s, sq = cv2.integral2(G, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
        box = lambda a, i: a.take(i[0]) - a.take(i[1]) - a.take(i[2]) + a.take(i[3])  # noqa: E731
        sr, srr = box(s, corners), box(sq, corners)
        st, stt = cv2.integral2(T, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
        st, stt = box(st, own), box(stt, own)
        var_r = np.maximum(srr - sr * sr / area, 0)
        var_t = np.maximum(stt - st * st / area, 0)
        den = np.sqrt(var_r * var_t)
        maps = (cross - st * sr / area) / np.maximum(den, 1e-9 * area)
        maps[den <= 1e-9 * area] = 0.0
        return np.clip(maps, -1, 1).transpose(2, 0, 1), np.sqrt(var_r[r, r] / area), np.sqrt(var_t / area)


@functools.lru_cache(maxsize=16)
def _window_cells(o: SearchOptions) -> Cells:
    """The verifier's cells: overlapping square sub-blocks, then the four border strips (top,
    bottom, left, right; a quarter of the window deep): a thin band of another depth along a
    side dominates its strip, never a square block. Last, the whole window (the sub-pixel
    iteration's own measure)."""
    S, nb = o.size, max(1, o.blocks)
    b = max(8, round(S * o.block_size))           # sub-block side (px); they overlap when nb·b > S
    starts = np.linspace(0, S - b, nb).round().astype(int) if nb > 1 else np.array([(S - b) // 2])
    e = max(4, S // 4)
    rects = [(int(by), int(bx), b, b) for by in starts for bx in starts]
    rects += [(0, 0, e, S), (S - e, 0, e, S), (0, 0, S, e), (0, S - e, S, e)]
    return Cells(S, tuple(rects) + ((0, 0, S, S),), tuple(range(len(rects) - 4, len(rects))))


def _verify_window(D: np.ndarray, P: np.ndarray, w: WindowMatch, o: SearchOptions) -> None:
    """Sub-pixel shift, model choice and the verifier for one window whose search over
    whole pixels is done (``w.dx, w.dy`` its parabolic peak); sets ``w`` in place."""
    S = o.size
    cells = _window_cells(o)                       # the verifier's cells, then the whole window
    n_cells = len(cells.rects) - 1
    rb = 2                                         # block search radius around the model (px)
    h = (S - 1) / 2

    def measure(angle: float, with_cells: bool):
        """At the current model: the whole window's step to its 3×3 NCC peak, and (with_cells)
        the cells' maps over ±rb px from the same sample."""
        ox, oy = patch_offset(w)
        Pi = P[w.y + oy:w.y + oy + S, w.x + ox:w.x + ox + S]
        m = rb if with_cells else 1
        Ds = _sample(D, _dslr_affine(w.x, w.y, w.dx, w.dy, angle, S, ox, oy, margin=m), S + 2 * m)
        if with_cells:
            maps, std_dslr, std_phone = cells.ncc_maps(Ds, Pi, rb)
            scores = maps[-1, rb - 1:rb + 2, rb - 1:rb + 2]
            at = (ox, oy), maps[:-1], std_dslr[:-1], std_phone[:-1]
        else:
            scores, at = ncc_map_small(Ds, Pi), None
        _, _, _, (px, py) = cv2.minMaxLoc(scores)
        fx, fy, _ = refine_peak(scores, px, py)
        # Pi(v) ≈ Ds(v + δ) ⇒ the phone-minus-DSLR displacement shrinks by δ
        return fx - 1, fy - 1, at

    # Iterate the parabola to its fixed point (unbiased). After a small step the next is likely
    # the last: it then measures the cells' maps from the same sample too (their cross terms
    # cost the whole window's nothing more), and the verifier needs no sample of its own.
    measured, converged, step = None, False, np.inf
    for _ in range(_SUBPIXEL_ITERS):
        ddx, ddy, measured = measure(0.0, with_cells=o.verify and step < 3 * _SUBPIXEL_STEP)
        step = max(abs(ddx), abs(ddy))
        w.dx, w.dy = w.dx - ddx, w.dy - ddy
        if step < _SUBPIXEL_STEP:
            converged = True
            break
    w.model = "shift"
    if max(abs(w.dx), abs(w.dy)) > o.max_shift + 0.5:
        w.status = "at_search_limit"
        return
    if not o.verify:
        return
    if not converged or measured is None or measured[0] != patch_offset(w):
        ddx, ddy, measured = measure(0.0, with_cells=True)
        ddx = ddy = 0.0                            # measured at the model itself
    ox, oy = measured[0]
    Pi = P[w.y + oy:w.y + oy + S, w.x + ox:w.x + ox + S]

    def block_deviations(maps, std_dslr, std_phone, step=(0.0, 0.0)):
        """Each textured cell's deviation from the model (px); ``step`` is how far the model
        moved since the maps were measured."""
        fx, fy, peak, px, py = refine_peaks(maps)
        # texture judged on the DSLR side: the phone's noise and sharpening give a flat block a
        # standard deviation, never a trustworthy correlation peak
        textured = (std_dslr >= o.block_std) & (std_phone >= o.min_std)
        # a peak ≥ rb px off, or content that does not correspond
        bad = textured & ((px == 0) | (px == 2 * rb) | (py == 0) | (py == 2 * rb) | (peak < 0.5))
        good = textured & ~bad
        dev = np.stack([fx - rb - step[0], fy - rb - step[1]], axis=1)[good]
        return dev, good, int(bad.sum())

    dev, good, bad = block_deviations(*measured[1:], step=(ddx, ddy))
    if bad:
        w.status, w.residual = "inconsistent", float(rb)
        return
    # Too few textured blocks, or sides without texture: the texture that is there cannot vouch
    # for the rest (a flat part may lie on another depth, or where the global warp bends). Such a
    # window goes through the other checks and is then judged with its neighbours
    # (_vouch_flat_sides); ``flat_sides`` names the sides it cannot vouch for itself.
    strips = good[cells.strips]
    if len(dev) < o.min_textured * n_cells or strips.sum() < o.min_textured_sides:
        w.flat_sides = "tblr"
    else:
        w.flat_sides = "".join(n for n, t in zip("tblr", strips) if not t)
    # rotation only when the blocks show one: −δ_b ≈ θ J u_b (J u = (−u_y, u_x)), richer model by a margin
    if o.max_angle > 0 and len(dev) >= 4:
        Ju = cells.rotation_field[:n_cells][good]
        mean = dev.mean(axis=0)
        theta = -float(((dev - mean) * Ju).sum() / (Ju * Ju).sum())   # radians
        rss_shift = float(((dev - mean) ** 2).sum())
        rss_rot = float(((dev - mean + theta * Ju) ** 2).sum())
        corner_move = abs(theta) * h * np.sqrt(2)
        if corner_move >= 0.2 and rss_rot <= o.rotation_gain * rss_shift:
            angle = float(np.clip(np.rad2deg(theta), -o.max_angle, o.max_angle))
            _, _, rotated = measure(angle, with_cells=True)
            dev_r, _, bad_r = block_deviations(*rotated[1:])
            if not bad_r and len(dev_r) and np.abs(dev_r).max() < np.abs(dev).max():
                w.angle, w.model, dev = angle, "rotation", dev_r
    w.residual = float(np.linalg.norm(dev, axis=1).max()) if len(dev) else 0.0
    if w.residual > o.max_spread:
        w.status = "inconsistent"
        return
    # backward: the phone crop searched in the DSLR image itself (no resampling of either side)
    c0x, c0y = int(np.floor(w.x + ox - w.dx + 0.5)), int(np.floor(w.y + oy - w.dy + 0.5))
    region = D[c0y - rb:c0y + S + rb, c0x - rb:c0x + S + rb]
    if region.shape != (S + 2 * rb, S + 2 * rb) or w.angle != 0:
        return                                     # (a rotated window was verified by its blocks)
    fx, fy, _, _, _, _ = _ncc_peak(region, Pi)
    # Pi ≈ D at (c0 − rb + f): the backward displacement of the phone crop's origin
    back = np.array([w.x + ox - (c0x - rb + fx), w.y + oy - (c0y - rb + fy)])
    if np.hypot(*(back - (w.dx, w.dy))) > o.max_asymmetry:
        w.status = "asymmetric"


def match_windows_verified(dslr: np.ndarray, phone: np.ndarray, o: SearchOptions) -> list[WindowMatch]:
    """Per window: the integer NCC peak over ``|dx|, |dy| ≤ max_shift`` (a peak on the range's
    boundary is ``at_search_limit``: the truth may lie beyond), an iterated parabolic
    sub-pixel shift with the DSLR side resampled, a rotation only where the sub-blocks show
    one, and (``verify``) the checks that the window moves as one."""
    D, P = luminance(dslr), luminance(phone)
    h_img, w_img = P.shape
    S, m = o.size, o.max_shift
    windows = [WindowMatch(x, y, model="shift") for x, y in grid_positions(w_img, h_img, o)]
    for w in windows:
        t = D[w.y:w.y + S, w.x:w.x + S]
        if cv2.meanStdDev(t)[1][0, 0] < o.min_std:
            w.status = "flat"
            continue
        if w.x - m < 0 or w.y - m < 0 or w.x + S + m > w_img or w.y + S + m > h_img:
            w.status = "outside"
            continue
        # forward: where in the phone photo is this DSLR window; one pixel beyond the range
        # where the image allows, so a shift near the range's edge is not mistaken for one past it
        if w.x - m - 1 >= 0 and w.y - m - 1 >= 0 and w.x + S + m + 1 <= w_img and w.y + S + m + 1 <= h_img:
            m = o.max_shift + 1
        region = P[w.y - m:w.y + S + m, w.x - m:w.x + S + m]
        scores = cv2.matchTemplate(region, t, cv2.TM_CCOEFF_NORMED)
        _, _, _, (px, py) = cv2.minMaxLoc(scores)
        m_search, m = m, o.max_shift
        if o.verify and (px in (0, 2 * m_search) or py in (0, 2 * m_search)):
            w.dx, w.dy = float(px - m_search), float(py - m_search)
            w.status = "at_search_limit"
            continue
        fx, fy, _ = refine_peak(scores, px, py)          # the start of the iterated estimate
        w.dx, w.dy = float(fx - m_search), float(fy - m_search)
        _verify_window(D, P, w, o)
    if o.verify:
        _vouch_flat_sides(windows, o)
    return windows


def _vouch_flat_sides(windows: list[WindowMatch], o: SearchOptions) -> None:
    """Judge the windows that passed every check but have sides without texture (``flat_sides``)
    together with their neighbours; those not vouched for become ``sparse``.

    Why: a flat part can hide another depth (its shift is unmeasurable). Starting from such a
    window, the grid is walked across its flat sides (and across every side of a ``flat``
    window); the windows it stops at that were verified with texture on all four sides are the
    region's boundary (the grid's edge stops the walk without a vote). The region is accepted
    when it has at least two boundary windows and all of them and the region's own windows
    agree on the shift within ``o.vouch_agreement`` px of the boundary's median (a rotation
    counts by its corner motion). A flat stretch enclosed by texture that moves as one is then
    very likely the same surface; a flat stretch between two depths meets windows of both and
    fails the agreement. A region window whose flat side faces unverified texture (a depth
    edge, a moved object) is rejected itself.
    """
    at = {(w.x, w.y): w for w in windows}
    S, h = o.size, (o.size - 1) / 2
    step = {"t": (0, -S), "b": (0, S), "l": (-S, 0), "r": (S, 0)}
    pending = lambda w: w.status == "ok" and bool(w.flat_sides)  # noqa: E731
    done: set = set()
    for w0 in windows:
        if not pending(w0) or (w0.x, w0.y) in done:
            continue
        region, boundary, stack, ok, tainted = {(w0.x, w0.y)}, {}, [w0], True, []
        while stack:
            w = stack.pop()
            for side in (w.flat_sides if w.status == "ok" else "tblr"):
                key = (w.x + step[side][0], w.y + step[side][1])
                n = at.get(key)
                if n is None or key in region or key in boundary:
                    continue
                elif pending(n) or n.status == "flat":
                    region.add(key)
                    stack.append(n)
                elif n.status == "ok":
                    boundary[key] = n
                elif w.status == "ok":
                    tainted.append(w)                             # unverified texture beyond a flat side:
                                                                  # maybe a depth edge next to this window
        members = [at[k] for k in region if at[k].status == "ok"]
        done |= region
        ok = ok and len(boundary) >= 2
        if ok:
            d = np.array([(n.dx, n.dy) for n in boundary.values()])
            med = np.median(d, axis=0)
            shifts = np.array([(m.dx, m.dy) for m in (*boundary.values(), *members)])
            angles = np.array([m.angle for m in (*boundary.values(), *members)])
            gap = np.hypot(*(shifts - med).T) + np.deg2rad(np.abs(angles)) * h * np.sqrt(2)
            ok = bool(gap.max() <= o.vouch_agreement)
        for m in (members if not ok else tainted):
            m.status = "sparse"
