import cv2
import numpy as np
import pytest

from dpedkit.align.geometry import (Plausibility, apply_h, corner_error, implausibility, jacobian, jacobian_det,
                                    largest_rectangle, rotation_deg, scale_matrix)


def test_scale_matrix_matches_cv2_resize():
    # a smooth blob's centroid moves where scale_matrix says when the image is area-resized
    ys, xs = np.mgrid[:64, :80]
    img = np.exp(-((xs - 37.3) ** 2 + (ys - 21.7) ** 2) / (2 * 3.0 ** 2)).astype(np.float32)
    small = cv2.resize(img, (40, 32), interpolation=cv2.INTER_AREA)
    ys, xs = np.mgrid[:32, :40]
    cy, cx = (small * ys).sum() / small.sum(), (small * xs).sum() / small.sum()
    expect = apply_h(scale_matrix(0.5, 0.5), [[37.3, 21.7]])[0]
    assert np.allclose([cx, cy], expect, atol=1e-3)


def test_jacobian_det_formula_agrees_with_numeric_jacobian():
    H = np.array([[0.7, 0.02, 10], [-0.01, 0.72, -5], [1e-5, -2e-5, 1]])
    for x, y in [(0, 0), (300, 200), (1000, 50)]:
        assert np.isclose(np.linalg.det(jacobian(H, x, y)), jacobian_det(H, [[x, y]])[0])
        eps = 1e-3
        num = np.c_[(apply_h(H, [[x + eps, y]]) - apply_h(H, [[x - eps, y]]))[0] / (2 * eps),
                    (apply_h(H, [[x, y + eps]]) - apply_h(H, [[x, y - eps]]))[0] / (2 * eps)]
        assert np.allclose(num, jacobian(H, x, y), atol=1e-6)


def _brute_force_rect(mask):
    best = 0
    h, w = mask.shape
    for t in range(h):
        for b in range(t, h):
            rows = mask[t:b + 1].all(axis=0)
            run = 0
            for v in rows:
                run = run + 1 if v else 0
                best = max(best, run * (b - t + 1))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_largest_rectangle_is_exact_on_convex_quads(seed):
    rng = np.random.default_rng(seed)
    W, Hh = 23, 17
    angle = rng.uniform(0, 2 * np.pi)
    c = rng.uniform([5, 5], [18, 12])
    r = rng.uniform(6, 14, 4)
    angs = angle + np.array([0, 1.4, 3.1, 4.6]) + rng.uniform(-0.2, 0.2, 4)
    quad = c + np.c_[r * np.cos(angs), r * np.sin(angs)]
    x, y, w, h = largest_rectangle(quad, W, Hh)
    ys, xs = np.mgrid[:Hh, :W]
    mask = np.ones((Hh, W), bool)
    for i in range(4):
        (x0, y0), (x1, y1) = quad[i], quad[(i + 1) % 4]
        side = (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0)
        sign = np.sign((x1 - x0) * (c[1] - y0) - (y1 - y0) * (c[0] - x0))
        mask &= side * sign >= -1e-9
    assert mask[y:y + h, x:x + w].all()
    assert w * h == _brute_force_rect(mask)


def test_implausible_homographies_are_named():
    size = (1000, 800)
    ok = np.array([[0.6, 0.01, 20], [-0.01, 0.6, 10], [0, 0, 1]])
    assert implausibility(ok, size) is None
    assert "flipped" in implausibility(np.diag([-0.6, 0.6, 1]) @ ok, size)
    assert "scale" in implausibility(np.diag([0.01, 0.01, 1]), size)
    assert "stretches" in implausibility(np.diag([0.6, 0.2, 1]), size)
    persp = ok.copy()
    persp[2, 0] = 1.5e-3
    assert "perspective" in implausibility(persp, size)
    persp[2, 0] = -2e-3  # the horizon crosses the frame
    assert "infinity" in implausibility(persp, size)
    assert "degenerate" in implausibility(np.zeros((3, 3)), size)


def _turned(deg, size=(1000, 800), scale=0.6):
    """DSLR→phone similarity: ``scale``, turned by ``deg`` (counter-clockwise on screen) about the centre."""
    t = np.deg2rad(-deg)
    c = np.array(size) / 2
    R = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return np.r_[np.c_[R, c * scale - R @ c], [[0, 0, 1]]]


@pytest.mark.parametrize("deg", [90, -89.3, 61, -119, 105])
def test_a_quarter_turn_is_refused_as_an_orientation_mistake(deg):
    size = (1000, 800)
    H = _turned(deg)
    assert rotation_deg(H, 499.5, 399.5) == pytest.approx(deg)
    reason = implausibility(H, size)
    assert "orientation mistake" in reason and "--allow-quarter-turn" in reason and f"{deg:+.1f}°" in reason
    assert implausibility(H, size, Plausibility(allow_quarter_turn=True)) is None


@pytest.mark.parametrize("deg", [0, 20, -45, 58, 125, 180])
def test_other_turns_are_not_taken_for_a_quarter_turn(deg):
    assert implausibility(_turned(deg), (1000, 800)) is None


def test_align_refuses_a_sideways_phone_photo(samples):
    from dpedkit.align.core import AlignError, AlignOptions, align_images
    dslr = samples["coffee"]
    phone = np.ascontiguousarray(cv2.resize(np.rot90(dslr), None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA))
    with pytest.raises(AlignError, match=r"turns the DSLR photo by [+-]90\.\d° .*orientation mistake"):
        align_images(phone, dslr)
    res = align_images(phone, dslr, AlignOptions(plausibility=Plausibility(allow_quarter_turn=True)))
    assert abs(rotation_deg(res.homography, dslr.shape[1] / 2, dslr.shape[0] / 2)) == pytest.approx(90, abs=1)


def test_corner_error_measures_shift():
    H = np.array([[0.5, 0, 3], [0, 0.5, 4], [0, 0, 1.0]])
    assert corner_error(H, H, (100, 80)) == pytest.approx(0, abs=1e-9)
    shifted = np.array([[1, 0, 0.3], [0, 1, 0.4], [0, 0, 1.0]]) @ H
    assert corner_error(shifted, H, (100, 80)) == pytest.approx(0.5)


def test_plausibility_refusal_names_the_option_that_lets_it_through():
    from dataclasses import fields

    from dpedkit.align.geometry import Plausibility
    size = (1000, 800)
    stretched = np.diag([0.8, 0.5, 1.0])                     # 1.60× more in x than in y
    msg = implausibility(stretched, size)
    assert "stretch 1.60× exceeds --max-stretch 1.5" in msg
    assert implausibility(stretched, size, Plausibility(max_stretch=1.7)) is None
    assert "--min-scale 0.05" in implausibility(np.diag([0.01, 0.01, 1]), size)
    assert "--max-scale 4" in implausibility(np.diag([5.0, 5.0, 1]), size)
    persp = np.array([[0.6, 0.01, 20], [-0.01, 0.6, 10], [1.5e-3, 0, 1]])
    assert "--max-area-ratio 3" in implausibility(persp, size)
    assert all(f.metadata.get("help") for f in fields(Plausibility))   # the CLI generator's help texts
