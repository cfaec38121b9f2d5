"""The verified window search (``SearchOptions.method == "verified"``).

Per window: the integer NCC peak over ``|dx|, |dy| ≤ max_shift``, an iterated parabolic
sub-pixel shift with the DSLR side resampled (the phone patch is an exact crop, see
:mod:`dpedkit.patches.window`), a rotation only where the sub-blocks show one, then the
checks that the window moves as one. Each check is one small function that returns the
window's rejection status (``None``: passed); :func:`verify_window` runs them in order and
the first rejection is the window's status. Windows with sides without texture are then
judged with their neighbours (:func:`dpedkit.patches.vouching.vouch_flat_sides`).

Shifts are in px (phone minus DSLR position of the same content, x right, y down); NCC is
zero-mean normalised cross-correlation of luminance (0–255), each phone crop brought to
the DSLR window's local brightness after the whole-pixel search (:func:`phone_crop`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import functools

import cv2
import numpy as np

from dpedkit.imageops import refine_peak, refine_peaks
from dpedkit.patches.kernels import Cells, ncc_map_small, ncc_peak, sample, sharpness
from dpedkit.patches.vouching import vouch_flat_sides
from dpedkit.patches.window import SearchOptions, WindowMatch, dslr_affine, grid_positions, luminance, patch_offset

_SUBPIXEL_ITERS = 4
# the sub-pixel iteration stops after a step below this (px): a step typically leaves a fifth
# of its size (the median on bench/patches.py's pair), so the estimate is then within ~0.01 px
# (against a stop at 0.01 px the estimates moved by 0.002 px median, 0.02 px at the 99th percentile)
_SUBPIXEL_STEP = 0.03
_RB = 2          # the cells' search radius around the model (px)
# NCC by which a cell's peak on its map's edge must beat the model's own place to count as
# content moving otherwise (a moved object's cells gain tenths; a flat surface hundredths)
_EDGE_GAIN = 0.02


@functools.lru_cache(maxsize=16)
def window_cells(o: SearchOptions) -> Cells:
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


@dataclass
class CellSample:
    """The cells' correlation maps measured at one model: the phone crop's integer offset,
    the maps over ±``_RB`` px (``(K, 2rb+1, 2rb+1)``, the whole window excluded) and each
    cell's standard deviation on the DSLR and the phone side (grey levels)."""
    offset: tuple[int, int]
    maps: np.ndarray
    std_dslr: np.ndarray
    std_phone: np.ndarray


@dataclass
class BlockFit:
    """The textured cells' deviations from the window's model (px, ``(n, 2)``), which cells
    they are (``good``, a mask over the cells) and how many textured cells have no usable
    peak (``bad``)."""
    dev: np.ndarray
    good: np.ndarray
    bad: int
    weight: np.ndarray | None = None   # (n, 2): how much each deviation counts along x and y (0–1)


def _measure(D: np.ndarray, P: np.ndarray, w: WindowMatch, o: SearchOptions, angle: float,
             with_cells: bool, means: LocalMeans | None = None) -> tuple[float, float, CellSample | None]:
    """At the current model: the whole window's step to its 3×3 NCC peak, and (with_cells)
    the cells' maps over ±rb px from the same sample."""
    S, rb = o.size, _RB
    ox, oy = patch_offset(w)
    Pi = phone_crop(P, w, ox, oy, S, means)
    m = rb if with_cells else 1
    Ds = sample(D, dslr_affine(w.x, w.y, w.dx, w.dy, angle, S, ox, oy, margin=m), S + 2 * m)
    at = None
    if with_cells:
        maps, std_dslr, std_phone = window_cells(o).ncc_maps(Ds, Pi, rb)
        scores = maps[-1, rb - 1:rb + 2, rb - 1:rb + 2]
        at = CellSample((ox, oy), maps[:-1], std_dslr[:-1], std_phone[:-1])
    else:
        scores = ncc_map_small(Ds, Pi)
    _, _, _, (px, py) = cv2.minMaxLoc(scores)
    fx, fy, _ = refine_peak(scores, px, py)
    # Pi(v) ≈ Ds(v + δ) ⇒ the phone-minus-DSLR displacement shrinks by δ
    return fx - 1, fy - 1, at


def _iterate_subpixel(D, P, w: WindowMatch, o: SearchOptions,
                      means: LocalMeans | None = None) -> tuple[bool, CellSample | None, tuple[float, float]]:
    """Iterate the parabola to its fixed point (unbiased), moving ``w.dx, w.dy``. Returns
    whether it converged, the cells' sample of its last measurement (or ``None``) and that
    measurement's step (how far the model moved since the sample).

    After a small step the next is likely the last: it then measures the cells' maps from the
    same sample too (their cross terms cost the whole window's nothing more), and the
    verifier needs no sample of its own."""
    measured, step, d = None, np.inf, (0.0, 0.0)
    for _ in range(_SUBPIXEL_ITERS):
        ddx, ddy, measured = _measure(D, P, w, o, 0.0, o.verify and step < 3 * _SUBPIXEL_STEP, means)
        step, d = max(abs(ddx), abs(ddy)), (ddx, ddy)
        w.dx, w.dy = w.dx - ddx, w.dy - ddy
        if step < _SUBPIXEL_STEP:
            return True, measured, d
    return False, measured, d


def _block_fit(s: CellSample, o: SearchOptions, step=(0.0, 0.0)) -> BlockFit:
    """Each textured cell's deviation from the model (px); ``step`` is how far the model
    moved since the maps were measured.

    A deviation counts along each axis in proportion to how sharply the cell's correlation
    peaks there (its curvature, up to ``o.min_curvature``): along a straight edge or in smooth
    texture the peak slides with noise and processing (the aperture problem) and says little;
    and in proportion to how far the surface itself supports it (:func:`_support`)."""
    rb = _RB
    fx, fy, peak, px, py = refine_peaks(s.maps)
    # texture judged on the DSLR side: the phone's noise and sharpening give a flat block a
    # standard deviation, never a trustworthy correlation peak
    textured = (s.std_dslr >= o.block_std) & (s.std_phone >= o.min_std)
    # a peak ≥ rb px off, or content that does not correspond; a low peak counts only where both
    # sides have clear texture: the phone's denoising flattens faint texture and its noise then
    # decides the peak (such a cell takes no part)
    # A peak on the map's edge counts only where it beats the model's own place clearly: in
    # smooth or repetitive texture the surface is flat and its maximum wanders to the edge.
    strong = np.minimum(s.std_dslr, s.std_phone) >= 2 * o.block_std
    low = peak < 0.5
    edge = ((px == 0) | (px == 2 * rb) | (py == 0) | (py == 2 * rb)) & (peak - s.maps[:, rb, rb] >= _EDGE_GAIN)
    bad = textured & (edge | (low & strong))
    good = textured & ~bad & ~low
    dev = np.stack([fx - rb - step[0], fy - rb - step[1]], axis=1)
    curv = _curvature(s.maps, peak, px, py)
    weight = np.clip(curv / o.min_curvature, 0, 1) if o.min_curvature > 0 else np.ones_like(dev)
    weight = weight * _support(s.maps, peak, px, py, fx, fy, curv)[:, None]
    return BlockFit((dev * weight)[good], good, int(bad.sum()), weight[good])


def _support(maps: np.ndarray, peak: np.ndarray, px: np.ndarray, py: np.ndarray, fx: np.ndarray, fy: np.ndarray,
             curv: np.ndarray) -> np.ndarray:
    """``(K,)`` in [0, 1]: how much of each cell's deviation its correlation surface supports.

    The cell's peak beats the model's own place (the map's centre) by a measured NCC gain; the
    parabola the deviation is read from (vertex ``f``, curvature ``c`` per axis, through the
    integer peak ``p``) predicts the gain ``½ Σ c (f² − (f − p)²)``. On a single clean peak the
    two agree (support 1). Where the measured gain is a fraction of the predicted one, the
    surface is flat-topped or has a second maximum at the model's place (smooth ramps,
    repeated texture, a sharpening halo's double edge): the model's position explains the
    cell nearly as well as the peak does, and the deviation is scaled by the square root of
    that fraction (a gain grows with the square of a distance). A peak at the model's own
    integer place predicts no gain and keeps its (sub-pixel) deviation."""
    rb = _RB
    gain = peak - maps[np.arange(len(maps)), rb, rb]
    p = np.stack([px - rb, py - rb], axis=1).astype(float)
    f = np.stack([fx - rb, fy - rb], axis=1)
    predicted = 0.5 * (curv * (f ** 2 - (f - p) ** 2)).sum(axis=1)
    ratio = np.where(predicted > 1e-6, gain / np.maximum(predicted, 1e-6), 1.0)
    return np.sqrt(np.clip(ratio, 0, 1))


def _curvature(maps: np.ndarray, peak: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """``(K, 2)``: the NCC's fall from each map's peak to its neighbours, along x and y
    (``2·peak − left − right``; per px², ≥ 0 at a maximum); a peak on the border reads its
    nearest inner neighbourhood (such a cell is rejected anyway)."""
    k, h, w = maps.shape
    i = np.arange(k)
    x, y = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)
    cxx = 2 * peak - maps[i, y, x - 1] - maps[i, y, x + 1]
    cyy = 2 * peak - maps[i, y - 1, x] - maps[i, y + 1, x]
    return np.maximum(np.stack([cxx, cyy], axis=1), 0)


def check_range(w: WindowMatch, o: SearchOptions) -> str | None:
    """The sub-pixel estimate left the searched range: the truth may lie beyond."""
    return "at_search_limit" if max(abs(w.dx), abs(w.dy)) > o.max_shift + 0.5 else None


def check_blocks(w: WindowMatch, fit: BlockFit) -> str | None:
    """A textured cell whose peak is at its search edge or too low: content that does not
    move with the window (another depth, a moved object)."""
    if fit.bad:
        w.residual = float(_RB)
        return "inconsistent"
    return None


def check_focus(sharp: tuple[np.ndarray, np.ndarray] | None, w: WindowMatch, o: SearchOptions) -> str | None:
    """The DSLR window keeps less than ``min_sharpness`` of the phone window's fine detail
    (:func:`~dpedkit.patches.kernels.sharpness` of each side's unsmoothed grey on its own):
    out of focus, a blurred training target however well it matches."""
    if sharp is None or o.min_sharpness <= 0:
        return None
    (D, P), S = sharp, o.size
    ox, oy = patch_offset(w)
    sd = sharpness(D[w.y:w.y + S, w.x:w.x + S])
    sp = sharpness(P[w.y + oy:w.y + oy + S, w.x + ox:w.x + ox + S])
    return "defocus" if sd < o.min_sharpness * sp else None


def keep_global_model(w: WindowMatch, dev: np.ndarray, o: SearchOptions,
                      weight: np.ndarray | None = None) -> str | None:
    """Put a shift-model window back at the aligner's position (``dx = dy = 0``) unless its
    measured shift is at least ``min_significance`` times its uncertainty.

    Why: on a pair the aligner already fits, a sub-pixel peak is biased by the cameras'
    processing (sharpening halos, denoising, chromatic aberration shift it by a tenth of a
    pixel or more) and following it adds error. The uncertainty is the sub-blocks' spread
    about the model over the square root of their number (halved: they overlap), at least
    ``shift_floor`` px, the bias a single peak keeps. ``residual`` is then the blocks'
    largest deviation from the position kept (each block's share of the move counted as its
    deviations are: along an axis where a block cannot see a shift it cannot see this one
    either), checked as at the measured shift (:func:`check_spread`): the blocks must fit the
    position written. Returns the status."""
    if o.min_significance <= 0 or w.model != "shift":
        return None
    n = len(dev)
    spread = float(np.sqrt((dev ** 2).sum(axis=1).mean())) if n else 0.0
    sigma = np.hypot(o.shift_floor, spread / np.sqrt(max(1.0, n / 2)))
    if np.hypot(w.dx, w.dy) >= o.min_significance * sigma:
        return None
    back = np.array([w.dx, w.dy]) * (1.0 if weight is None else weight)   # the move back, as each block measures it
    residual = float(np.linalg.norm(dev + back, axis=1).max()) if n else w.residual
    w.residual = residual
    w.dx = w.dy = 0.0
    return check_spread(w, o)


def check_spread(w: WindowMatch, o: SearchOptions) -> str | None:
    """The cells' largest deviation from the window's model exceeds ``max_spread``."""
    return "inconsistent" if w.residual is not None and w.residual > o.max_spread else None


def check_symmetry(D: np.ndarray, P: np.ndarray, w: WindowMatch, offset: tuple[int, int],
                   o: SearchOptions, means: LocalMeans | None = None) -> str | None:
    """Backward: the phone crop searched in the DSLR image itself (no resampling of either
    side) must land where the forward estimate says, within ``max_asymmetry`` px. A rotated
    window (verified by its blocks) and one too near the border are not checked."""
    S, rb = o.size, _RB
    ox, oy = offset
    c0x, c0y = int(np.floor(w.x + ox - w.dx + 0.5)), int(np.floor(w.y + oy - w.dy + 0.5))
    region = D[c0y - rb:c0y + S + rb, c0x - rb:c0x + S + rb]
    if region.shape != (S + 2 * rb, S + 2 * rb) or w.angle != 0:
        return None
    Pi = phone_crop(P, w, ox, oy, S, means)
    fx, fy, _, _, _, _ = ncc_peak(region, Pi)
    # Pi ≈ D at (c0 − rb + f): the backward displacement of the phone crop's origin
    back = np.array([w.x + ox - (c0x - rb + fx), w.y + oy - (c0y - rb + fy)])
    return "asymmetric" if np.hypot(*(back - (w.dx, w.dy))) > o.max_asymmetry else None


def _mark_flat_sides(w: WindowMatch, fit: BlockFit, cells: Cells, o: SearchOptions) -> None:
    """Too few textured blocks, or sides without texture: the texture that is there cannot
    vouch for the rest (a flat part may lie on another depth, or where the global warp bends).
    Such a window goes through the other checks and is then judged with its neighbours;
    ``flat_sides`` names the sides it cannot vouch for itself."""
    strips = fit.good[cells.strips]
    n_cells = len(cells.rects) - 1
    if len(fit.dev) < o.min_textured * n_cells or strips.sum() < o.min_textured_sides:
        w.flat_sides = "tblr"
    else:
        w.flat_sides = "".join(n for n, t in zip("tblr", strips) if not t)


def _fit_rotation(D, P, w: WindowMatch, o: SearchOptions, fit: BlockFit, cells: Cells,
                  means: LocalMeans | None = None) -> np.ndarray | None:
    """A rotation only when the blocks show one: −δ_b ≈ θ J u_b (J u = (−u_y, u_x)), the richer
    model by a margin (``rotation_gain``) and moving the corners by 0.2 px or more. Sets
    ``w.angle`` and ``w.model`` when taken; returns the blocks' deviations of the model kept,
    or ``None`` when the blocks show a rotation beyond ``max_angle`` (the window is then
    ``at_search_limit``, as a shift beyond the range: the camera's roll is the aligner's,
    what remains of a rotation this large is an object that moved)."""
    dev = fit.dev
    if o.max_angle <= 0 or len(dev) < 4:
        return dev
    n_cells = len(cells.rects) - 1
    Ju = cells.rotation_field[:n_cells][fit.good]
    mean = dev.mean(axis=0)
    theta = -float(((dev - mean) * Ju).sum() / (Ju * Ju).sum())   # radians
    rss_shift = float(((dev - mean) ** 2).sum())
    rss_rot = float(((dev - mean + theta * Ju) ** 2).sum())
    corner_move = abs(theta) * (o.size - 1) / 2 * np.sqrt(2)
    if corner_move < 0.2 or rss_rot > o.rotation_gain * rss_shift:
        return dev
    if abs(np.rad2deg(theta)) > o.max_angle:
        return None                                # a rotation beyond the range searched: a swaying object?
    angle = float(np.rad2deg(theta))
    _, _, rotated = _measure(D, P, w, o, angle, True, means)
    fit_r = _block_fit(rotated, o)
    if not fit_r.bad and len(fit_r.dev) and np.abs(fit_r.dev).max() < np.abs(dev).max():
        w.angle, w.model = angle, "rotation"
        return fit_r.dev
    return dev


def verify_window(D: np.ndarray, P: np.ndarray, w: WindowMatch, o: SearchOptions,
                  sharp: tuple[np.ndarray, np.ndarray] | None = None, means: LocalMeans | None = None) -> None:
    """Sub-pixel shift, model choice and the verifier for one window whose search over
    whole pixels is done (``w.dx, w.dy`` its parabolic peak); sets ``w`` in place. ``D, P``
    are the luminances the correlations use (band-limited, :func:`band_limited`), ``sharp``
    the unsmoothed ones the focus check reads (``None``: no focus check), ``means`` the local
    means that equalise the phone crops (:func:`phone_crop`; ``None``: not equalised)."""
    converged, measured, step = _iterate_subpixel(D, P, w, o, means)
    w.model = "shift"
    status = check_range(w, o)
    if status or not o.verify:
        w.status = status or w.status
        return
    if not converged or measured is None or measured.offset != patch_offset(w):
        _, _, measured = _measure(D, P, w, o, 0.0, True, means)
        step = (0.0, 0.0)                          # measured at the model itself
    cells = window_cells(o)
    fit = _block_fit(measured, o, step)
    status = check_focus(sharp, w, o) or check_blocks(w, fit)
    if status is None:
        _mark_flat_sides(w, fit, cells, o)
        dev = _fit_rotation(D, P, w, o, fit, cells, means)
        if dev is None:
            status = "at_search_limit"
        else:
            w.residual = float(np.linalg.norm(dev, axis=1).max()) if len(dev) else 0.0
            status = check_spread(w, o) or check_symmetry(D, P, w, measured.offset, o, means)
        if status is None:
            status = keep_global_model(w, dev, o, fit.weight if w.model == "shift" else None)
    if status:
        w.status = status


def _integer_peak(D: np.ndarray, P: np.ndarray, w: WindowMatch, o: SearchOptions) -> str | None:
    """The whole-pixel NCC peak of the window over ``|dx|, |dy| ≤ max_shift`` and its parabolic
    refinement, into ``w.dx, w.dy``; returns a rejection status or ``None``.

    The search reaches one pixel beyond the range where the image allows, so a shift near
    the range's edge is not mistaken for one past it; a peak on the searched boundary is
    ``at_search_limit`` (the truth may lie beyond)."""
    S, m = o.size, o.max_shift
    h_img, w_img = P.shape
    t = D[w.y:w.y + S, w.x:w.x + S]
    if cv2.meanStdDev(t)[1][0, 0] < o.min_std:
        return "flat"
    if w.x - m < 0 or w.y - m < 0 or w.x + S + m > w_img or w.y + S + m > h_img:
        return "outside"
    if w.x - m - 1 >= 0 and w.y - m - 1 >= 0 and w.x + S + m + 1 <= w_img and w.y + S + m + 1 <= h_img:
        m += 1
    region = P[w.y - m:w.y + S + m, w.x - m:w.x + S + m]
    scores = cv2.matchTemplate(region, t, cv2.TM_CCOEFF_NORMED)
    _, _, _, (px, py) = cv2.minMaxLoc(scores)
    if o.verify and (px in (0, 2 * m) or py in (0, 2 * m)):
        w.dx, w.dy = float(px - m), float(py - m)
        return "at_search_limit"
    fx, fy, _ = refine_peak(scores, px, py)          # the start of the iterated estimate
    w.dx, w.dy = float(fx - m), float(fy - m)
    return None


def _gray(img: np.ndarray, o: SearchOptions) -> np.ndarray:
    """The channel the verified search correlates: luminance, or green (``o.channel``)."""
    if o.channel == "green" and img.ndim == 3:
        return img[..., 1].astype(np.float32)
    return luminance(img)


def band_limited(g: np.ndarray, sigma: float) -> np.ndarray:
    """``g`` smoothed with a Gaussian of σ ``sigma`` px (``g`` itself for 0).

    Why: the cameras differ most at the finest scale — the phone's sharpening halos,
    denoising and noise, JPEG — and a sub-block's correlation peak at that scale is pulled by
    them; both sides smoothed alike keep the structure that moves with the scene and move no
    peak, so a block disagrees only where content really moves differently."""
    return cv2.GaussianBlur(g, (0, 0), sigma) if sigma > 0 else g


_EQUALIZE_FLOOR = 4.0   # grey levels added to both local means: the ratio stays finite (and quiet) in black regions


@dataclass
class LocalMeans:
    """Both luminances' local means (grey levels, Gaussian of σ ``SearchOptions.equalize`` px,
    plus ``_EQUALIZE_FLOOR``), which :func:`phone_crop` divides the phone's local brightness
    by; kept at the resolution they were computed at (``scale``: low-res px per full-res px,
    x and y), read per window by bilinear interpolation."""
    dslr: np.ndarray
    phone: np.ndarray
    scale: tuple[float, float]
    ratios: dict = field(default_factory=dict)   # per window (x, y): its ratio (:func:`_ratio_around`)


def local_means(dslr: np.ndarray, phone: np.ndarray, sigma: float) -> LocalMeans | None:
    """:class:`LocalMeans` of two luminances (``None`` for ``sigma`` 0), computed at about σ/4 px
    resolution (a field this smooth loses nothing; a whole-photo field at full resolution
    cost more than the windows' reads of it)."""
    if sigma <= 0:
        return None
    h, w = phone.shape
    f = max(1, int(sigma // 4))
    small = (max(1, w // f), max(1, h // f))

    def mean(g):
        lo = cv2.resize(g, small, interpolation=cv2.INTER_AREA) if f > 1 else g
        return cv2.GaussianBlur(lo, (0, 0), sigma / f) + np.float32(_EQUALIZE_FLOOR)
    return LocalMeans(mean(dslr), mean(phone), (small[0] / w, small[1] / h))


def phone_crop(P: np.ndarray, w: WindowMatch, ox: int, oy: int, S: int, means: LocalMeans | None) -> np.ndarray:
    """The phone crop the verifier correlates, ``P[y+oy : y+oy+S, x+ox : x+ox+S]``, with
    ``means`` brought to the DSLR window's local brightness: times the DSLR's local mean at
    the window over the phone's at the crop (where the same content is).

    Why: a phone's local tone mapping (and vignetting, shadow lifting) multiplies its image by
    a gain that varies over tens of pixels. NCC ignores a gain that is constant over a
    sub-block, not one that changes across it: a gain ramp ``1 + k·x`` adds a slope ``∝ k`` to
    the sub-block's correlation surface and moves its peak by about ``k / 2c`` (``c`` the
    surface's curvature), a pixel and more in smooth texture. On bench/fidelity.py's
    ``processing`` case that, not chromatic aberration, made most of the ``inconsistent``
    windows (the simulator's tone mapping switched off, the verifier kept 92 % of the windows
    instead of 78 %; its chromatic aberration switched off, 77 %). Dividing the gain out
    removes the slope. The two means are read at corresponding places (the crop's offset), so
    a real displacement is not pulled towards the model: the ratio of the same content's
    brightness is the cameras' gain alone, and it is far too smooth to imitate a shifted
    texture (the DSLR's mean is read at the model's sub-pixel position: read at the crop's
    whole-pixel offset, a real 1.4 px shift came out 0.05 px worse at the 90th percentile).
    The DSLR side keeps its grey levels, so the texture thresholds (``block_std``) mean what
    they did."""
    crop = P[w.y + oy:w.y + oy + S, w.x + ox:w.x + ox + S]
    if means is None:
        return crop
    ratio = means.ratios.get((w.x, w.y))
    if ratio is None or not (0 <= ox - ratio[0] <= 2 * _RATIO_MARGIN and 0 <= oy - ratio[1] <= 2 * _RATIO_MARGIN):
        ratio = means.ratios[(w.x, w.y)] = _ratio_around(means, w, ox, oy, S)
    ox0, oy0, r = ratio
    return crop * r[oy - oy0:oy - oy0 + S, ox - ox0:ox - ox0 + S]


_RATIO_MARGIN = 2   # px around a window's first phone crop over which its ratio is computed (later crops move ≤ 2 px)


def _ratio_around(means: LocalMeans, w: WindowMatch, ox: int, oy: int, S: int) -> tuple[int, int, np.ndarray]:
    """The DSLR/phone local-mean ratio over the phone crop at offset ``(ox, oy)`` widened by
    ``_RATIO_MARGIN`` px, the DSLR's mean read at the model's sub-pixel position ``(w.dx, w.dy)``
    (the rotation, ≤ 1°, is negligible for a field this smooth). Computed once per window, at its first sub-pixel estimate: the model moves by
    tenths of a pixel after it, and a field this smooth changes by nothing over that.
    Returns the widened region's offset ``(ox0, oy0)`` and the ratio."""
    e = _RATIO_MARGIN
    n = S + 2 * e
    ox0, oy0 = ox - e, oy - e
    rx, ry = means.scale

    def read(m: np.ndarray, x0: float, y0: float) -> np.ndarray:
        """``m`` at the full-resolution points ``(x0 + j, y0 + i)``, ``n × n``."""
        A = np.array([[rx, 0, rx * (x0 + 0.5) - 0.5], [0, ry, ry * (y0 + 0.5) - 0.5]])
        return cv2.warpAffine(m, A, (n, n), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
    # phone pixel (x + ox0 + j, y + oy0 + i) shows the DSLR point (x + j + ox0 − dx, y + i + oy0 − dy)
    ratio = read(means.dslr, w.x + ox0 - w.dx, w.y + oy0 - w.dy) / read(means.phone, w.x + ox0, w.y + oy0)
    return ox0, oy0, ratio


def match_windows_verified(dslr: np.ndarray, phone: np.ndarray, o: SearchOptions) -> list[WindowMatch]:
    """Per window: the integer NCC peak over ``|dx|, |dy| ≤ max_shift`` (a peak on the range's
    boundary is ``at_search_limit``: the truth may lie beyond), an iterated parabolic
    sub-pixel shift with the DSLR side resampled, a rotation only where the sub-blocks show
    one, and (``verify``) the checks that the window moves as one."""
    sharp = _gray(dslr, o), _gray(phone, o)
    D, P = (band_limited(g, o.smooth) for g in sharp)
    means = local_means(*sharp, o.equalize)
    h_img, w_img = P.shape
    windows = [WindowMatch(x, y, model="shift") for x, y in grid_positions(w_img, h_img, o)]
    for w in windows:
        status = _integer_peak(D, P, w, o)
        if status:
            w.status = status
            continue
        verify_window(D, P, w, o, sharp, means)
    if o.verify:
        vouch_flat_sides(windows, o)
    return windows
