"""The DPED-style exhaustive window search (``SearchOptions.method == "exhaustive"``): every
integer shift ``|dx|, |dy| ≤ max_shift`` at every angle of the grid, the phone side bilinearly
resampled; conventions in :mod:`dpedkit.patches.window`."""

from __future__ import annotations

import cv2
import numpy as np

from dpedkit.imageops import refine_peak
from dpedkit.patches.window import SearchOptions, WindowMatch, rotation, grid_positions, luminance


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
        R = rotation(angle)
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


