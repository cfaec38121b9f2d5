"""The residual warp on top of the homography: lens distortion is recovered, other depth
layers do not bend it, and ``aligned_to_dslr`` states the same model the remap applied."""
import json

import cv2
import numpy as np
import pytest

from tests.helpers import upscaled
from dpedkit.align.core import AlignOptions, align_images
from dpedkit.align.geometry import aligned_to_dslr, apply_h
from dpedkit.align.warp import SplineField, fit_field, source_map
from dpedkit.testing.synth import random_homography


def radial(q, centre, R, k):
    d = (q - centre) / R
    return q + k * R * d * (d * d).sum(-1, keepdims=True)


def distorted_pair(dslr, scale, k, rng):
    """A phone photo of ``dslr`` through a homography and a radial distortion ``k`` (at the
    half-diagonal, relative) about an off-centre point; returns (phone, truth, H) with
    ``truth(q)`` the DSLR point phone pixel ``q`` sees."""
    dh, dw = dslr.shape[:2]
    pw, ph = round(dw * scale), round(dh * scale)
    H = random_homography((dw, dh), (pw, ph), rng)
    centre, R = np.array([pw * 0.52, ph * 0.47]), np.hypot(pw, ph) / 2

    def truth(q):
        return apply_h(np.linalg.inv(H), radial(np.asarray(q, float), centre, R, k))
    ys, xs = np.mgrid[:ph, :pw]
    s = truth(np.c_[xs.ravel(), ys.ravel()]).reshape(ph, pw, 2).astype(np.float32)
    blurred = cv2.GaussianBlur(dslr, (0, 0), 0.5 * np.sqrt(1 / scale ** 2 - 1))
    phone = cv2.remap(blurred, s[..., 0], s[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    phone = np.clip(phone * 1.05 + rng.normal(0, 2, phone.shape), 0, 255).astype(np.uint8)
    return phone, truth, H


def model_error(rec, truth, H, step=8):
    """Per-point distance (phone px) between the record's phone→DSLR model and the truth."""
    x, y, w, h = rec["crop"]
    gy, gx = np.mgrid[0:h:step, 0:w:step]
    xy = np.c_[gx.ravel(), gy.ravel()].astype(float)
    return np.linalg.norm(apply_h(H, aligned_to_dslr(rec, xy)) - apply_h(H, truth(xy + (x, y))), axis=1)


@pytest.fixture(scope="module")
def distorted(samples):
    dslr = upscaled(samples["astronaut"], 2.0)
    return dslr, *distorted_pair(dslr, 0.6, 0.03, np.random.default_rng(0))   # ≈ 13 px at the corners


def test_residual_warp_recovers_lens_distortion(distorted):
    dslr, phone, truth, H = distorted
    plain = align_images(phone, dslr, AlignOptions(warp="homography")).record()
    res = align_images(phone, dslr, AlignOptions())
    rec = json.loads(json.dumps(res.record()))      # what the manifest stores
    e_plain, e = model_error(plain, truth, H), model_error(rec, truth, H)
    assert np.percentile(e_plain, 95) > 3           # a homography cannot express it: the test can fail
    assert np.median(e) < 0.1 and np.percentile(e, 95) < 0.5, (np.median(e), np.percentile(e, 95))
    # inside the frame (10 % from the edges, where shifts were measured all around) far better;
    # the corners extrapolate the field over untextured sky
    x, y, w, h = rec["crop"]
    gy, gx = np.mgrid[0:h:8, 0:w:8]
    inner = ((gx > 0.1 * w) & (gx < 0.9 * w) & (gy > 0.1 * h) & (gy < 0.9 * h)).ravel()
    assert np.percentile(e[inner], 95) < 0.2 and np.percentile(e_plain[inner], 95) > 1
    assert rec["warp"]["type"] == "bspline" and plain["warp"]["type"] == "homography"
    assert rec["residual"]["n"] > 100 and rec["residual"]["p95"] < 0.5
    assert res.crop[2] * res.crop[3] > 0.8 * phone.shape[0] * phone.shape[1]
    # the remap that wrote the DSLR image samples where aligned_to_dslr says (the map is
    # interpolated between lattice nodes: far below 0.02 px)
    x, y, w, h = res.crop
    pts = np.array([[10, 10], [w // 2, h // 3], [w - 12, h - 9], [3, h - 2]])
    mx, my = source_map(res.homography, res.field, res.crop)   # full-resolution DSLR coordinates
    got = np.c_[mx[pts[:, 1], pts[:, 0]], my[pts[:, 1], pts[:, 0]]]
    np.testing.assert_allclose(got, aligned_to_dslr(rec, pts), atol=0.02)


def test_field_fit_ignores_a_second_depth_layer():
    rng = np.random.default_rng(1)
    w, h = 1600, 1200
    q = rng.uniform([0, 0], [w, h], (900, 2))
    true = radial(q, np.array([w / 2, h / 2]), np.hypot(w, h) / 2, 0.02) - q
    r = true + rng.normal(0, 0.08, q.shape)
    fg = (q[:, 0] < 500) & (q[:, 1] > 700)          # a foreground layer: 4 px parallax
    r[fg] += (4.0, 1.0)
    field, inl = fit_field(q, r, (0, 0, w, h), (8, 6), smooth=0.003)
    bg = ~fg
    err = np.linalg.norm(field(q[bg]) - true[bg], axis=1)
    # away from the layer's border the background is fitted to a fraction of a pixel
    far = bg & ~((q[:, 0] < 800) & (q[:, 1] > 450))
    assert np.percentile(np.linalg.norm(field(q[far]) - true[far], axis=1), 95) < 0.15
    assert np.median(err) < 0.1
    assert inl[fg].mean() < 0.5 and inl[bg].mean() > 0.85


def test_field_round_trips_through_json():
    f = SplineField.zero((0, 0, 100, 80), (4, 3))
    f.coef = np.random.default_rng(0).normal(0, 1, f.coef.shape)
    g = SplineField.from_dict(json.loads(json.dumps(f.to_dict())))
    pts = np.array([[0, 0], [50.5, 33.3], [99, 79]])
    np.testing.assert_allclose(f(pts), g(pts), atol=1e-3)


def test_field_on_a_lattice_equals_pointwise():
    f = SplineField.zero((10, 5, 300, 200), (5, 3))
    f.coef = np.random.default_rng(2).normal(0, 2, f.coef.shape)
    xs, ys = np.array([-3.0, 10, 77.7, 309, 320]), np.array([0.0, 5, 99.5, 204.9])
    gx, gy = np.meshgrid(xs, ys)
    np.testing.assert_allclose(f.grid(xs, ys), f(np.c_[gx.ravel(), gy.ravel()]).reshape(len(ys), len(xs), 2),
                               atol=1e-9)


def test_apply_h_is_the_homogeneous_product():
    # cv2.perspectiveTransform in place of a BLAS product: the same numbers, any batch size
    from dpedkit.align import warp
    rng = np.random.default_rng(3)
    H = random_homography((5472, 3648), (4000, 3000), rng)
    pts = rng.uniform(-500, 5500, (1000, 2))
    q = np.c_[pts, np.ones(len(pts))] @ H.T
    np.testing.assert_allclose(warp.apply_h(H, pts), q[:, :2] / q[:, 2:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(warp.apply_h(H, pts), apply_h(H, pts), rtol=0, atol=1e-9)
    assert warp.apply_h(H, np.zeros((0, 2))).shape == (0, 2)
    assert warp.apply_h(H, [10.0, 20.0]).shape == (1, 2)


def test_the_field_is_kept_only_when_it_predicts_held_out_shifts():
    from dpedkit.align.core import field_predicts
    rng = np.random.default_rng(4)
    gy, gx = np.mgrid[20:480:18, 20:640:18]
    q = np.c_[gx.ravel(), gy.ravel()].astype(float)
    noise = rng.normal(0, 0.05, q.shape)                     # a planar scene: the shifts are noise
    assert not field_predicts(q, noise, (0, 0, 660, 500), (8, 6), 0.003)
    d = (q - (330, 250)) / 410
    barrel = 4 * d * (d * d).sum(1, keepdims=True)           # a lens: up to ~2 px at the corners
    assert field_predicts(q, barrel + noise, (0, 0, 660, 500), (8, 6), 0.003)


def test_a_planar_undistorted_pair_keeps_the_homography_alone(samples, monkeypatch):
    from dpedkit.align import core
    dslr = upscaled(samples["astronaut"], 2.0)
    phone, truth, H = distorted_pair(dslr, 0.6, 0.0, np.random.default_rng(2))
    rec = align_images(phone, dslr, AlignOptions()).record()
    assert rec["warp"]["type"] == "homography"
    monkeypatch.setattr(core, "FIELD_GAIN", np.inf)      # the field kept whatever it predicts
    forced = align_images(phone, dslr, AlignOptions()).record()
    e, e_forced = model_error(rec, truth, H), model_error(forced, truth, H)
    # the forced field fits noise and extrapolates it (0.11 px p95, 0.4 px max when measured)
    assert np.percentile(e, 95) < 0.05 and np.percentile(e, 95) < 0.5 * np.percentile(e_forced, 95)
