"""Align a DSLR photo to a phone's RAW mosaic (pure function on arrays, no file I/O).

The phone side is matched through :func:`dpedkit.raw.quick_rgb` — a bilinear demosaic at
the sensor's full resolution, so the homography is in **sensor pixels** (x right, y down,
pixel centres at integers, the mosaic's own orientation). The DSLR photo is warped into that
frame at the sensor's resolution by :func:`dpedkit.align.core.align_images`, and the common
crop is shrunk to even ``x, y, w, h`` so that the cropped mosaic keeps the colour-filter
phase (its pattern is the uncropped one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpedkit.align.core import AlignError, AlignOptions, AlignResult, align_images
from dpedkit.raw import Mosaic, even_rect, quick_rgb


@dataclass
class MosaicAlignResult:
    homography: np.ndarray            # DSLR source px → phone sensor px
    crop: tuple[int, int, int, int]   # x, y, w, h in sensor px, all even
    mosaic: Mosaic                    # the cropped mosaic (same pattern and levels)
    dslr: np.ndarray                  # DSLR warped onto the crop at sensor resolution (RGB uint8)
    preview: np.ndarray               # the quick rendering of the crop (RGB uint8)
    matches: int
    inliers: int
    reprojection_rmse: float          # sensor px
    refine_points: int
    align: AlignResult | None = None  # the RGB alignment of the quick rendering: warp field, residuals

    def record(self) -> dict:
        """The manifest-record fields: those of an RGB alignment (``homography``, ``warp``,
        ``residual``, … :meth:`AlignResult.record`) with the even ``crop``, plus the mosaic's
        levels and ``phone_kind: mosaic``. ``warp`` is the residual field the aligned DSLR
        image was warped with, so :func:`dpedkit.align.geometry.aligned_to_dslr` applies it."""
        d = self.align.record() if self.align is not None else {
            "homography": np.asarray(self.homography).round(10).tolist(), "matches": self.matches,
            "inliers": self.inliers, "reprojection_rmse": round(float(self.reprojection_rmse), 4),
            "refine_points": self.refine_points}
        return {**d, "crop": list(self.crop), "phone_kind": "mosaic", **self.mosaic.record()}


def align_mosaic(m: Mosaic, dslr: np.ndarray, opts: AlignOptions = AlignOptions()) -> MosaicAlignResult:
    """Align an RGB DSLR photo to a phone mosaic; raises :class:`AlignError`."""
    rendering = quick_rgb(m)
    res = align_images(rendering, dslr, opts)
    rect = even_rect(res.crop)
    if rect is None:
        raise AlignError("too little overlap: no even-sized crop of the mosaic", matches=res.matches,
                         inliers=res.inliers)
    x, y, w, h = rect
    cx, cy = res.crop[:2]
    crop = Mosaic(m.data[y:y + h, x:x + w].copy(), m.pattern, m.black, m.white, m.wb, m.flip, dict(m.meta))
    return MosaicAlignResult(homography=res.homography, crop=rect, mosaic=crop,
                             dslr=res.dslr[y - cy:y - cy + h, x - cx:x - cx + w].copy(),
                             preview=rendering[y:y + h, x:x + w].copy(), matches=res.matches,
                             inliers=res.inliers, reprojection_rmse=res.reprojection_rmse,
                             refine_points=res.refine_points, align=res)
