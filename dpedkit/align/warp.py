"""The smooth residual warp on top of the homography: a cubic B-spline displacement field
in phone pixels, fitted robustly to measured local shifts, and the remap that applies it.

The aligner's phone→DSLR model (see :func:`dpedkit.align.geometry.aligned_to_dslr`) is

    s(q) = H⁻¹(q + f(q))

for a phone source pixel ``q`` (x right, y down, pixel centres at integers), where ``H`` maps
DSLR source px → phone source px and ``f`` is this field (phone px; zero for the
``homography`` model). Real lenses leave a residual radial (and decentring) distortion that
no homography can express; ``f`` absorbs it. It is fitted with Tukey's biweight (iteratively
reweighted) and a second-difference smoothness penalty, so that a minority of shifts from
another depth layer or a moving object is rejected instead of bending the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


def apply_h(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``H`` on ``(N, 2)`` points (px), float64; the package's one point transform (geometry
    re-exports it). ``cv2.perspectiveTransform``: a NumPy ``(N, 3) @ (3, 3)`` product goes
    through multi-threaded BLAS, 100× slower on a lattice of a million points when the
    machine is busy."""
    pts = np.ascontiguousarray(pts, dtype=np.float64).reshape(-1, 1, 2)
    if len(pts) == 0:
        return np.zeros((0, 2))
    return cv2.perspectiveTransform(pts, np.asarray(H, dtype=np.float64)).reshape(-1, 2)


def _basis(u: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform cubic B-spline: for coordinates ``u`` in cell units on ``[0, n]``, the first
    control index (of ``n + 3``) of each point and the 4 weights ``(N, 4)``. Points outside
    the domain extrapolate the end cells' cubics."""
    i = np.clip(np.floor(u), 0, n - 1).astype(int)
    t = u - i
    w = np.stack([(1 - t) ** 3, 3 * t ** 3 - 6 * t ** 2 + 4, -3 * t ** 3 + 3 * t ** 2 + 3 * t + 1, t ** 3], -1) / 6
    return i, w


@dataclass
class SplineField:
    """A displacement field ``f(x, y)`` (phone px) as a cubic B-spline over ``domain``
    ``(x0, y0, w, h)`` (phone source px) with ``cells = (nx, ny)`` and control values
    ``coef`` of shape ``(ny + 3, nx + 3, 2)``."""

    domain: tuple[float, float, float, float]
    cells: tuple[int, int]
    coef: np.ndarray

    @staticmethod
    def zero(domain, cells) -> "SplineField":
        nx, ny = cells
        return SplineField(tuple(float(v) for v in domain), (int(nx), int(ny)), np.zeros((ny + 3, nx + 3, 2)))

    def _design(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column indices ``(N, 16)`` into the flattened coefficients and weights ``(N, 16)``."""
        x0, y0, w, h = self.domain
        nx, ny = self.cells
        pts = np.asarray(pts, float).reshape(-1, 2)
        ix, wx = _basis((pts[:, 0] - x0) / w * nx, nx)
        iy, wy = _basis((pts[:, 1] - y0) / h * ny, ny)
        cols = (iy[:, None, None] + np.arange(4)[None, :, None]) * (nx + 3) + ix[:, None, None] + np.arange(4)[None, None, :]
        wts = wy[:, :, None] * wx[:, None, :]
        return cols.reshape(len(pts), 16), wts.reshape(len(pts), 16)

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        """``f`` at ``(N, 2)`` points, ``(N, 2)``."""
        cols, wts = self._design(pts)
        flat = self.coef.reshape(-1, 2)
        return np.einsum("nk,nkc->nc", wts, flat[cols])

    def grid(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """``f`` on the lattice ``xs × ys``, ``(len(ys), len(xs), 2)``: the tensor-product
        spline evaluated separably (two small matrix products instead of 16 terms a point)."""
        x0, y0, w, h = self.domain
        nx, ny = self.cells

        def matrix(u, n):
            i, wt = _basis(u, n)
            B = np.zeros((len(u), n + 3))
            for k in range(4):
                B[np.arange(len(u)), i + k] = wt[:, k]
            return B
        Bx = matrix((np.asarray(xs, float) - x0) / w * nx, nx)
        By = matrix((np.asarray(ys, float) - y0) / h * ny, ny)
        # cv2.gemm, not NumPy's BLAS: its threads spin on a busy machine (5× the CPU time here)
        return np.stack([cv2.gemm(cv2.gemm(By, np.ascontiguousarray(self.coef[..., c]), 1, None, 0), Bx, 1, None, 0,
                                  flags=cv2.GEMM_2_T) for c in (0, 1)], -1)

    def to_dict(self) -> dict:
        return {"domain": [round(v, 3) for v in self.domain], "cells": list(self.cells),
                "coef": np.round(self.coef, 4).tolist()}

    @staticmethod
    def from_dict(d: dict) -> "SplineField":
        return SplineField(tuple(float(v) for v in d["domain"]), tuple(int(v) for v in d["cells"]),
                           np.asarray(d["coef"], float))


def fit_field(q: np.ndarray, r: np.ndarray, domain, cells, smooth: float = 1.0, scale_floor: float = 0.15,
              iters: int = 7, weights: np.ndarray | None = None) -> tuple[SplineField, np.ndarray]:
    """Robust smooth fit ``f(q) ≈ r`` (points ``q`` and displacements ``r``, ``(N, 2)``, px).

    Tukey's biweight on the residual length with scale ``max(1.4826·MAD, scale_floor)``
    (px), starting from a stiff (almost affine) fit so that the first weights come from the
    dominant motion. ``smooth`` scales the second-difference penalty. Returns the field and
    the inlier mask (final weight > 0)."""
    q, r = np.asarray(q, float).reshape(-1, 2), np.asarray(r, float).reshape(-1, 2)
    field = SplineField.zero(domain, cells)
    nx, ny = field.cells
    K = (nx + 3) * (ny + 3)
    cols, wts = field._design(q)            # each point touches 16 control values
    pair_r = np.repeat(cols, 16, axis=1).ravel()
    pair_c = np.tile(cols, (1, 16)).ravel()
    pair_w = (wts[:, :, None] * wts[:, None, :]).reshape(len(q), -1)
    R = _second_difference_penalty(nx, ny) + 1e-6 * np.eye(K)  # the ridge pins unconstrained values
    base = len(q) / K                # penalty in units of the data's weight per coefficient
    w = np.ones(len(q)) if weights is None else np.asarray(weights, float).copy()
    prior = w.copy()
    inl = w > 0
    coef = np.zeros((K, 2))
    for it in range(iters):
        # graduated: stiff first (the dominant motion sets the first weights), then ever
        # more flexible, so that points far off a stiff fit (a distorted corner) come back
        lam = base * smooth * 10.0 ** max(0, 3 - it)
        # normal equations from the sparse rows (small dense solves in OpenCV: BLAS threads
        # spinning on a busy machine made NumPy's solve 100× slower here)
        AtA = np.bincount(pair_r * K + pair_c, (pair_w * w[:, None]).ravel(), K * K).reshape(K, K)
        Atr = np.stack([np.bincount(cols.ravel(), (wts * (w * r[:, c])[:, None]).ravel(), K) for c in (0, 1)], 1)
        ok, coef = cv2.solve(AtA + lam * R, Atr, flags=cv2.DECOMP_CHOLESKY)
        if not ok:
            _, coef = cv2.solve(AtA + lam * R, Atr, flags=cv2.DECOMP_SVD)
        fit = np.einsum("nk,nkc->nc", wts, coef[cols])
        res = np.linalg.norm(fit - r, axis=1)
        sel = w > 0
        mad = 1.4826 * np.median(res[sel]) if sel.any() else 0.0   # residual lengths ≥ 0: median as scale
        c = 4.685 * max(mad, scale_floor)
        w = prior * np.where(res < c, (1 - (res / c) ** 2) ** 2, 0.0)
        inl = w > 0
        if inl.sum() < 6:
            break
    field.coef = np.asarray(coef).reshape(ny + 3, nx + 3, 2)
    return field, inl


@lru_cache(maxsize=16)
def _second_difference_penalty(nx: int, ny: int) -> np.ndarray:
    """``DᵀD`` for the second differences along rows and columns of the ``(ny+3, nx+3)``
    control grid: zero on affine fields, so smoothing never pulls a tilt or a shift.
    Cached (read-only): every fit of a pair uses the same grid."""
    K = (nx + 3) * (ny + 3)
    idx = np.arange(K).reshape(ny + 3, nx + 3)
    trip = [np.stack([a.ravel(), b.ravel(), c.ravel()], 1) for a, b, c in
            ((idx[:, :-2], idx[:, 1:-1], idx[:, 2:]), (idx[:-2], idx[1:-1], idx[2:]))]
    trip = np.vstack(trip)
    D = np.zeros((len(trip), K))
    D[np.arange(len(trip))[:, None], trip] = (1.0, -2.0, 1.0)
    P = D.T @ D
    P.flags.writeable = False
    return P


def source_map(H: np.ndarray, field: SplineField | None, rect: tuple[int, int, int, int],
               step: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps (float32, ``h × w``) for the phone rectangle ``rect`` ``(x, y, w, h)``:
    pixel ``(j, i)`` samples the image that ``H`` maps to the phone at ``H⁻¹(q + f(q))`` with
    ``q = (x + j, y + i)``. The model is evaluated exactly on a lattice every ``step`` px and
    linearly interpolated between (both parts are smooth: the error is far below 0.01 px)."""
    x, y, w, h = rect
    nx, ny = -(-w // step), -(-h // step)
    # lattice nodes at (k + 0.5)·step − 0.5 for k = −1..n: cv2.resize's linear interpolation then
    # places every output pixel exactly between its two nodes (one padding node per side)
    kx = (np.arange(-1, nx + 1) + 0.5) * step - 0.5
    ky = (np.arange(-1, ny + 1) + 0.5) * step - 0.5
    gx, gy = np.meshgrid(kx + x, ky + y)
    pts = np.stack([gx, gy], -1)
    if field is not None:
        pts = pts + field.grid(kx + x, ky + y)
    src = apply_h(np.linalg.inv(H), pts.reshape(-1, 2)).astype(np.float32).reshape(len(ky), len(kx), 2)
    size = (len(kx) * step, len(ky) * step)
    # views, not copies: cv2.remap takes rows with a stride (a copy was a third of the warp)
    return tuple(cv2.resize(np.ascontiguousarray(src[..., c]), size, interpolation=cv2.INTER_LINEAR)
                 [step:step + h, step:step + w] for c in (0, 1))


def warp_to_phone(img: np.ndarray, H: np.ndarray, field: SplineField | None, rect, interpolation=cv2.INTER_LINEAR,
                  border=cv2.BORDER_REPLICATE) -> np.ndarray:
    """``img`` (whose pixels ``H`` maps to phone px) resampled onto the phone rectangle
    ``rect`` under the model ``H⁻¹(q + f(q))``; one ``cv2.remap``."""
    if field is None:
        x, y, w, h = rect
        T = np.array([[1.0, 0, -x], [0, 1, -y], [0, 0, 1]])
        return cv2.warpPerspective(img, T @ H, (w, h), flags=interpolation, borderMode=border)
    mx, my = source_map(H, field, rect)
    return cv2.remap(img, mx, my, interpolation, borderMode=border)
