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

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from dpedkit.imageops import refine_peak

MIN_STD = 2.0  # gray levels (0–255): below this a window has no texture to correlate


@dataclass(frozen=True)
class SearchOptions:
    size: int = 100
    max_shift: int = 5          # px, each direction
    max_angle: float = 1.0      # degrees, each direction
    angle_step: float = 0.5     # degrees (exhaustive method)
    min_std: float = MIN_STD
    subpixel: bool = True       # parabolic peak refinement of the shift (and of the score used to pick the angle)
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
        "help": "Share of a window's sub-blocks and border strips that must have texture for it to be "
                "verified (else 'sparse')."})
    min_textured_sides: int = field(default=4, metadata={
        "help": "Border strips (a quarter of the window deep) that must have texture for the window to be "
                "verified: a flat side may lie on another depth, unseen (else 'sparse')."})
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


def patch_offset(w: WindowMatch) -> tuple[int, int]:
    """Integer offset ``(ox, oy)`` of the phone crop of a verified window."""
    return int(np.floor(w.dx + 0.5)), int(np.floor(w.dy + 0.5))


def _dslr_affine(x: int, y: int, dx: float, dy: float, angle: float, size: int, ox: int, oy: int,
                 margin: int = 0) -> np.ndarray:
    """2×3 matrix: pixel ``(j, i)`` of the DSLR sample grid (the phone crop's pixels, extended
    by ``margin`` on each side) → DSLR aligned-image coordinates."""
    h = (size - 1) / 2
    c = np.array([x + h, y + h])
    Ri = _rotation(-angle)
    # v = (j − margin − h, i − margin − h); point = c + Ri (v + o − d)
    t = c + Ri @ (np.array([ox - dx - margin - h, oy - dy - margin - h]))
    return np.c_[Ri, t]


def _sample(img: np.ndarray, A: np.ndarray, out: int, interpolation=cv2.INTER_CUBIC) -> np.ndarray:
    """``img`` sampled at ``A @ (j, i, 1)`` on an ``out × out`` grid (read from a small region)."""
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


def _std(a: np.ndarray) -> float:
    return float(cv2.meanStdDev(a)[1][0, 0])


def ncc_map_small(region: np.ndarray, templ: np.ndarray) -> np.ndarray:
    """``cv2.matchTemplate(region, templ, TM_CCOEFF_NORMED)`` computed directly, for a large
    template and a score map of a few pixels (OpenCV's Fourier path costs as much for 3×3
    scores as for 11×11 ones): one tensor contraction plus box sums from integral images."""
    th, tw = templ.shape
    rh, rw = region.shape[0] - th + 1, region.shape[1] - tw + 1
    T = templ.astype(np.float32)
    T = T - T.mean()
    tn = float(np.sqrt(np.vdot(T, T)))
    cross = np.empty((rh, rw))
    for i in range(rh):
        for j in range(rw):
            cross[i, j] = np.vdot(T, region[i:i + th, j:j + tw])
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


def _verify_window(D: np.ndarray, P: np.ndarray, w: WindowMatch, o: SearchOptions) -> None:
    """Sub-pixel shift, model choice and the verifier for one window whose search over
    whole pixels is done (``w.dx, w.dy`` its parabolic peak); sets ``w`` in place."""
    S, nb = o.size, max(1, o.blocks)
    b = max(8, round(S * o.block_size))           # sub-block side (px); they overlap when nb·b > S
    starts = np.linspace(0, S - b, nb).round().astype(int) if nb > 1 else np.array([(S - b) // 2])
    # overlapping square blocks, and the four border strips (a quarter of the window deep): a
    # thin band of another depth along a side dominates its strip, never a square block
    e = max(4, S // 4)
    cells = [(by, bx, b, b) for by in starts for bx in starts]
    cells += [(0, 0, e, S), (S - e, 0, e, S), (0, 0, S, e), (0, S - e, S, e)]
    rb = 2                                         # block search radius around the model (px)
    h = (S - 1) / 2
    for _ in range(_SUBPIXEL_ITERS):               # iterate the parabola to its fixed point: unbiased
        ox, oy = patch_offset(w)
        Pi = P[w.y + oy:w.y + oy + S, w.x + ox:w.x + ox + S]
        Ds = _sample(D, _dslr_affine(w.x, w.y, w.dx, w.dy, 0.0, S, ox, oy, margin=1), S + 2)
        fx, fy, _, _, _, _ = _ncc_peak(Ds, Pi)
        # Pi(v) ≈ Ds(v + δ) ⇒ the phone-minus-DSLR displacement shrinks by δ
        ddx, ddy = fx - 1, fy - 1
        w.dx, w.dy = w.dx - ddx, w.dy - ddy
        if abs(ddx) < 0.01 and abs(ddy) < 0.01:
            break
    w.model = "shift"
    if max(abs(w.dx), abs(w.dy)) > o.max_shift + 0.5:
        w.status = "at_search_limit"
        return
    if not o.verify:
        return
    # sub-blocks: each one's own shift around the window's model
    ox, oy = patch_offset(w)
    Pi = P[w.y + oy:w.y + oy + S, w.x + ox:w.x + ox + S]

    strips_textured = [0]

    def block_deviations(angle: float):
        Ds = _sample(D, _dslr_affine(w.x, w.y, w.dx, w.dy, angle, S, ox, oy, margin=rb), S + 2 * rb)
        dev, centres, bad = [], [], 0
        strips_textured[:] = [0]
        for k, (by, bx, bh, bw) in enumerate(cells):
            if True:
                t = Pi[by:by + bh, bx:bx + bw]
                region = Ds[by:by + bh + 2 * rb, bx:bx + bw + 2 * rb]
                # texture judged on the DSLR side: the phone's noise and sharpening give a flat
                # block a standard deviation, never a trustworthy correlation peak
                if _std(region[rb:rb + bh, rb:rb + bw]) < o.block_std or _std(t) < o.min_std:
                    continue                       # no texture: nothing to verify here
                fx, fy, peak, px, py, shape = _ncc_peak(region, t)
                if px in (0, shape[1] - 1) or py in (0, shape[0] - 1) or peak < 0.5:
                    bad += 1                       # ≥ rb px off, or content that does not correspond
                    continue
                dev.append((fx - rb, fy - rb))
                strips_textured[0] += k >= len(cells) - 4
                centres.append((bx + (bw - 1) / 2 - h, by + (bh - 1) / 2 - h))
        return np.array(dev, float).reshape(-1, 2), np.array(centres, float).reshape(-1, 2), bad

    dev, cen, bad = block_deviations(0.0)
    if bad:
        w.status, w.residual = "inconsistent", float(rb)
        return
    if len(dev) < o.min_textured * len(cells) or strips_textured[0] < o.min_textured_sides:
        # mostly flat, or a side without texture: the texture that is there cannot vouch for
        # the rest (a flat part may lie on another depth, or where the global warp bends), so
        # the window is not verified
        w.status = "sparse"
        return
    # rotation only when the blocks show one: −δ_b ≈ θ J u_b (J u = (−u_y, u_x)), richer model by a margin
    if o.max_angle > 0 and len(dev) >= 4:
        Ju = np.c_[-cen[:, 1], cen[:, 0]]
        mean = dev.mean(axis=0)
        theta = -float(((dev - mean) * Ju).sum() / (Ju * Ju).sum())   # radians
        rss_shift = float(((dev - mean) ** 2).sum())
        rss_rot = float(((dev - mean + theta * Ju) ** 2).sum())
        corner_move = abs(theta) * h * np.sqrt(2)
        if corner_move >= 0.2 and rss_rot <= o.rotation_gain * rss_shift:
            angle = float(np.clip(np.rad2deg(theta), -o.max_angle, o.max_angle))
            dev_r, cen_r, bad_r = block_deviations(angle)
            if not bad_r and len(dev_r) and np.abs(dev_r).max() < np.abs(dev).max():
                w.angle, w.model, dev = angle, "rotation", dev_r
    w.residual = float(np.linalg.norm(dev, axis=1).max())
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
        if t.std() < o.min_std:
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
    return windows
