"""Align one DSLR photo to one phone photo (pure function on arrays, no file I/O).

1. SIFT on reduced copies → RootSIFT matches → MAGSAC homography (coarse, DSLR→phone).
2. Downscale the DSLR with area averaging to about the phone's scale (no aliasing), warp
   it into the phone frame, and measure residual shifts on a grid of windows by
   normalised cross-correlation at full phone resolution (sub-pixel peaks); refit the
   homography on those correspondences. This makes the accuracy a matter of full-resolution
   pixels, not of the reduced copies'.
   With ``warp="bspline"`` (default) a smooth residual field on top of the homography is
   fitted robustly to the same shifts (real lenses keep a radial distortion no homography
   expresses; other depth layers and moving objects are rejected as outliers), see
   :mod:`dpedkit.align.warp`. ``warp="homography"`` is the DPED-style model alone.
3. Crop both to the largest axis-aligned rectangle covered by both and warp the DSLR there
   (one ``cv2.remap`` from the area-downscaled copy).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Literal

import cv2
import numpy as np

from dpedkit.align.features import match_descriptors, sift_features, to_gray
from dpedkit.align.geometry import (Plausibility, corners, implausibility, largest_rectangle, largest_rectangle_rows,
                                    local_scale, scale_matrix)
from dpedkit.align.warp import SplineField, apply_h, fit_field, warp_to_phone
from dpedkit.imageops import refine_peak
from dpedkit.errors import DpedkitError


class AlignError(DpedkitError, ValueError):
    """The pair cannot be aligned; the message is the reason shown to the user."""

    def __init__(self, reason: str, **stats):
        super().__init__(reason)
        self.stats = stats


@dataclass(frozen=True)
class AlignOptions:
    feature_side: int = field(default=1200, metadata={"help": "Longer side (px) of the reduced copies SIFT runs on.", "min": 64})
    n_features: int = field(default=4000, metadata={"help": "SIFT keypoints kept per image.", "min": 1})
    ratio: float = field(default=0.8, metadata={
        "help": "Lowe's ratio test: keep a match when its distance is below this fraction of the second best's.",
        "min": 0, "min_open": True, "max": 1})
    mutual: bool = field(default=True, metadata={"help": "Keep only mutual nearest-neighbour matches."})
    ransac_px: float = field(default=2.0, metadata={"help": "MAGSAC inlier threshold, in reduced-copy pixels.",
                                                       "min": 0, "min_open": True})
    min_inliers: int = field(default=25, metadata={"help": "A pair needs at least this many homography inliers.",
                                                     "min": 4})
    refine_iters: int = field(default=2, metadata={
        "help": "Grid-correlation refinement passes of the homography (0: off).", "min": 0})
    refine_grid: int = field(default=16, metadata={"help": "Refinement windows along the longer side.", "min": 1})
    refine_min_ncc: float = field(default=0.6, metadata={
        "help": "A refinement window's correlation peak must reach this.", "min": -1, "max": 1})
    refine_px: float = field(default=1.0, metadata={"help": "Outlier threshold of the refinement refit (phone px).",
                                                    "min": 0, "min_open": True})
    min_overlap: float = field(default=0.2, metadata={
        "help": "Smallest common crop, as a fraction of the phone photo's area.", "min": 0, "max": 1})
    warp: Literal["bspline", "homography"] = field(default="bspline", metadata={"choices": ["bspline", "homography"],
        "help": "Global model: 'bspline' = homography + a smooth residual field fitted robustly to the "
                "measured shifts (lens distortion); 'homography' = the DPED-style homography alone."})
    warp_cells: int = field(default=8, metadata={
        "help": "Cells of the residual B-spline field along the phone photo's longer side.", "min": 1})
    warp_smooth: float = field(default=0.003, metadata={
        "help": "Smoothness penalty of the residual field (relative; larger = stiffer).", "min": 0})
    warp_grid: int = field(default=28, metadata={
        "help": "Windows along the longer side measured to fit the residual field (with warp=bspline).",
        "min": 1})
    plausibility: Plausibility = field(default_factory=Plausibility)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AlignResult:
    homography: np.ndarray         # DSLR source px → phone source px
    crop: tuple[int, int, int, int]  # x, y, w, h in phone source px
    phone: np.ndarray              # aligned phone image (crop)
    dslr: np.ndarray               # DSLR warped onto the crop
    matches: int
    inliers: int
    reprojection_rmse: float       # phone px, over the correspondences of the final fit
    refine_points: int
    field: SplineField | None = None   # residual warp f (phone px): DSLR = H⁻¹(q + f(q)); None: homography only
    residuals: np.ndarray | None = None  # phone px, final-fit residual of each inlier correspondence
    outliers: int = 0              # measured shifts the final fit rejected (other depths, moving things)

    def record(self) -> dict:
        """The manifest-record fields of this alignment (JSON-ready): ``homography``,
        ``crop``, ``matches``, ``inliers``, ``reprojection_rmse``, ``refine_points``, and
        ``warp`` ``{type, params}`` (the model :func:`dpedkit.align.geometry.aligned_to_dslr`
        applies) and ``residual`` ``{median, p95, n, outliers}`` (phone px, over the
        correspondences of the final fit)."""
        r = self.residuals if self.residuals is not None and len(self.residuals) else None
        warp = ({"type": "homography", "params": None} if self.field is None
                else {"type": "bspline", "params": self.field.to_dict()})
        return {"homography": np.asarray(self.homography).round(10).tolist(), "crop": list(self.crop),
                "matches": self.matches, "inliers": self.inliers,
                "reprojection_rmse": round(float(self.reprojection_rmse), 4), "refine_points": self.refine_points,
                "warp": warp,
                "residual": {"median": None if r is None else round(float(np.median(r)), 4),
                             "p95": None if r is None else round(float(np.percentile(r, 95)), 4),
                             "n": 0 if r is None else int(len(r)), "outliers": int(self.outliers)}}


def _both_features(pg: np.ndarray, dslr: np.ndarray, o: AlignOptions):
    """SIFT of the phone's gray image and of the DSLR photo. In two threads when OpenCV may
    use more than one: SIFT's Gaussian pyramid is sequential, so the two overlap (−30 % wall
    time on two cores, the same keypoints)."""
    def dslr_features():
        return sift_features(to_gray(dslr), o.feature_side, o.n_features)
    if cv2.getNumThreads() < 2:
        return sift_features(pg, o.feature_side, o.n_features), dslr_features()
    with ThreadPoolExecutor(1) as pool:
        d = pool.submit(dslr_features)
        return sift_features(pg, o.feature_side, o.n_features), d.result()


def _coarse_homography(pg: np.ndarray, dslr: np.ndarray, o: AlignOptions):
    """SIFT + RootSIFT matches + MAGSAC: the coarse DSLR→phone homography, the match and
    inlier counts, the inliers' RMSE (phone px) and the matched points ``(src, dst)``."""
    (pp, pd), (dp, dd) = _both_features(pg, dslr, o)
    if min(len(pp), len(dp)) < o.min_inliers:
        raise AlignError(f"too few SIFT keypoints (phone {len(pp)}, DSLR {len(dp)}): blank, "
                         "blurred or textureless photo?", matches=0, inliers=0)
    m = match_descriptors(pd, dd, o.ratio, o.mutual)
    if len(m) < o.min_inliers:
        raise AlignError(f"too few keypoint matches ({len(m)}): the photos may show different scenes",
                         matches=len(m), inliers=0)
    src, dst = dp[m[:, 1]], pp[m[:, 0]]
    # MAGSAC runs in the phone's reduced-copy scale so its threshold means the same for any resolution.
    s = min(1.0, o.feature_side / max(pg.shape))
    H, mask = cv2.findHomography(src * s, dst * s, cv2.USAC_MAGSAC, o.ransac_px, maxIters=10000, confidence=0.9999)
    if H is None:
        raise AlignError("no homography fits the keypoint matches", matches=len(m), inliers=0)
    inl = mask.ravel().astype(bool)
    H = np.diag([1 / s, 1 / s, 1]) @ H @ np.diag([s, s, 1])
    if inl.sum() < o.min_inliers:
        raise AlignError(f"too few inliers ({int(inl.sum())} of {len(m)} matches): the photos may show "
                         "different scenes, or too little of one scene", matches=len(m), inliers=int(inl.sum()))
    err = np.linalg.norm(apply_h(H, src[inl]) - dst[inl], axis=1)
    return H, len(m), int(inl.sum()), float(np.sqrt(np.mean(err ** 2))), (src, dst)


def grid_shifts(phone_gray: np.ndarray, warped_gray: np.ndarray, rect: tuple[int, int, int, int],
                n_long: int, radius: int, min_ncc: float) -> tuple[np.ndarray, np.ndarray]:
    """Residual shifts between two roughly aligned images on a grid of windows.

    For each window centred at ``q`` (inside ``rect``), finds ``t`` with
    ``phone(q) ≈ warped(q + t)`` by zero-mean normalised cross-correlation over
    ``|t| ≤ radius`` and a parabolic sub-pixel peak. Windows without texture or without a
    clear peak are dropped. Returns ``(q, t)`` as ``(N, 2)`` arrays in pixels.
    """
    x0, y0, w, h = rect
    step = max(w, h) / n_long
    half = int(max(8, min(48, step * 0.45)))
    reach = half + radius   # window centres from the rectangle's edges: the grid spans it all
    cxs = np.linspace(x0 + reach, x0 + w - reach, max(1, round(w / step))).astype(int)
    cys = np.linspace(y0 + reach, y0 + h - reach, max(1, round(h / step))).astype(int)
    qs, ts = [], []
    for cy in cys:
        for cx in cxs:
            ty, tx = cy - half, cx - half
            sy, sx = ty - radius, tx - radius
            if sy < y0 or sx < x0 or ty + 2 * half + radius > y0 + h or tx + 2 * half + radius > x0 + w:
                continue
            tmpl = phone_gray[ty:ty + 2 * half, tx:tx + 2 * half]
            if cv2.meanStdDev(tmpl)[1][0, 0] < 3.0:
                continue
            region = warped_gray[sy:sy + 2 * half + 2 * radius, sx:sx + 2 * half + 2 * radius]
            c = cv2.matchTemplate(region, tmpl, cv2.TM_CCOEFF_NORMED)
            _, peak, _, (px, py) = cv2.minMaxLoc(c)
            if peak < min_ncc or not (0 < px < c.shape[1] - 1 and 0 < py < c.shape[0] - 1):
                continue
            fx, fy, _ = refine_peak(c, px, py)
            qs.append((cx - 0.5, cy - 0.5))  # centre of an even-sized window
            ts.append((fx - radius, fy - radius))
    return np.array(qs, float).reshape(-1, 2), np.array(ts, float).reshape(-1, 2)


def downscale_for_warp(dslr: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area-average the DSLR image to about the phone's scale, so the warp that follows
    samples without aliasing. Returns the copy and ``M`` (full DSLR px → copy px)."""
    h, w = dslr.shape[:2]
    s = local_scale(H, (w, h))
    if s >= 0.95:
        return dslr, np.eye(3)
    s = min(1.0, s * 1.05)  # a little above the phone's scale: the warp then only shrinks slightly
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(dslr, size, interpolation=cv2.INTER_AREA), scale_matrix(size[0] / w, size[1] / h)


def common_crop(H_small: np.ndarray, small_size: tuple[int, int], phone_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Largest rectangle of phone pixels whose warped-DSLR value interpolates only real
    pixels (``H_small`` maps the downscaled DSLR copy to the phone)."""
    w, h = small_size
    inset = corners(w, h) + np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * 1.0
    return largest_rectangle(apply_h(H_small, inset), *phone_size)


def _field_cells(o: AlignOptions, phone_size: tuple[int, int]) -> tuple[int, int]:
    pw, ph = phone_size
    n = max(1, o.warp_cells)
    return (n, max(1, round(n * ph / pw))) if pw >= ph else (max(1, round(n * pw / ph)), n)


def valid_crop(Hs: np.ndarray, fld: SplineField | None, small_size: tuple[int, int],
               phone_size: tuple[int, int], step: int = 4) -> tuple[int, int, int, int] | None:
    """Largest rectangle of phone pixels whose model source point ``Hs⁻¹(q + f(q))`` lies in
    the downscaled DSLR copy (1 px inside: bicubic interpolation reads only real pixels).

    Without a field this is the exact polygon computation. With one, the model is evaluated
    on a lattice every ``step`` px and the rectangle has lattice nodes at its corners: the
    warp interpolates the map linearly between nodes, so a cell whose four nodes are valid
    samples only valid points (the valid set, a box, is convex)."""
    if fld is None:
        return common_crop(Hs, small_size, phone_size)
    pw, ph = phone_size
    w, h = small_size
    # the last column and row are nodes too: a frame the DSLR covers keeps every sensor pixel
    xs, ys = np.unique(np.r_[np.arange(0, pw, step), pw - 1]), np.unique(np.r_[np.arange(0, ph, step), ph - 1])
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx, gy], -1) + fld.grid(xs, ys)
    src = apply_h(np.linalg.inv(Hs), pts.reshape(-1, 2)).reshape(len(ys), len(xs), 2)
    ok = (src[..., 0] >= 1) & (src[..., 0] <= w - 2) & (src[..., 1] >= 1) & (src[..., 1] <= h - 2)
    any_ok = ok.any(axis=1)
    lo = np.where(any_ok, ok.argmax(axis=1), 1)
    hi = np.where(any_ok, len(xs) - 1 - ok[:, ::-1].argmax(axis=1), 0)
    contiguous = ok.sum(axis=1) == hi - lo + 1      # a row with a hole is not used
    hi = np.where(contiguous, hi, lo - 1)
    r = largest_rectangle_rows(lo, hi)
    if r is None:
        return None
    j, i, nj, ni = r
    return int(xs[j]), int(ys[i]), int(xs[j + nj - 1] - xs[j] + 1), int(ys[i + ni - 1] - ys[i] + 1)


@dataclass
class _Fit:
    """The model so far: ``H`` (DSLR px → phone px), the residual field (or ``None``) and the
    figures of the fit that produced them."""
    H: np.ndarray
    field: SplineField | None
    rmse: float
    n_refine: int = 0
    residuals: np.ndarray | None = None
    outliers: int = 0


def _keypoint_field(H: np.ndarray, src: np.ndarray, dst: np.ndarray, domain, cells, o: AlignOptions,
                    coarse_scale: float) -> SplineField | None:
    """A first residual field from all keypoint matches: lens distortion leaves the frame's
    corners too far off for the grid search's radius; mismatches are rejected as outliers."""
    r = dst - apply_h(H, src)
    near = np.linalg.norm(r, axis=1) < 12 * coarse_scale + 20
    if near.sum() < 12:
        return None
    return fit_field(dst[near], -r[near], domain, cells, smooth=4 * o.warp_smooth, scale_floor=coarse_scale)[0]


def _refit(q: np.ndarray, t: np.ndarray, fit: _Fit, o: AlignOptions, domain, cells) -> _Fit | None:
    """Refit the homography (and the field) on the measured shifts ``phone(q) ≈ warped(q + t)``;
    ``None`` when too few of them agree (the previous model then stays)."""
    if len(q) < 12:
        return None
    # the point of the homography's frame (phone px before the field) that matches q
    target = q + t + (fit.field(q + t) if fit.field is not None else 0)
    src = apply_h(np.linalg.inv(fit.H), target)  # DSLR full-res points that match phone points q
    H1, mask = cv2.findHomography(src, q, cv2.RANSAC, o.refine_px, maxIters=5000, confidence=0.9999)
    if H1 is None or mask.sum() < 12:
        return None
    inl = mask.ravel().astype(bool)
    H1, _ = cv2.findHomography(src[inl], q[inl], 0)  # least squares on the inliers
    if H1 is None:
        return None
    H = H1 / H1[2, 2]
    fld = None
    if o.warp == "bspline":
        disp = apply_h(H, src) - q             # f(q) that makes H⁻¹(q + f(q)) = src
        fld, inl_f = fit_field(q, disp, domain, cells, smooth=o.warp_smooth)
        if field_predicts(q, disp, domain, cells, o.warp_smooth):
            inl = inl_f
            err = np.linalg.norm(fld(q[inl]) - disp[inl], axis=1)
        else:
            fld = None
    if fld is None:
        err = np.linalg.norm(apply_h(H, src[inl]) - q[inl], axis=1)
    return _Fit(H, fld, float(np.sqrt(np.mean(err ** 2))), int(inl.sum()), err, int(len(q) - inl.sum()))


FIELD_GAIN = 0.85       # the field must cut the held-out error to this share of the homography's
FIELD_CLIP_PX = 2.0     # held-out errors are clipped here: another depth or a moving thing weighs little


def field_predicts(q: np.ndarray, disp: np.ndarray, domain, cells, smooth: float) -> bool:
    """Whether the residual field is real: two-fold cross-validation on the measured shifts.

    The field is fitted on every other correspondence and predicts the others (and the other
    way round); it is kept only when its held-out error (phone px, clipped at
    :data:`FIELD_CLIP_PX`) is below :data:`FIELD_GAIN` of the homography's alone. On a
    planar scene through a distortion-free lens the homography is the whole truth, and a
    field fitted to measurement noise only adds error where the shifts are sparse (it
    extrapolates into the frame's corners); a real lens distortion predicts itself."""
    if len(q) < 24:
        return False
    half = np.arange(len(q)) % 2 == 0
    held_field, held_h = [], []
    for train in (half, ~half):
        fld, _ = fit_field(q[train], disp[train], domain, cells, smooth=smooth)
        held_field.append(np.linalg.norm(fld(q[~train]) - disp[~train], axis=1))
        held_h.append(np.linalg.norm(disp[~train], axis=1))
    e_field = np.minimum(np.concatenate(held_field), FIELD_CLIP_PX).mean()
    e_h = np.minimum(np.concatenate(held_h), FIELD_CLIP_PX).mean()
    return bool(e_field < FIELD_GAIN * e_h)


def _refine(pg: np.ndarray, small_gray: np.ndarray, M: np.ndarray, fit: _Fit, matches, o: AlignOptions) -> _Fit:
    """Grid-correlation passes at full phone resolution: warp the downscaled DSLR with the
    model so far, measure the residual shifts, refit (``o.refine_iters`` times)."""
    ph, pw = pg.shape
    coarse_scale = max(1.0, max(pg.shape) / o.feature_side)
    radius = int(np.ceil(4 * coarse_scale + 2))
    domain, cells = (0.0, 0.0, float(pw), float(ph)), _field_cells(o, (pw, ph))
    if o.warp == "bspline":
        fit.field = _keypoint_field(fit.H, *matches, domain, cells, o, coarse_scale)
    grid = o.warp_grid if o.warp == "bspline" else o.refine_grid
    # the windows stay inside the coarse model's common crop: the refits move it by a pixel or two
    rect = common_crop(fit.H @ np.linalg.inv(M), small_gray.shape[::-1], (pw, ph))
    if rect is None:
        return fit
    for _ in range(o.refine_iters):
        warped = warp_to_phone(small_gray, fit.H @ np.linalg.inv(M), fit.field, (0, 0, pw, ph))
        q, t = grid_shifts(pg, warped, rect, grid, radius, o.refine_min_ncc)
        new = _refit(q, t, fit, o, domain, cells)
        if new is None:
            break
        fit = new
        radius = 3  # later passes start from a sub-pixel estimate
    return fit


def _check_plausible(H: np.ndarray, dslr_size: tuple[int, int], o: AlignOptions, stats: dict) -> None:
    reason = implausibility(H, dslr_size, o.plausibility)
    if reason:
        raise AlignError(reason, **stats)


def align_images(phone: np.ndarray, dslr: np.ndarray, opts: AlignOptions = AlignOptions()) -> AlignResult:
    """Align an RGB DSLR photo to an RGB phone photo; raises :class:`AlignError`.

    The returned homography maps DSLR source pixels to phone source pixels (docs/contracts.md §2);
    with ``opts.warp == "bspline"`` the result's ``field`` ``f`` completes the model: the
    phone pixel ``q`` sees the DSLR point ``H⁻¹(q + f(q))``.
    """
    if opts.warp not in ("bspline", "homography"):
        raise AlignError(f"unknown warp model {opts.warp!r} (bspline or homography)")
    pg = to_gray(phone)
    ph, pw = pg.shape
    dslr_size = (dslr.shape[1], dslr.shape[0])
    H, n_matches, n_inliers, rmse, matches = _coarse_homography(pg, dslr, opts)
    stats = dict(matches=n_matches, inliers=n_inliers)
    _check_plausible(H, dslr_size, opts, stats)
    small, M = downscale_for_warp(dslr, H)
    fit = _refine(pg, to_gray(small), M, _Fit(H, None, rmse), matches, opts)
    _check_plausible(fit.H, dslr_size, opts, stats)
    Hs = fit.H @ np.linalg.inv(M)
    rect = valid_crop(Hs, fit.field, small.shape[1::-1], (pw, ph))
    overlap = 0.0 if rect is None else rect[2] * rect[3] / (pw * ph)
    if rect is None or overlap < opts.min_overlap:
        raise AlignError(f"too little overlap: the common part is {overlap:.0%} of the phone photo "
                         f"(minimum {opts.min_overlap:.0%})", **stats)
    x, y, w, h = rect
    dslr_crop = warp_to_phone(small, Hs, fit.field, rect, interpolation=cv2.INTER_CUBIC)
    return AlignResult(homography=fit.H / fit.H[2, 2], crop=rect, phone=phone[y:y + h, x:x + w].copy(),
                       dslr=dslr_crop, matches=n_matches, inliers=n_inliers, reprojection_rmse=fit.rmse,
                       refine_points=fit.n_refine, field=fit.field, residuals=fit.residuals, outliers=fit.outliers)
