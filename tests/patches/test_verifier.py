"""The verified patch search: sub-pixel without harm on an aligned pair (no spurious
rotation), and the verifier's reasons on a depth edge and a moved object."""
from collections import Counter

import cv2
import numpy as np
import pytest

from dpedkit.layout import WINDOW_CODES
from dpedkit.patches.search import SearchOptions, WindowMatch, extract_patch_pair, match_windows, ncc

W, H = 900, 700
BASELINE = SearchOptions(method="exhaustive", verify=False)


def phone_isp(img, rng):
    """Sharpening, colour gains, noise and JPEG: what a phone does that moves nothing."""
    f = img.astype(np.float32)
    f = f + 0.6 * (f - cv2.GaussianBlur(f, (0, 0), 1.0))
    f = f * [1.06, 1.0, 0.93] + 8 + rng.normal(0, 2.0, f.shape)
    ok, enc = cv2.imencode(".jpg", np.clip(f, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)


def moved_by(src, d):
    """``out(q + d) = src(q)`` for a constant shift ``d`` (px)."""
    M = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
    return cv2.warpAffine(src, M, src.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def texture(samples, name, size=(W, H)):
    return cv2.resize(samples[name], size, interpolation=cv2.INTER_CUBIC)


def window_truth(truth, w, S=100):
    """Mean true error (px) of a window's correspondence, ``truth`` the per-DSLR-pixel
    displacement (phone − DSLR position)."""
    jj, ii = np.meshgrid(np.arange(S), np.arange(S))
    u = np.stack([jj - (S - 1) / 2, ii - (S - 1) / 2], -1)
    t = np.deg2rad(w.angle)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    pred = np.array([w.dx, w.dy]) + u @ R.T - u
    return float(np.linalg.norm(pred - truth[w.y:w.y + S, w.x:w.x + S], axis=-1).mean())


@pytest.fixture(scope="module")
def aligned_pair(samples):
    dslr = texture(samples, "astronaut")
    return dslr, phone_isp(dslr, np.random.default_rng(0))


def test_aligned_pair_gets_no_spurious_shift_or_rotation(aligned_pair):
    dslr, phone = aligned_pair
    ws = match_windows(dslr, phone, SearchOptions())
    ok = [w for w in ws if w.status == "ok"]
    assert len(ok) >= 0.9 * sum(w.status != "flat" for w in ws)
    err = np.array([np.hypot(w.dx, w.dy) for w in ok])
    assert np.percentile(err, 95) <= 0.15, np.percentile(err, 95)
    assert all(w.angle == 0 and w.model == "shift" for w in ok)
    # the DPED-style search picks the highest peak whatever its angle: the test can fail
    base = [w for w in match_windows(dslr, phone, BASELINE) if w.status == "ok"]
    assert sum(w.angle != 0 for w in base) >= 3
    # the written pair: the phone side is an exact crop, the DSLR side nearly untouched
    w = ok[0]
    d, p = extract_patch_pair(dslr, phone, w, 100)
    ox, oy = round(w.dx), round(w.dy)
    assert np.array_equal(p, phone[w.y + oy:w.y + oy + 100, w.x + ox:w.x + ox + 100])
    assert ncc(d, p) > 0.95


def test_verifier_rejects_a_depth_edge_and_keeps_clean_windows(samples):
    rng = np.random.default_rng(1)
    bg, fg = texture(samples, "astronaut"), texture(samples, "coffee")
    mask = np.zeros((H, W), np.float32)
    cv2.rectangle(mask, (0, 330), (470, H), 1, -1)              # a foreground layer, lower left
    d_fg = np.array([3.5, 1.0])
    dslr = np.where(mask[..., None] > 0, fg, bg)
    phone = np.where(moved_by(mask, d_fg)[..., None] > 0.5, moved_by(fg, d_fg), bg)
    phone = phone_isp(phone, rng)
    truth = np.where(mask[..., None] > 0, d_fg, 0.0)
    ws = match_windows(dslr, phone, SearchOptions())
    straddling = [w for w in ws if 0.1 < mask[w.y:w.y + 100, w.x:w.x + 100].mean() < 0.9]
    inside = [w for w in ws if mask[w.y:w.y + 100, w.x:w.x + 100].mean() in (0.0, 1.0) and w.status != "flat"]
    assert len(straddling) >= 5 and len(inside) >= 20
    rejected = [w for w in straddling if w.status in ("inconsistent", "at_search_limit", "asymmetric")]
    assert len(rejected) >= 0.8 * len(straddling), [(w.x, w.y, w.status) for w in straddling]
    # what slips through is a thin band whose texture cannot show the shift (stripes along it)
    assert all(window_truth(truth, w) < 1.5 for w in straddling if w.status == "ok")
    kept = [w for w in inside if w.status == "ok"]
    assert len(kept) >= 0.8 * len(inside)
    assert max(window_truth(truth, w) for w in kept) < 0.5
    # the baseline accepts windows across the edge (one shift cannot align two layers)
    base = match_windows(dslr, phone, BASELINE)
    assert sum(w.status == "ok" for w in base if 0.1 < mask[w.y:w.y + 100, w.x:w.x + 100].mean() < 0.9) >= 3
    # every status has a code in the report's window map
    assert {w.status for w in ws} <= set(WINDOW_CODES)


def test_verifier_rejects_a_moved_object(samples):
    rng = np.random.default_rng(2)
    bg = texture(samples, "astronaut")
    obj = texture(samples, "rocket", (150, 150))
    p0, mv = (560, 180), np.array([9.0, -6.0])                  # it moved between the exposures
    m = np.zeros((H, W), np.float32)
    m[p0[1]:p0[1] + 150, p0[0]:p0[0] + 150] = 1
    src = np.zeros_like(bg)
    src[p0[1]:p0[1] + 150, p0[0]:p0[0] + 150] = obj
    dslr = np.where(m[..., None] > 0, src, bg)
    mp = moved_by(m, mv)
    phone = phone_isp(np.where(mp[..., None] > 0.5, moved_by(src, mv), bg), rng)
    cover = lambda w: np.maximum(m, mp)[w.y:w.y + 100, w.x:w.x + 100].mean()  # noqa: E731
    touched = lambda w: cover(w) > 0  # noqa: E731
    truth = np.where(m[..., None] > 0, mv, 0.0)
    ws = match_windows(dslr, phone, SearchOptions())
    hit = [w for w in ws if cover(w) > 0.03]
    assert len(hit) >= 4
    assert not [w for w in hit if w.status == "ok"], Counter(w.status for w in hit)
    # a window the object only grazes (a corner of a few px) may stay: it is nearly right
    assert all(window_truth(truth, w) < 0.5 for w in ws if touched(w) and w.status == "ok")
    clean = [w for w in ws if not touched(w) and w.status != "flat"]
    assert sum(w.status == "ok" for w in clean) >= 0.85 * len(clean)
    base = match_windows(dslr, phone, BASELINE)
    assert sum(w.status == "ok" and touched(w) for w in base) >= 3   # the DPED gate lets them through


def test_window_at_the_search_limit_is_rejected(samples):
    dslr = texture(samples, "chelsea")
    phone = moved_by(dslr, (5.6, 0.3))                          # beyond the ±5 px range
    ws = match_windows(dslr, phone, SearchOptions())
    assert Counter(w.status for w in ws)["at_search_limit"] >= 0.8 * sum(w.status != "flat" for w in ws)
    assert WindowMatch(0, 0).status == "ok"


@pytest.fixture(scope="module")
def detailed_pair(aligned_pair):
    """The aligned pair's scene with fine grain (detail at every scale, as a DSLR-resolution
    photo has; the enlarged sample photo has none), through the same phone ISP."""
    rng = np.random.default_rng(3)
    grain = cv2.GaussianBlur(rng.normal(0, 10, (H, W)).astype(np.float32), (0, 0), 0.8)
    dslr = np.clip(aligned_pair[0] + grain[..., None], 0, 255).astype(np.uint8)
    return dslr, phone_isp(dslr, rng)


def test_sharpness_falls_with_a_deliberate_blur(detailed_pair):
    from dpedkit.patches.kernels import sharpness
    g = cv2.cvtColor(detailed_pair[0], cv2.COLOR_RGB2GRAY)[200:300, 300:400].astype(np.float32)
    s = [sharpness(cv2.GaussianBlur(g, (0, 0), b) if b else g) for b in (0, 0.8, 1.5, 2.5)]
    assert s[0] > s[1] > s[2] > s[3]
    assert s[2] < 0.8 * s[0] and s[3] < 0.65 * s[0], s
    assert abs(sharpness(3 * g + 40) - s[0]) < 1e-3 * s[0]      # contrast and brightness do not count


def test_an_out_of_focus_dslr_region_is_defocus(detailed_pair):
    """The DSLR's right half blurred (σ 2.5 px, out of focus): its windows are ``defocus``
    (half of them at least: where the scene's own detail is coarse, another blur changes
    little, and those are rejected as inconsistent or kept), none of the sharp half's; with
    the check off none is."""
    dslr, phone = detailed_pair
    blurred = dslr.copy()
    blurred[:, W // 2:] = cv2.GaussianBlur(dslr, (0, 0), 2.5)[:, W // 2:]
    ws = match_windows(blurred, phone, SearchOptions())
    right = [w for w in ws if w.x >= W // 2 and w.status != "flat"]
    left = [w for w in ws if w.x + 100 <= W // 2 and w.status != "flat"]
    assert right and left
    assert sum(w.status == "defocus" for w in right) >= 0.5 * len(right)
    assert not any(w.status == "defocus" for w in left)
    off = match_windows(blurred, phone, SearchOptions(min_sharpness=0))
    assert not any(w.status == "defocus" for w in off)


@pytest.mark.parametrize("shift, kept", [((0.08, -0.05), True), ((1.3, 0.6), False)])
def test_an_insignificant_shift_keeps_the_aligners_position(aligned_pair, shift, kept):
    """A phone photo moved by a shift within the peak's uncertainty keeps dx = dy = 0 (the
    aligner's model); a real 1.4 px one is followed (within 0.12 px)."""
    dslr, phone = aligned_pair
    ws = [w for w in match_windows(dslr, moved_by(phone, shift), SearchOptions()) if w.status == "ok"]
    assert len(ws) >= 10
    d = np.array([(w.dx, w.dy) for w in ws])
    if kept:
        assert np.mean(np.all(d == 0, axis=1)) >= 0.9
    else:
        # measured 0.100 (0.071 with equalize=0: this phone adds an offset as well as a gain, and the local
        # brightness ratio then varies a little with the brightness)
        assert np.percentile(np.hypot(*(d - shift).T), 90) < 0.12


def local_tone_mapping(img, sigma=20.0):
    """A phone's local tone mapping: shadows lifted, highlights held, by a gain that follows
    the local brightness (Gaussian of ``sigma`` px) — it moves nothing."""
    f = img.astype(np.float32)
    base = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), sigma)
    gain = np.clip(((base + 12) / 115) ** -0.6, 0.6, 2.4)
    return np.clip(f * gain[..., None], 0, 255).astype(np.uint8)


def test_local_tone_mapping_is_not_taken_for_motion(aligned_pair):
    """A phone photo through a strong local tone mapping, nothing moved: with the phone's
    local brightness equalised to the DSLR's (the default) the windows are kept at the
    aligner's position; without, the gain ramps across sub-blocks move their peaks and
    windows are rejected or shifted."""
    dslr, phone = aligned_pair
    toned = local_tone_mapping(phone)
    on = match_windows(dslr, toned, SearchOptions())
    off = match_windows(dslr, toned, SearchOptions(equalize=0))
    textured = sum(w.status != "flat" for w in on)
    ok_on = [w for w in on if w.status == "ok"]
    ok_off = [w for w in off if w.status == "ok"]
    # (measured: 40 of 48 textured windows kept with, 28 without — 19 inconsistent; 44 untoned)
    assert len(ok_on) >= 0.8 * textured, Counter(w.status for w in on)
    assert len(ok_on) >= len(ok_off) + 8, (Counter(w.status for w in on), Counter(w.status for w in off))
    assert np.percentile([np.hypot(w.dx, w.dy) for w in ok_on], 95) <= 0.15
    # a window put back at the aligner's position is checked there: its blocks fit the position written
    assert all(w.residual <= SearchOptions().max_spread for w in ok_on)
