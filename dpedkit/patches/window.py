"""The search's vocabulary: its options, one window's match, and the geometry of the two
patches a match describes.


Conventions. The DSLR window at grid position ``(x, y)`` is ``dslr[y:y+S, x:x+S]`` and its
centre is ``c = (x + (S-1)/2, y + (S-1)/2)``. The matching phone patch is sampled at

    phone( c + R(angle) · ((j, i) − (S−1)/2) + (dx, dy) )     for row i, column j

with ``R`` the rotation by ``angle`` degrees (counter-clockwise on screen for positive
angles, x right, y down), bilinear interpolation. ``dx = dy = angle = 0`` is
``phone[y:y+S, x:x+S]``.

Correlation is zero-mean normalised cross-correlation of **luminance** (OpenCV's Rec. 601
gray): the cameras differ most in colour rendition, while structure — what alignment is
about — lives in luminance; one channel also keeps the search three times cheaper.

Verified windows (``model`` shift or rotation) are written differently: the phone patch is
an exact crop, ``phone[y+oy : y+oy+S, x+ox : x+ox+S]`` with ``(ox, oy) = round(dx, dy)`` —
the phone photo is sharpened and denoised by its ISP and any resampling would smooth it.
The DSLR patch is resampled (bicubic) at the points the model puts under those phone
pixels: ``phone(c + d + R u) = dslr(c + u)`` gives, for the phone pixel ``c + o + v``, the
DSLR point ``c + R⁻¹(v + o − d)``. The row ``(x, y, dx, dy, angle)`` states the same
correspondence as in the exhaustive method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from dpedkit.patches.kernels import sample

MIN_STD = 2.0  # gray levels (0–255): below this a window has no texture to correlate


@dataclass(frozen=True)
class SearchOptions:
    size: int = field(default=100, metadata={"min": 8, "help": "Patch side (px)."})
    max_shift: int = field(default=5, metadata={"min": 1, "help": "Largest phone-window shift searched, each direction (px)."})
    max_angle: float = field(default=1.0, metadata={"min": 0, "help": "Largest rotation searched, each direction (degrees)."})
    angle_step: float = field(default=0.5, metadata={"min": 0, "help": "Rotation step of the search (degrees)."})
    min_std: float = field(default=MIN_STD, metadata={"min": 0, 
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
    blocks: int = field(default=4, metadata={"min": 1, "help": "Sub-blocks per window side for the verifier (they overlap)."})
    block_size: float = field(default=0.35, metadata={"min": 0, "min_open": True, "max": 1, 
        "help": "Side of a verifier sub-block as a fraction of the window side (larger: less noise, coarser)."})
    max_spread: float = field(default=0.75, metadata={"min": 0, "min_open": True, 
        "help": "Largest deviation of a sub-block's shift from the window's model (px) for a verified window."})
    max_asymmetry: float = field(default=0.75, metadata={"min": 0, "min_open": True, 
        "help": "Largest disagreement between forward (phone→DSLR) and backward estimates of a window's shift (px)."})
    block_std: float = field(default=3.0, metadata={"min": 0, 
        "help": "A sub-block takes part in the verification when its DSLR side has at least this standard "
                "deviation (gray levels 0–255); flatter blocks cannot show a shift."})
    min_textured: float = field(default=0.35, metadata={"min": 0, "max": 1, 
        "help": "Share of a window's sub-blocks and border strips that must have texture for it to vouch "
                "for itself; below, all its sides are judged with its neighbours (see vouch_agreement)."})
    min_textured_sides: int = field(default=2, metadata={"min": 0, "max": 4, 
        "help": "Border strips (a quarter of the window deep) that must have texture for a window to vouch "
                "for its textured sides; below, all its sides are judged with its neighbours."})
    vouch_agreement: float = field(default=0.5, metadata={"min": 0, "min_open": True, 
        "help": "A side without texture may hide another depth: the flat region beyond it (walked across "
                "flat sides and flat windows) is accepted only when the fully verified windows around it "
                "(at least two) and the region's windows agree on the shift within this many px "
                "(else 'sparse')."})
    channel: Literal["luma", "green"] = field(default="luma", metadata={"choices": ["luma", "green"],
        "help": "What the verified search correlates: luminance, or the green channel alone (lateral chromatic "
                "aberration moves red and blue, and so luminance, differently in every coloured patch; green is "
                "noisier: on bench/fidelity.py it kept 3 % more processed windows and 1 in 24 fewer parallax ones)."})
    min_curvature: float = field(default=0.01, metadata={"min": 0,
        "help": "A sub-block's deviation counts along each axis in proportion to how sharply its correlation "
                "peaks there (NCC fall to the next pixel), up to this: along a straight edge or in smooth texture "
                "the peak slides with noise and processing (the aperture problem) (0: every deviation counts)."})
    smooth: float = field(default=0.0, metadata={"min": 0,
        "help": "The verified search correlates both luminances smoothed with a Gaussian of this sigma (px): "
                "the phone's sharpening halos, denoising and noise then pull no sub-block's peak (0: unsmoothed)."})
    equalize: float = field(default=20.0, metadata={"min": 0,
        "help": "After the whole-pixel search, the verified search correlates each phone crop brought to the DSLR "
                "window's local brightness (ratio of the two local means, Gaussian of this sigma, px, read where the "
                "same content is): the phone's local tone mapping is a smooth gain, and a gain that changes across a "
                "sub-block moves its correlation peak (0: not equalised)."})
    min_sharpness: float = field(default=0.6, metadata={"min": 0, "max": 1,
        "help": "A window whose DSLR side keeps less than this share of the phone side's fine detail (gradient "
                "energy at a fine over a coarse scale, each side on its own, so contrast and tone do not count) is "
                "out of focus and rejected as 'defocus': a blurred target however well it matches (0: no check)."})
    min_significance: float = field(default=3.0, metadata={"min": 0,
        "help": "The verified search moves a window off the aligner's model only when the measured shift is at "
                "least this many times its uncertainty (from the sub-blocks' spread, at least --shift-floor); "
                "a smaller one is the sub-pixel peak's bias on processed pairs, not a misalignment (0: always move)."})
    shift_floor: float = field(default=0.08, metadata={"min": 0,
        "help": "Smallest uncertainty (px) of a window's measured shift: the bias that sharpening, denoising and "
                "chromatic aberration leave in a correlation peak."})
    rotation_gain: float = field(default=0.5, metadata={"min": 0, "max": 1, 
        "help": "A rotation is used only when it leaves at most this fraction of the shift-only sub-block "
                "misfit (sum of squares) and moves the window's corners by 0.2 px or more (else zero rotation)."})

    def angles(self) -> np.ndarray:
        if self.max_angle <= 0 or self.angle_step <= 0:
            return np.zeros(1)
        n = int(np.floor(self.max_angle / self.angle_step + 1e-9))
        return np.arange(-n, n + 1) * self.angle_step


# statuses a window can end in; the first is acceptance (the patches stage adds low_ncc)
WINDOW_STATUSES = ("ok", "flat", "outside", "low_ncc", "at_search_limit", "inconsistent", "asymmetric", "sparse",
                   "defocus")


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


def ncc(a: np.ndarray, b: np.ndarray, min_std: float = MIN_STD, smooth: float = 0.0) -> float:
    """Zero-mean normalised cross-correlation of two equal-size images (RGB → luminance),
    with ``smooth`` > 0 of both smoothed by a Gaussian of that σ (px) first.

    Returns ``nan`` when either has a standard deviation below ``min_std`` gray levels
    (before smoothing): a flat window is rejected, never scored by a near-zero division.
    """
    a, b = luminance(a).astype(np.float64), luminance(b).astype(np.float64)
    if a.std() < min_std or b.std() < min_std:
        return float("nan")
    if smooth > 0:
        a, b = cv2.GaussianBlur(a, (0, 0), smooth), cv2.GaussianBlur(b, (0, 0), smooth)
    a, b = a - a.mean(), b - b.mean()
    sa, sb = np.sqrt((a * a).mean()), np.sqrt((b * b).mean())
    if sa <= 0 or sb <= 0:
        return float("nan")
    return float((a * b).mean() / (sa * sb))


def rotation(angle: float) -> np.ndarray:
    t = np.deg2rad(angle)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def patch_affine(x: int, y: int, dx: float, dy: float, angle: float, size: int) -> np.ndarray:
    """The 2×3 matrix mapping patch pixel ``(j, i)`` to phone coordinates (module docstring)."""
    R = rotation(angle)
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


def patch_offset(w: WindowMatch) -> tuple[int, int]:
    """Integer offset ``(ox, oy)`` of the phone crop of a verified window."""
    return int(np.floor(w.dx + 0.5)), int(np.floor(w.dy + 0.5))


def dslr_affine(x: int, y: int, dx: float, dy: float, angle: float, size: int, ox: int, oy: int,
                 margin: int = 0) -> np.ndarray:
    """2×3 matrix: pixel ``(j, i)`` of the DSLR sample grid (the phone crop's pixels, extended
    by ``margin`` on each side) → DSLR aligned-image coordinates."""
    h = (size - 1) / 2
    # v = (j − margin − h, i − margin − h); point = c + Ri (v + o − d)
    vx, vy = ox - dx - margin - h, oy - dy - margin - h
    if angle == 0:
        return np.array([[1.0, 0.0, x + h + vx], [0.0, 1.0, y + h + vy]])
    Ri = rotation(-angle)
    return np.hstack([Ri, (np.array([x + h, y + h]) + Ri @ (vx, vy))[:, None]])



def extract_patch_pair(dslr: np.ndarray, phone: np.ndarray, w: WindowMatch, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(dslr_patch, phone_patch)`` written for a window (RGB or gray, ``size × size``)."""
    if w.model == "exhaustive":
        return (dslr[w.y:w.y + size, w.x:w.x + size].copy(),
                extract_phone_patch(phone, w.x, w.y, w.dx, w.dy, w.angle, size))
    ox, oy = patch_offset(w)
    p = phone[w.y + oy:w.y + oy + size, w.x + ox:w.x + ox + size].copy()
    if w.dx == ox and w.dy == oy and w.angle == 0:
        return dslr[w.y:w.y + size, w.x:w.x + size].copy(), p
    A = dslr_affine(w.x, w.y, w.dx, w.dy, w.angle, size, ox, oy)
    return sample(dslr, A, size), p


