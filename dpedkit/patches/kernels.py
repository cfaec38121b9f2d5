"""The verified search's numerical kernels: the separable sub-pixel shift, the small and
the many-rectangle correlation maps, and the verifier's cells.

Each stands in for an OpenCV call (``cv2.warpAffine``, ``cv2.matchTemplate``) and gives its
values (``tests/patches/test_search_kernels.py``) at a fraction of the cost for the shapes
the search uses: one window of ``S`` px against shifts of a few px. Images are float32
luminance, ``(rows, columns)``; a score map's index ``(v, u)`` is the shift ``(u, v)`` px.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from dpedkit.imageops import refine_peak

def _cubic_taps(f: float) -> np.ndarray:
    """Weights of the four samples at offsets −1, 0, 1, 2 for a point ``f`` ∈ [0, 1) past the
    second: OpenCV's bicubic kernel (Keys, a = −0.75), so a shift and a warp agree."""
    a = -0.75
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1          # noqa: E731  |x| ≤ 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a     # noqa: E731  1 < |x| < 2
    return np.array([far(1 + f), near(f), near(1 - f), far(2 - f)], np.float32)


def sample(img: np.ndarray, A: np.ndarray, out: int, interpolation=cv2.INTER_CUBIC) -> np.ndarray:
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


def ncc_peak(region: np.ndarray, templ: np.ndarray) -> tuple[float, float, float, int, int, tuple[int, int]]:
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


@functools.lru_cache(maxsize=8)
def _gaussian_taps(sigma: float) -> np.ndarray:
    """The Gaussian kernel ``cv2.GaussianBlur(..., (0, 0), sigma)`` uses on a float image
    (``round(8σ + 1) | 1`` taps)."""
    return cv2.getGaussianKernel(int(round(sigma * 8 + 1)) | 1, sigma, cv2.CV_32F)


def _gradient_energy(b: np.ndarray, m: int) -> float:
    """Σ (b[i, j+1] − b[i, j−1])² + (b[i+1, j] − b[i−1, j])² over the inner part ``[m:−m, m:−m]``:
    ``cv2.Sobel(b, ksize=1)``'s energy there, without its passes over the whole image."""
    gx = b[m:-m, m + 1:b.shape[1] - m + 1] - b[m:-m, m - 1:-m - 1]
    gy = b[m + 1:b.shape[0] - m + 1, m:-m] - b[m - 1:-m - 1, m:-m]
    return float(np.vdot(gx, gx)) + float(np.vdot(gy, gy))


def sharpness(img: np.ndarray, fine: float = 0.7, coarse: float = 2.0) -> float:
    """Fine detail of a grey image relative to its coarse structure: the gradient energy of the
    image blurred with a Gaussian of σ ``fine`` px over that with σ ``coarse`` px (inner part,
    away from the blur's border). A number of the image alone, unchanged by its contrast and
    brightness (tone mapping, exposure); defocus lowers it (a sharp natural image ≈ 2–3, the
    same blurred with σ 1.5 px about half of that). ``nan`` for a flat image.

    The values of ``cv2.GaussianBlur`` then ``cv2.Sobel(ksize=1)`` and ``cv2.norm``
    (``tests/patches/test_search_kernels.py``) at under half the cost per window: the window
    copied once (a view into a whole photo is slow to filter), the blurs as separable filters
    with cached taps, the central differences and their energy as array slices on the inner
    part only. (Whole-photo blurs read through integral images cost more: the windows cover
    the photo, so the pixels filtered are the same, and the photo-size arrays miss the cache.)"""
    g = np.ascontiguousarray(img, dtype=np.float32)
    m = int(np.ceil(2 * coarse))
    energy = [_gradient_energy(cv2.sepFilter2D(g, -1, _gaussian_taps(s), _gaussian_taps(s)), m)
              for s in (fine, coarse)]
    return energy[0] / energy[1] if energy[1] > 0 else float("nan")
