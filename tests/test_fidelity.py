"""Fidelity of patch pairs on realistic simulated shoots (issue 13), with a validated scorer.

* The scorer reads deliberate errors of known size: the true answer ≈ 0, a +3 px shift of
  one window row ≈ 3 px, a 1° rotation its analytic mean / max displacement.
* The simulator's truth is consistent with its images (the DSLR warped by the map is the
  phone photo up to ISP differences), distortion moves a corner by the set amount and a
  parallax layer shifts by its disparity.
* The real CLI (``python -m dpedkit align`` then ``patches``) runs on small versions of every
  case and the figures are printed; the issue's error budget is asserted in every case
  (``test_error_budget``; yield floors scaled to the test size, see ``BUDGET``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dpedkit.layout import read_records
from dpedkit.testing.scoring import _score
from dpedkit.testing.scoring import score_against_truth, score_windows, summarize, true_offsets, window_error
from dpedkit.testing.shoots import CASES, Truth, _apply, _phone_homography, case_params, simulate, write_shoot


# The error budget (issue 13), asserted on the small versions of every case. The error
# limits are the issue's own. The yields the issue names (≥ 90 % static, ≥ 50 % parallax) refer
# to the bench size (bench/fidelity.py, phone 1600×1200, 165 windows a pair, README table); at
# the test size a pair has only 24 windows of 100 px, one window is 4 % and a depth layer or a
# flat area covers a larger share of them, so the test asserts lower floors that still fail
# when the verifier rejects wholesale (measured at 640×480: homography 92 %, distortion 100 %,
# parallax 38 %).
BUDGET_ENFORCED = True
BUDGET = {"max_share_over_1px": 0.01, "max_share_over_2px": 0.0, "control_p95_px": 0.15,
          "min_yield_static": 0.85, "min_yield_parallax": 0.30}

SIZE = (640, 480)      # phone px of the small versions
REPO = Path(__file__).resolve().parents[1]


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "dpedkit", *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def shoot(tmp_path_factory):
    """All cases at the small size through the real CLI: raw/ → aligned/ → dataset/."""
    root = tmp_path_factory.mktemp("fidelity")
    for case in CASES:
        write_shoot(root, case, simulate(case, SIZE, seed=0))
    _cli("align", root / "raw", root / "aligned", "--jobs", "1")
    _cli("patches", root / "aligned", root / "dataset", "--jobs", "1", "--test-photos", "1")
    return root


@pytest.fixture(scope="module")
def scores(shoot):
    patches = score_against_truth(shoot / "aligned", shoot / "dataset", shoot / "truth")
    windows = score_windows(shoot / "aligned", shoot / "dataset", shoot / "truth")
    return {c: summarize([p for p in patches if p.name == c], [w for w in windows if w.name == c]) for c in CASES}


def _rewrite_csv(src_root: Path, dst_root: Path, edit) -> Path:
    """Copy dataset/<phone>/ (csv + report only) to ``dst_root`` with ``edit(row)`` applied."""
    src = next(src_root.glob("*/patches.csv")).parent
    dst = dst_root / src.name
    dst.mkdir(parents=True)
    shutil.copy(src / "patches_report.json", dst)
    with open(src / "patches.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(dst / "patches.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow(edit(dict(r)))
    return dst


# ----------------------------------------------------------------------------- scorer validation

def test_scorer_reads_deliberate_errors(shoot, tmp_path):
    """Perfect answers read ≈ 0; +3 px on one window row reads 3 px; a 1° rotation reads its
    analytic displacement (mean and max over a 100 px window)."""
    records = read_records(shoot / "aligned" / "manifest.jsonl")
    truth = {c: Truth.load(shoot / "truth" / f"{c}.npz") for c in ("homography", "parallax")}
    perfect = {}

    def true_answer(r):
        if r["name"] in truth:
            key = (r["name"], r["x"], r["y"])
            perfect[key] = true_offsets(records[r["name"]], truth[r["name"]], int(r["x"]), int(r["y"]), 100)
            r["dx"], r["dy"], r["angle"] = perfect[key]
        return r

    ds = _rewrite_csv(shoot / "dataset", tmp_path / "perfect", true_answer)
    ok = [s for s in score_against_truth(shoot / "aligned", ds, truth) if s.name == "homography"]
    assert len(ok) >= 15
    # (not exactly 0: an aligner with a smooth residual warp is not rigid inside a window)
    assert max(s.mean_px for s in ok) < 0.05
    rows = sorted({s.y for s in ok})
    shifted_row = rows[len(rows) // 2]

    def plus3(r):
        r = true_answer(r)
        if r["name"] == "homography" and int(r["y"]) == shifted_row:
            r["dx"] = float(r["dx"]) + 3
        if r["name"] == "homography" and int(r["y"]) == rows[0]:
            r["angle"] = float(r["angle"]) + 1.0
        return r

    ds = _rewrite_csv(shoot / "dataset", tmp_path / "plus3", plus3)
    got = [s for s in score_against_truth(shoot / "aligned", ds, truth) if s.name == "homography"]
    # a rigid rotation by θ moves a pixel at radius r by 2 r sin(θ/2)
    i, j = np.mgrid[:100, :100] - 49.5
    chord = 2 * np.hypot(i, j) * np.sin(np.deg2rad(0.5))
    for s in got:
        if s.y == shifted_row:
            assert abs(s.mean_px - 3) < 0.05 and abs(s.max_px - 3) < 0.1
        elif s.y == rows[0]:
            assert abs(s.mean_px - chord.mean()) < 0.05 and abs(s.max_px - chord.max()) < 0.1
        else:
            assert s.mean_px < 0.05
    # a +3 px error on what the real search answered also reads ≈ 3 (the search is near-right on the control)
    ds = _rewrite_csv(shoot / "dataset", tmp_path / "search3",
                      lambda r: r | {"dx": float(r["dx"]) + 3} if r["name"] == "homography" else r)
    got = [s for s in score_against_truth(shoot / "aligned", ds, truth) if s.name == "homography"]
    assert all(abs(s.mean_px - 3) < 0.15 for s in got)


def test_scorer_true_answer_on_parallax_background(shoot):
    """Away from depth edges a per-window true rigid answer is exact on a parallax scene
    too; a window straddling the foreground edge cannot be (and the scorer says so). The
    aligner here is the background's true homography, so that only the scorer is tested."""
    tr = Truth.load(shoot / "truth" / "parallax.npz")
    rec = {"homography": tr.params["phone_homography"], "crop": [8, 6, 620, 464]}
    clean, straddling = [], []
    for y in range(10, 360, 100):
        for x in range(10, 520, 100):
            e = window_error(rec, tr, x, y, *true_offsets(rec, tr, x, y, 100), 100)
            if e["edge"].mean() == 0:
                clean.append(e["err"][e["valid"]].mean())
            elif e["edge"].mean() > 0.05:
                straddling.append(e["err"][e["valid"]].mean())
    assert clean and straddling
    assert max(clean) < 0.01
    assert max(straddling) > 0.5


# ----------------------------------------------------------------------------- simulator sanity

def _ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / (a.std() * b.std()))


@pytest.mark.parametrize("case", CASES)
def test_truth_map_reproduces_the_phone_photo(shoot, case):
    """The DSLR photo sampled at the truth map is the phone photo up to ISP differences."""
    raw = shoot / "raw"
    phone = cv2.imread(str(raw / "phone" / f"{case}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float64)
    dslr = cv2.imread(str(raw / "dslr" / f"{case}.png"), cv2.IMREAD_GRAYSCALE)
    tr = Truth.load(shoot / "truth" / f"{case}.npz")
    warped = cv2.remap(dslr, tr.dslr_xy[..., 0], tr.dslr_xy[..., 1], cv2.INTER_LINEAR).astype(np.float64)
    sel = tr.valid & ~tr.depth_edge & ~tr.moving
    assert sel.mean() > 0.8
    assert _ncc(warped[sel], phone[sel]) > (0.9 if case in ("processing", "combined") else 0.97)
    # and a 2 px error in the map is visible: the check can fail
    shifted = cv2.remap(dslr, tr.dslr_xy[..., 0] + 2, tr.dslr_xy[..., 1], cv2.INTER_LINEAR).astype(np.float64)
    assert _ncc(shifted[sel], phone[sel]) < _ncc(warped[sel], phone[sel]) - 0.02
    # no single homography fits the truth except in the control: the hard cases are hard
    h, w = sel.shape
    ys, xs = np.mgrid[8:h - 8:8, 8:w - 8:8]
    ok = tr.valid[ys, xs]
    src = np.stack([xs[ok], ys[ok]], -1).astype(np.float64)
    dst = tr.dslr_xy[ys, xs][ok].astype(np.float64)
    H, _ = cv2.findHomography(src, dst, 0)
    misfit = np.linalg.norm(_apply(H, src) - dst, axis=-1).max()
    if case in ("homography", "processing"):
        assert misfit < 0.01
    else:
        assert misfit > 2.0
    if case in ("moving", "combined"):
        assert tr.moving.mean() > 0.02
    if case in ("parallax", "combined"):
        assert tr.depth_edge.mean() > 0.01 and (~tr.valid).sum() > 100   # occlusions exist


def _match(template_img, search_img, cx, cy, half=24, radius=12) -> np.ndarray:
    """Displacement (x, y) of the window centred at (cx, cy) of ``template_img`` in ``search_img``."""
    a = cv2.cvtColor(template_img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    b = cv2.cvtColor(search_img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    t = a[cy - half:cy + half, cx - half:cx + half]
    r = b[cy - half - radius:cy + half + radius, cx - half - radius:cx + half + radius]
    c = cv2.matchTemplate(r, t, cv2.TM_CCOEFF_NORMED)
    _, _, _, (px, py) = cv2.minMaxLoc(c)
    fx = 0.5 * (c[py, px - 1] - c[py, px + 1]) / (c[py, px - 1] - 2 * c[py, px] + c[py, px + 1])
    fy = 0.5 * (c[py - 1, px] - c[py + 1, px]) / (c[py - 1, px] - 2 * c[py, px] + c[py + 1, px])
    return np.array([px + fx - radius, py + fy - radius])


def test_distortion_moves_the_corners_by_the_set_amount():
    """The same scene with and without phone distortion: resampling the distorted photo at
    ``q·(1 + k1·r²)`` restores the plain one near the corners (where content moves by
    ~8 px), and does so best with exactly the set k1 (±15 %, i.e. ±1.2 px at the corners)."""
    base = case_params("homography", SIZE, seed=1)
    k1 = -0.04
    plain = cv2.cvtColor(simulate(base).phone, cv2.COLOR_RGB2GRAY).astype(np.float64)
    bent = cv2.cvtColor(simulate(dataclasses.replace(base, k_phone=(k1, 0.0))).phone, cv2.COLOR_RGB2GRAY)
    w, h = SIZE
    R, c = np.hypot(w, h) / 2, np.array([(w - 1) / 2, (h - 1) / 2])
    q = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1) - c
    r2 = (q ** 2).sum(-1) / R ** 2
    corners = (r2 > 0.55) & (r2 < 0.9)                     # the outer ring, inside the frame
    moved = np.sqrt(r2) * R * abs(k1) * r2
    assert moved[corners].mean() > 4
    ncc = {}
    for f in (0.7, 0.85, 1.0, 1.15, 1.3):
        m = (c + q * (1 + f * k1 * r2)[..., None]).astype(np.float32)
        back = cv2.remap(bent, m[..., 0], m[..., 1], cv2.INTER_LINEAR).astype(np.float64)
        ncc[f] = _ncc(back[corners], plain[corners])
    assert max(ncc, key=ncc.get) == 1.0, ncc
    assert ncc[1.0] > 0.98


def test_parallax_layers_shift_by_their_disparity():
    p = case_params("parallax", SIZE, seed=2)
    flat = simulate(dataclasses.replace(p, disparities=(0.0, 0.0))).phone
    deep = simulate(p).phone
    G = _phone_homography(p)
    dw, dh = p.dslr_size
    a = np.deg2rad(p.baseline_dir_deg)
    for (fx, fy), d in (((0.29, 0.40), p.disparities[0]), ((0.68, 0.64), p.disparities[1]), ((0.22, 0.82), 0.0)):
        cx, cy = np.rint(_apply(G, np.array([fx * dw, fy * dh]))).astype(int)   # layer centre in the phone
        got = _match(flat, deep, cx, cy)
        assert np.linalg.norm(got - d * np.array([np.cos(a), np.sin(a)])) < 0.3, (fx, fy, got, d)


# ----------------------------------------------------------------------------- the pipeline

def test_pipeline_figures(scores, capsys):
    """Print every case's figures; assert the homography control is clean today."""
    with capsys.disabled():
        print(f"\nfidelity at phone {SIZE[0]}x{SIZE[1]} (one pair per case, CLI defaults)")
        print(f"{'case':<11} {'win':>4} {'acc':>4} {'median':>7} {'p95':>6} {'max':>6} {'>1px':>6} {'>2px':>6} "
              f"{'moving acc':>10} {'yield':>6}")
        for c, s in scores.items():
            print(f"{c:<11} {s['windows']:>4} {s['accepted']:>4} {s['median_px']:>7.3f} {s['p95_px']:>6.3f} "
                  f"{s['max_px']:>6.3f} {s['over_1px']:>6.1%} {s['over_2px']:>6.1%} "
                  f"{s['moving_accepted']:>4}/{s['moving_windows']:<5} {s['yield_']:>6.1%}")
    control = scores["homography"]
    assert control["windows"] >= 20
    assert control["over_1px"] == 0 and control["max_px"] < 0.5
    assert control["yield_"] >= 0.75      # most windows pass (the budget's 90 % is in test_error_budget)


@pytest.mark.skipif(not BUDGET_ENFORCED, reason="issue 13's error budget: switched on when the algorithms land")
@pytest.mark.parametrize("case", CASES)
def test_error_budget(scores, case):
    s = scores[case]
    assert s["over_1px"] <= BUDGET["max_share_over_1px"]
    assert s["over_2px"] <= BUDGET["max_share_over_2px"]
    if case == "homography":
        assert s["p95_px"] <= BUDGET["control_p95_px"]
    if case in ("homography", "distortion", "processing"):     # processing: issue 22's ≥ 85 % static single depth
        assert s["yield_"] >= BUDGET["min_yield_static"]
    if case == "parallax":
        assert s["yield_"] >= BUDGET["min_yield_parallax"]


# issue 22: the search never makes a window worse than the aligner's model where that model is
# right (a pure homography; the same with a strong phone ISP), by more than this p95 (phone px)
NEVER_WORSE_P95 = 0.03


@pytest.mark.parametrize("case", ["homography", "processing"])
def test_the_search_never_makes_a_window_worse_than_the_global_model(shoot, case):
    """Each accepted patch's true error with the search's offset against the same window at
    the aligner's position (dx = dy = angle = 0): the p95 of the patches' errors may exceed
    the aligner's by at most NEVER_WORSE_P95. The check can fail: the same windows moved
    by the bias a processed pair's sub-pixel peak has (0.15 px) read worse by more."""
    records = read_records(shoot / "aligned" / "manifest.jsonl")
    truth = Truth.load(shoot / "truth" / f"{case}.npz")
    got = [p for p in score_against_truth(shoot / "aligned", shoot / "dataset", shoot / "truth") if p.name == case]
    assert len(got) >= 10
    rec = records[case]
    at_model = np.array([_score(case, rec, truth, p.x, p.y, 0.0, 0.0, 0.0, 100).mean_px for p in got])
    searched = np.array([p.mean_px for p in got])
    assert np.percentile(searched, 95) <= np.percentile(at_model, 95) + NEVER_WORSE_P95
    biased = np.array([_score(case, rec, truth, p.x, p.y, 0.15, 0.0, 0.0, 100).mean_px for p in got])
    assert np.percentile(biased, 95) > np.percentile(at_model, 95) + NEVER_WORSE_P95


def test_defocus_is_a_reason_in_the_report(shoot):
    """The processing and combined shoots have out-of-focus DSLR regions: some windows are
    rejected as ``defocus``, counted in patches_report.json and coded in its window_map."""
    import json
    from dpedkit.layout import WINDOW_CODES
    report = json.loads(next((shoot / "dataset").glob("*/patches_report.json")).read_text())
    photos = {ph["name"]: ph for ph in report["photos"]}
    assert all("defocus" in ph for ph in photos.values())
    assert photos["combined"]["defocus"] > 0
    assert photos["combined"]["window_map"].count(WINDOW_CODES["defocus"]) == photos["combined"]["defocus"]
    assert photos["homography"]["defocus"] == 0
