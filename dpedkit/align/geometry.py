"""Homography geometry: conventions, plausibility checks, errors and the common crop.

Coordinates are ``(x, y)`` in pixels with pixel centres at integer positions (OpenCV's
convention). A homography ``H`` (3×3) maps a source point ``(x, y, 1)`` to ``H @ (x, y, 1)``
followed by division by the third component.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dpedkit.align.warp import SplineField, apply_h  # noqa: F401 (apply_h: the one point transform, re-exported)


def scale_matrix(sx: float, sy: float) -> np.ndarray:
    """Map full-image coordinates to those of a copy resized by ``(sx, sy)``.

    With centres at integers, resizing maps ``x`` to ``(x + 0.5)·sx − 0.5`` (what
    ``cv2.resize`` does), not ``x·sx``.
    """
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def translation(tx: float, ty: float) -> np.ndarray:
    """The homography that moves points by ``(tx, ty)`` px."""
    return np.array([[1.0, 0, tx], [0, 1.0, ty], [0, 0, 1.0]])


def corners(width: int, height: int) -> np.ndarray:
    """The four extreme pixel centres of an image, clockwise from the top-left."""
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float)


def jacobian_det(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """det of the local Jacobian of ``H`` at each point: the local area scale factor."""
    H = np.asarray(H, dtype=np.float64)
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    w = pts @ H[2, :2] + H[2, 2]
    # For a homography, det J(x) = det(H) / w(x)^3.
    return np.linalg.det(H) / w ** 3


def jacobian(H: np.ndarray, x: float, y: float) -> np.ndarray:
    H = np.asarray(H, dtype=np.float64)
    u, v, w = H @ np.array([x, y, 1.0])
    return (H[:2, :2] * w - np.outer([u, v], H[2, :2])) / w ** 2


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Plausibility:
    """Limits for a DSLR→phone homography of a tripod shot. Each refusal names the option
    (field name as a command-line flag, ``--max-stretch`` for ``max_stretch``) that would
    let the pair through."""

    min_scale: float = field(default=0.05, metadata={
        "help": "Smallest plausible scale of the homography at the DSLR centre (phone px per DSLR px, linear).",
        "min": 0, "min_open": True})
    max_scale: float = field(default=4.0, metadata={
        "help": "Largest plausible scale of the homography at the DSLR centre (phone px per DSLR px, linear).",
        "min": 0, "min_open": True})
    max_stretch: float = field(default=1.5, metadata={
        "help": "Largest ratio of the homography's two principal scales at the DSLR centre "
                "(anisotropy; a strong viewpoint change stretches one direction).", "min": 1})
    max_area_ratio: float = field(default=3.0, metadata={
        "help": "Largest ratio of the local area scale between two corners of the DSLR frame (perspective).",
        "min": 1})
    allow_quarter_turn: bool = field(default=False, metadata={
        "help": "Accept a pair whose photos are rotated by about ±90° against each other (60°–120°); refused by "
                "default: it is almost always an orientation mistake (a photo read sideways)."})


QUARTER_TURN = (60.0, 120.0)    # |rotation| in degrees refused unless allow_quarter_turn


def rotation_deg(H: np.ndarray, x: float, y: float) -> float:
    """The rotation of ``H`` at ``(x, y)`` in degrees, (−180, 180], positive counter-clockwise
    on screen (x right, y down: a positive angle turns +x towards −y): the angle of the
    rotation nearest the local Jacobian (exact for a similarity)."""
    J = jacobian(H, x, y)
    return float(-np.degrees(np.arctan2(J[1, 0] - J[0, 1], J[0, 0] + J[1, 1])))


def implausibility(H: np.ndarray, dslr_size: tuple[int, int], limits: Plausibility = Plausibility()) -> str | None:
    """Why ``H`` (DSLR→phone) cannot be the alignment of a tripod pair, or ``None``.

    ``dslr_size`` is ``(width, height)`` of the DSLR image in the coordinates ``H`` takes.
    A refusal by one of ``limits`` names the option and its value.
    """
    H = np.asarray(H, dtype=np.float64)
    if not np.all(np.isfinite(H)) or abs(np.linalg.det(H)) < 1e-12:
        return "degenerate homography (singular or not finite)"
    w, h = dslr_size
    pts = np.vstack([corners(w, h), [[(w - 1) / 2, (h - 1) / 2]]])
    third = pts @ H[2, :2] + H[2, 2]
    if not (np.all(third > 0) or np.all(third < 0)):
        return "degenerate homography: the DSLR frame would be folded through infinity"
    dets = jacobian_det(H, pts)
    if np.any(dets <= 0):
        return "implausible homography: it mirrors the image (flipped)"
    angle = rotation_deg(H, *pts[-1])
    if not limits.allow_quarter_turn and QUARTER_TURN[0] <= abs(angle) <= QUARTER_TURN[1]:
        return (f"implausible homography: it turns the DSLR photo by {angle:+.1f}° against the phone photo. A quarter "
                "turn between two photos of one scene is almost always an orientation mistake — one photo read "
                "sideways (an orientation tag lost, ignored or applied twice); check that both look upright in a "
                f"viewer. If one camera really was turned, pass {_flag('allow_quarter_turn')}")
    sv = np.linalg.svd(jacobian(H, *pts[-1]), compute_uv=False)
    scale = float(np.sqrt(sv[0] * sv[1]))
    if scale < limits.min_scale:
        return (f"implausible homography: scale {scale:.3g} phone px per DSLR px is below "
                f"{_flag('min_scale')} {limits.min_scale:g}")
    if scale > limits.max_scale:
        return (f"implausible homography: scale {scale:.3g} phone px per DSLR px exceeds "
                f"{_flag('max_scale')} {limits.max_scale:g}")
    if dets.max() / dets.min() > limits.max_area_ratio:
        return (f"implausible homography: extreme perspective (local scale varies {dets.max() / dets.min():.2f}× "
                f"across the frame, exceeds {_flag('max_area_ratio')} {limits.max_area_ratio:g})")
    if sv[0] / sv[1] > limits.max_stretch:
        return (f"implausible homography: stretches one direction {sv[0] / sv[1]:.2f}× more than the other "
                f"(stretch {sv[0] / sv[1]:.2f}× exceeds {_flag('max_stretch')} {limits.max_stretch:g})")
    return None


def local_scale(H: np.ndarray, dslr_size: tuple[int, int]) -> float:
    """Linear scale of ``H`` (phone px per DSLR px) at the DSLR image centre."""
    w, h = dslr_size
    return float(np.sqrt(abs(jacobian_det(H, [[(w - 1) / 2, (h - 1) / 2]])[0])))


def corner_error(H_est: np.ndarray, H_true: np.ndarray, phone_size: tuple[int, int]) -> float:
    """Mean distance in phone pixels between where the two homographies put the points
    that ``H_true`` maps to the phone frame's corners."""
    c = corners(*phone_size)
    src = apply_h(np.linalg.inv(H_true), c)
    return float(np.linalg.norm(apply_h(H_est, src) - c, axis=1).mean())


def row_extents(quad: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel row ``y = 0..height-1``, the x-interval inside a convex polygon.

    Returns ``(left, right)`` float arrays; rows the polygon misses get ``left > right``.
    """
    ys = np.arange(height, dtype=np.float64)
    left = np.full(height, np.inf)
    right = np.full(height, -np.inf)
    n = len(quad)
    for i in range(n):
        (x0, y0), (x1, y1) = quad[i], quad[(i + 1) % n]
        if y0 == y1:
            inside = ys == y0
            left[inside] = np.minimum(left[inside], min(x0, x1))
            right[inside] = np.maximum(right[inside], max(x0, x1))
            continue
        lo, hi = min(y0, y1), max(y0, y1)
        inside = (ys >= lo) & (ys <= hi)
        xs = x0 + (ys[inside] - y0) * (x1 - x0) / (y1 - y0)
        left[inside] = np.minimum(left[inside], xs)
        right[inside] = np.maximum(right[inside], xs)
    return left, right


def largest_rectangle(quad: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The largest axis-aligned rectangle ``(x, y, w, h)`` of whole pixels that lies inside
    the convex polygon ``quad`` and the image ``width × height``; ``None`` if empty.

    Exact for convex regions: each row's valid pixels form one interval, so a rectangle
    over rows ``t..b`` spans ``[max left, min right]`` of those rows.
    """
    left, right = row_extents(np.asarray(quad, float), height)
    lo = np.maximum(np.ceil(left - 1e-9), 0)
    hi = np.minimum(np.floor(right + 1e-9), width - 1)
    return largest_rectangle_rows(lo, hi)


def largest_rectangle_rows(lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest rectangle ``(x, y, w, h)`` in a region given per row ``y`` as the
    interval of columns ``lo[y]..hi[y]`` (inclusive; ``hi < lo``: empty row); exact when
    the region is convex (as :func:`largest_rectangle` needs)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    valid = np.flatnonzero(hi >= lo)
    if valid.size == 0:
        return None
    t0, b0 = valid[0], valid[-1]
    lo, hi = lo[t0:b0 + 1], hi[t0:b0 + 1]
    best = (0, None)
    for t in range(len(lo)):
        widths = np.minimum.accumulate(hi[t:]) - np.maximum.accumulate(lo[t:]) + 1
        if widths[0] * len(widths) <= best[0]:
            continue  # even the full height at the first row's width cannot beat the best
        areas = widths * np.arange(1, len(widths) + 1)
        k = int(np.argmax(areas))
        if areas[k] > best[0]:
            x = int(np.maximum.accumulate(lo[t:])[k])
            best = (areas[k], (x, int(t0 + t), int(widths[k]), k + 1))
    return best[1]


def aligned_to_dslr(record: dict, xy: np.ndarray) -> np.ndarray:
    """Map pixel coordinates of the aligned pair to DSLR source pixel coordinates.

    ``record`` is an ``ok`` manifest record of ``align``; ``xy`` is ``(N, 2)`` in pixels of
    the aligned images (x right, y down, pixel centres at integers, origin at the crop's
    top-left). The result is where the aligned DSLR image sampled the DSLR source photo
    (full resolution, after EXIF orientation): ``H⁻¹(q + f(q))`` with ``q`` the phone source
    pixel and ``f`` the record's residual ``warp`` (absent or ``homography``: ``f = 0``; see
    :mod:`dpedkit.align.warp`). This is the one place that states the aligner's phone→DSLR
    model, so scorers and later stages never re-derive it.
    """
    x, y = record["crop"][:2]
    phone_xy = np.asarray(xy, float).reshape(-1, 2) + (x, y)
    warp = record.get("warp") or {"type": "homography"}
    if warp["type"] == "bspline":
        phone_xy = phone_xy + SplineField.from_dict(warp["params"])(phone_xy)
    elif warp["type"] != "homography":
        raise ValueError(f"unknown warp type {warp['type']!r} in the manifest record")
    return apply_h(np.linalg.inv(np.asarray(record["homography"], float)), phone_xy)
