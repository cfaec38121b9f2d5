"""The verified search's numerical kernels against the OpenCV calls they stand in for: the
cells' correlation maps, the small correlation map, the focus check's sharpness, the batched
parabolic peak and the separable sub-pixel shift."""
import cv2
import numpy as np
import pytest

from dpedkit.imageops import refine_peak, refine_peaks
from dpedkit.patches.kernels import ncc_map_small, sample, sharpness
from dpedkit.patches.verified import window_cells
from dpedkit.patches.window import SearchOptions, dslr_affine


@pytest.fixture(scope="module")
def gray(samples):
    """A real photo's luminance (float32, 0–255) with a little noise."""
    g = cv2.cvtColor(cv2.resize(samples["astronaut"], (400, 400)), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return g + np.random.default_rng(0).normal(0, 2, g.shape).astype(np.float32)


def test_cell_maps_equal_match_template_per_rectangle(gray):
    cells = window_cells(SearchOptions())
    r, S = 2, 100
    assert len(cells.rects) == 21 and cells.rects[-1] == (0, 0, S, S)   # 16 blocks, 4 strips, the window
    for y, x in [(40, 60), (200, 150), (290, 290)]:
        region = gray[y:y + S + 2 * r, x:x + S + 2 * r]
        templ = gray[y + 1:y + 1 + S, x + 3:x + 3 + S]       # moved by (1, −1) px from the centre
        maps, std_region, std_templ = cells.ncc_maps(region, templ, r)
        for k, (by, bx, bh, bw) in enumerate(cells.rects):
            ref = cv2.matchTemplate(region[by:by + bh + 2 * r, bx:bx + bw + 2 * r],
                                    templ[by:by + bh, bx:bx + bw], cv2.TM_CCOEFF_NORMED)
            np.testing.assert_allclose(maps[k], ref, atol=3e-4)     # (OpenCV sums in float32)
            assert std_region[k] == pytest.approx(region[r + by:r + by + bh, r + bx:r + bx + bw].std(), rel=1e-4)
            assert std_templ[k] == pytest.approx(templ[by:by + bh, bx:bx + bw].std(), rel=1e-4)
        # the maps see the shift: every rectangle peaks at (u, v) = (r + 1, r − 1)
        assert np.all(maps.reshape(len(maps), -1).argmax(1) == (r - 1) * (2 * r + 1) + r + 1)


def test_small_map_equals_match_template(gray):
    templ = gray[101:201, 52:152]
    for n in (3, 5):
        region = gray[100:100 + 99 + n, 50:50 + 99 + n]
        np.testing.assert_allclose(ncc_map_small(region, templ),
                                   cv2.matchTemplate(region, templ, cv2.TM_CCOEFF_NORMED), atol=1e-4)


def test_sharpness_equals_the_opencv_blur_and_sobel(gray):
    def reference(img, fine=0.7, coarse=2.0):
        m, e = int(np.ceil(2 * coarse)), []
        for s in (fine, coarse):
            b = cv2.GaussianBlur(img, (0, 0), s)
            gx = cv2.Sobel(b, cv2.CV_32F, 1, 0, ksize=1)[m:-m, m:-m]
            gy = cv2.Sobel(b, cv2.CV_32F, 0, 1, ksize=1)[m:-m, m:-m]
            e.append(cv2.norm(gx, cv2.NORM_L2SQR) + cv2.norm(gy, cv2.NORM_L2SQR))
        return e[0] / e[1]
    blurred = cv2.GaussianBlur(gray, (0, 0), 1.5)
    for img in (gray, blurred):
        for y, x, S in [(0, 0, 100), (150, 37, 100), (300, 300, 64), (10, 200, 37)]:
            win = img[y:y + S, x:x + S]                          # a view into the photo, as the verifier reads it
            assert sharpness(win) == pytest.approx(reference(win), rel=1e-5)
    assert sharpness(blurred[:100, :100]) < 0.8 * sharpness(gray[:100, :100])   # (measured 0.75)


def test_a_cell_deviation_counts_as_far_as_its_surface_supports_it():
    from dpedkit.imageops import refine_peaks
    from dpedkit.patches.verified import _curvature, _support
    u = np.arange(5)[None, :] - 2.0
    clean = 0.95 - 0.05 * ((u - 1.3) ** 2 + u.T ** 2)            # one peak 1.3 px right of the model
    twin = np.maximum(0.974 - 0.1 * (u ** 2 + u.T ** 2),        # a peak at the model's place, and one
                      0.975 - 0.1 * ((u - 1) ** 2 + (u.T - 2) ** 2))   # (1, 2) px off, a hair higher
    maps = np.stack([clean, twin])
    fx, fy, peak, px, py = refine_peaks(maps)
    support = _support(maps, peak, px, py, fx, fy, _curvature(maps, peak, px, py))
    assert support[0] == pytest.approx(1.0)
    assert (fx[1] - 2, fy[1] - 2) == (1, 2) and support[1] < 0.1   # the model's place explains it as well


def test_batched_peaks_equal_the_single_peak():
    rng = np.random.default_rng(1)
    maps = rng.random((200, 5, 5))
    maps[:50] = -((np.arange(5)[None, :, None] - rng.uniform(0, 4, (50, 1, 1))) ** 2
                  + (np.arange(5)[None, None, :] - rng.uniform(0, 4, (50, 1, 1))) ** 2)  # concave bowls
    maps[60, 0, 3] = maps[61, 2, 4] = 9                      # peaks on the border
    maps[62] = 1.0                                           # a tie: the first maximum, as minMaxLoc
    fx, fy, peak, px, py = refine_peaks(maps)
    for k, m in enumerate(maps):
        _, top, _, (qx, qy) = cv2.minMaxLoc(m)
        rx, ry, _ = refine_peak(m, qx, qy)
        assert (px[k], py[k], peak[k]) == (qx, qy, pytest.approx(top))
        assert (fx[k], fy[k]) == (pytest.approx(rx, abs=1e-12), pytest.approx(ry, abs=1e-12))


@pytest.mark.parametrize("img_kind", ["float", "rgb"])
def test_translation_sample_equals_the_warp_and_is_exact_on_a_ramp(gray, img_kind):
    img = gray if img_kind == "float" else np.dstack([np.clip(gray, 0, 255).astype(np.uint8)] * 3)
    for dx, dy in [(0.3, -0.7), (-1.25, 2.5), (0.0, 0.0), (0.999, 0.001)]:
        A = dslr_affine(150, 120, dx, dy, 0.0, 100, 0, 0, margin=2)
        fast = sample(img, A, 104)
        B = A.copy()
        B[0, 1] = 1e-15                                      # not a pure translation: OpenCV's warp
        warp = sample(img, B, 104)
        assert fast.dtype == img.dtype and fast.shape == warp.shape
        assert np.abs(fast.astype(float) - warp).max() <= (1e-3 if img_kind == "float" else 1)
    # the samples lie where A says: on a ramp (1 grey level per px along x) OpenCV's bicubic
    # kernel (a = −0.75) places them within 0.05 px; a tap off by one would read ≥ 0.6 px
    ramp = np.tile(np.arange(300, dtype=np.float32), (300, 1))
    for tx in (40.0, 40.2, 40.37, 40.5, 40.81):
        got = sample(ramp, np.array([[1.0, 0, tx], [0, 1.0, 70.0]]), 50)
        assert np.abs(got - (np.arange(50) + tx)).max() < 0.05, tx
