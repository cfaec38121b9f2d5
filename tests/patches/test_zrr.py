"""RAW phone photos → aligned 16-bit mosaics → the Zurich RAW-to-RGB / PyNET layout, read
back by a minimal re-implementation of PyNET's loader (the folder names and file numbering of
the original load_data.py / load_dataset.py: tools/pynet_clients.py runs the originals); HEIC and RAW-rendered-to-RGB pairs
through align → patches (DPED layout). Simulated sensors: real photos (scikit-image) warped
by known homographies, linearised, mosaicked, 10–12-bit with a black level and noise,
written as DNG (tests/camera_writer.py)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dpedkit.align.geometry import corner_error
from dpedkit.imageio import read_image, write_image
from dpedkit.layout import MANIFEST, read_records
from dpedkit.patches.zrr import read_mosaic_png
from dpedkit.raw import exposure_level, pattern_at, to_zurich_values
from dpedkit.testing.synth import random_homography
from tests.camera_writer import SENSOR_WB, luminance_corr, simulate_raw_phone, write_dng, write_heic

PHONE_SIZE = (576, 384)    # sensor (w, h)


# --- PyNET's loader, re-implemented minimally (PyNET-PyTorch load_data.py) --------------------

def extract_bayer_channels(raw):
    ch_B = raw[1::2, 1::2]
    ch_Gb = raw[0::2, 1::2]
    ch_R = raw[0::2, 0::2]
    ch_Gr = raw[1::2, 0::2]
    return np.dstack((ch_B, ch_Gb, ch_R, ch_Gr)).astype(np.float32) / (4 * 255)


def pynet_load(root, split, i):
    """What PyNET's LoadData reads for patch ``i``: <split>/huawei_raw/<i>.png, <split>/canon/<i>.jpg."""
    raw = cv2.imread(str(root / split / "huawei_raw" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
    rgb = cv2.imread(str(root / split / "canon" / f"{i}.jpg"))[..., ::-1].astype(np.float32) / 255
    return extract_bayer_channels(raw), rgb


def simple_rgb(packed):
    """A simple demosaic of PyNET's 4 channels: white balance, 2× nearest upsampling, sRGB-ish gamma."""
    B, Gb, R, Gr = (packed[..., k] for k in range(4))
    rgb = np.dstack([R * SENSOR_WB[0], (Gb + Gr) / 2 * SENSOR_WB[1], B * SENSOR_WB[2]])
    rgb = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    return np.clip(rgb / 0.7, 0, 1) ** (1 / 2.2)



# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dslr_photos():
    from dpedkit.testing.synth import sample_images
    s = sample_images()
    return {k: cv2.resize(s[k], (960, 640), interpolation=cv2.INTER_CUBIC) for k in ("coffee", "astronaut")}


def raw_pair(raw, name, dslr, pattern, bits, black, seed, when=None, dslr_dir="canon"):
    """raw/phone/<name>.dng (simulated sensor) + raw/<dslr_dir>/<name>.jpg; returns the true H and the mosaic."""
    rng = np.random.default_rng(seed)
    H = random_homography((dslr.shape[1], dslr.shape[0]), PHONE_SIZE, rng)
    mosaic = simulate_raw_phone(dslr, H, PHONE_SIZE, pattern, bits, black, rng)
    (raw / "phone").mkdir(parents=True, exist_ok=True)
    write_dng(raw / "phone" / f"{name}.dng", mosaic, pattern, black, 2 ** bits - 1, when=when)
    write_image(raw / dslr_dir / f"{name}.jpg", dslr, quality=95)
    return H, mosaic


# --- RAW → aligned mosaic → ZRR layout ----------------------------------------------------------------

@pytest.fixture(scope="module")
def raw_aligned(tmp_path_factory, dslr_photos):
    """Two simulated RAW phones (RGGB 10-bit, GBRG 12-bit) against DSLR JPEGs, aligned."""
    from dpedkit.align.stage import AlignRunOptions, align_folder
    root = tmp_path_factory.mktemp("rawset")
    raw = root / "raw"
    truth = {"a": raw_pair(raw, "a", dslr_photos["coffee"], "RGGB", 10, 64, 1),
             "b": raw_pair(raw, "b", dslr_photos["astronaut"], "GBRG", 12, 256, 2)}
    (raw / "phone" / "a.xmp").write_text("<x/>")                             # a sidecar: reported, not a problem
    # the simulated lens has no distortion, so the aligner would rightly keep the homography
    # alone; the field is forced so that the mosaic records' field is tested end to end
    with pytest.MonkeyPatch.context() as mp:
        from dpedkit.align import core
        mp.setattr(core, "FIELD_GAIN", np.inf)
        summary = align_folder(raw, root / "aligned", AlignRunOptions(jobs=1, progress=False), log=lambda *_: None)
    return root, truth, summary


def test_raw_align_recovers_the_homography_and_keeps_the_mosaic(raw_aligned):
    root, truth, summary = raw_aligned
    recs = read_records(root / "aligned" / "manifest.jsonl")
    assert summary.counts["ok"] == 2 and summary.problems == 0
    sidecar = [r for r in recs.values() if r["phone"] == "phone/a.xmp"]
    assert sidecar[0]["status"] == "ignored" and "sidecar" in sidecar[0]["reason"]
    for name, (H, mosaic) in truth.items():
        r = recs[name]
        err = corner_error(np.array(r["homography"]), H, PHONE_SIZE)
        assert err < 0.5, (name, err)
        x, y, w, h = r["crop"]
        assert x % 2 == y % 2 == w % 2 == h % 2 == 0
        m = cv2.imread(str(root / "aligned" / "phone" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert m.dtype == np.uint16 and np.array_equal(m, mosaic[y:y + h, x:x + w])   # the raw values, uncut phase
        d = read_image(root / "aligned" / "canon" / f"{name}.png")
        assert d.shape[:2] == m.shape                                              # sensor resolution
        # the record carries the residual field the DSLR was warped with, and aligned_to_dslr applies it
        from dpedkit.align.geometry import aligned_to_dslr, apply_h
        from dpedkit.align.warp import SplineField
        assert r["warp"]["type"] == "bspline" and r["residual"]["n"] > 12 and r["residual"]["p95"] < 1.0
        xy = np.array([[5.0, 7.0], [w / 2, h / 2], [w - 3.0, h - 2.0]])
        q = xy + (x, y)
        f = SplineField.from_dict(r["warp"]["params"])(q)
        assert np.abs(f).max() > 1e-4                                  # a field that changes the mapping
        got = aligned_to_dslr(r, xy)
        np.testing.assert_allclose(got, apply_h(np.linalg.inv(np.array(r["homography"])), q + f), atol=1e-9)
        assert np.abs(got - apply_h(np.linalg.inv(H), q)).max() < 1.0 * 960 / PHONE_SIZE[0]   # DSLR px: the truth
    assert recs["a"]["cfa_pattern"] == "RGGB" and recs["b"]["cfa_pattern"] == "GBRG"
    assert recs["b"]["black_level"] == [256.0] * 4 and recs["b"]["white_level"] == 4095


def test_zrr_layout_is_what_pynet_reads(raw_aligned, tmp_path):
    from dpedkit.patches.stage import PatchOptions, cut_patches
    from dpedkit.patches.search import SearchOptions
    root, truth, _ = raw_aligned
    S = 96
    opts = PatchOptions(layout="zrr", search=SearchOptions(size=S), test_photos=1, jobs=1, progress=False)
    summary = cut_patches(root / "aligned", tmp_path / "ds", opts, log=lambda *_: None)
    ds = tmp_path / "ds"
    assert summary.problems == 0 and summary.patches["train"] >= 8 and summary.patches["test"] >= 4, summary.lines()
    meta = json.loads((ds / "raw.json").read_text())
    assert meta["cfa_pattern"] == "RGGB" and meta["raw_values"] == "zurich" and meta["value_range"] == [0, 1023]
    assert meta["phone"] == "phone" and meta["phone_folder"] == "huawei"
    assert json.loads((ds / "dataset.json").read_text())["phone"] == "phone"      # the real camera folder
    # 10-bit "a" keeps its numbers; 12-bit "b" (black 256, white 4095) lands on 10-bit levels
    assert meta["written_levels"]["a"] == {"black_level": [64.0] * 4, "white_level": 1023.0}
    assert meta["written_levels"]["b"]["black_level"] == [63.953] * 4     # 256 · 1023 / 4095
    # the exposure each photo's rendering used, from the aligned mosaic itself
    for name, (black, white) in {"a": (64, 1023), "b": (256, 4095)}.items():
        m = read_mosaic_png(root / "aligned" / "phone" / f"{name}.png", read_records(root / "aligned" / MANIFEST)[name])
        assert meta["exposure_levels"][name] == pytest.approx(exposure_level(m)) and 0.05 < exposure_level(m) < 1.5
    rows = list(__import__("csv").DictReader(open(ds / "patches.csv")))
    aligned_mosaics = {n: cv2.imread(str(root / "aligned" / "phone" / f"{n}.png"), cv2.IMREAD_UNCHANGED) for n in truth}
    levels = {"a": (64, 1023), "b": (256, 4095)}
    checked = 0
    for r in rows:
        split, i, name, x, y = r["split"], int(r["index"]), r["name"], int(r["x"]), int(r["y"])
        raw_png = cv2.imread(str(ds / split / "huawei_raw" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        assert raw_png.shape == (S, S) and raw_png.dtype == np.uint16 and raw_png.max() <= 1023
        # never resampled: the aligned mosaic at an RGGB site, in the published dataset's values
        src = aligned_mosaics[name]
        assert pattern_at(["RGGB", "GBRG"][name == "b"], x, y) == "RGGB"
        black, white = levels[name]
        want = src[y:y + S, x:x + S] if white == 1023 else np.rint(src[y:y + S, x:x + S] * (1023 / 4095))
        assert np.array_equal(raw_png, want) and np.array_equal(raw_png, to_zurich_values(src[y:y + S, x:x + S], white))
        packed, rgb = pynet_load(ds, split, i)
        assert packed.shape == (S // 2, S // 2, 4) and rgb.shape == (S, S, 3) and packed.max() <= 1.0
        c = luminance_corr(simple_rgb(packed), rgb)
        assert c > 0.9, (name, i, c)
        checked += 1
    assert checked == summary.patches["train"] + summary.patches["test"]
    # the same quality fields as the DPED layout: the verified search's model and residual per patch and window
    assert all(r["model"] in ("shift", "rotation") and 0 <= float(r["residual"]) <= 0.75 for r in rows)
    report = json.loads((ds / "patches_report.json").read_text())
    for ph in report["photos"]:
        assert len(ph["window_map"]) == len(ph["window_residual"]) == ph["windows"] == ph["grid"]["cols"] * ph["grid"]["rows"]
        assert ph["window_map"].count("a") == ph["accepted"] == sum(v is not None for v in ph["window_residual"])
    full = list((ds / "test" / "huawei_full_resolution").glob("*.png"))
    assert len(full) == 1
    fm = cv2.imread(str(full[0]), cv2.IMREAD_UNCHANGED)
    src = aligned_mosaics[full[0].stem]
    assert fm.dtype == np.uint16 and fm.shape == src.shape and fm.max() <= 1023       # the whole aligned crop
    if full[0].stem == "b":           # GBRG: R sits at odd rows; the last row mirrors the one two above
        assert np.array_equal(fm[:-1], to_zurich_values(src[1:], 4095)) and np.array_equal(fm[-1], fm[-3])
    else:
        assert np.array_equal(fm, src)
    # native values: the same windows, the camera's numbers
    opts = PatchOptions(layout="zrr", raw_values="native", search=SearchOptions(size=S), test_photos=1, jobs=1,
                        progress=False)
    cut_patches(root / "aligned", tmp_path / "nat", opts, log=lambda *_: None)
    meta = json.loads((tmp_path / "nat" / "raw.json").read_text())
    assert meta["raw_values"] == "native" and meta["levels"]["b"]["white_level"] == 4095
    r = rows[0]
    nat = cv2.imread(str(tmp_path / "nat" / r["split"] / "huawei_raw" / f"{r['index']}.png"), cv2.IMREAD_UNCHANGED)
    x, y = int(r["x"]), int(r["y"])
    assert np.array_equal(nat, aligned_mosaics[r["name"]][y:y + S, x:x + S])
    with pytest.raises(ValueError, match="layout zrr"):
        cut_patches(root / "aligned", tmp_path / "dped", PatchOptions(jobs=1, progress=False), log=lambda *_: None)
    # what dpedkit train reads: the learned ISP trains on the default (zurich-valued) dataset,
    # one step per level; the native-valued one is refused with what to do
    from dpedkit.train.config import TrainConfig
    from dpedkit.train.loop import train
    from dpedkit.train.raw_data import RawDataError
    cfg = dict(model="pynet", recipe="pynet-cpu-test", stage_steps=1, device="cpu", keep_checkpoints=0)
    trained = train(TrainConfig(data_dir=str(ds), phone="huawei_raw", dslr="canon", out=str(tmp_path / "run"), **cfg),
                    log=lambda *_: None, progress=False)
    assert [r["level"] for r in trained] == [5, 5, 4, 3, 2, 1, 0] and all(np.isfinite(r["test_psnr"]) for r in trained)
    with pytest.raises(RawDataError, match="--raw-values zurich"):
        train(TrainConfig(data_dir=str(tmp_path / "nat"), phone="huawei_raw", dslr="canon", out=str(tmp_path / "run2"),
                          **cfg),
              log=lambda *_: None, progress=False)


def test_heic_and_rgb_raw_pairs_go_through_align_and_patches(tmp_path, dslr_photos):
    """A HEIC phone and a RAW phone rendered to RGB (--phone-raw rgb) → DPED layout → the trainer's loader."""
    from dpedkit.align.stage import AlignRunOptions, align_folder
    from dpedkit.patches.stage import PatchOptions, cut_patches
    from dpedkit.patches.search import SearchOptions
    from dpedkit.testing.synth import render_phone
    raw = tmp_path / "raw"
    dslr = dslr_photos["coffee"]
    rng = np.random.default_rng(5)
    H = random_homography((960, 640), PHONE_SIZE, rng)
    (raw / "phone").mkdir(parents=True)
    write_heic(raw / "phone" / "h.heic", render_phone(dslr, H, PHONE_SIZE, rng, jpeg_quality=None), quality=92)
    write_image(raw / "dslr" / "h.jpg", dslr)
    H2, _ = raw_pair(raw, "r", dslr_photos["astronaut"], "BGGR", 12, 128, 6, dslr_dir="dslr")
    s = align_folder(raw, tmp_path / "al", AlignRunOptions(jobs=1, progress=False, phone_raw="rgb"), log=lambda *_: None)
    assert s.counts["ok"] == 2, s.lines()
    recs = read_records(tmp_path / "al" / "manifest.jsonl")
    assert corner_error(np.array(recs["h"]["homography"]), H, PHONE_SIZE) < 1.0
    assert corner_error(np.array(recs["r"]["homography"]), H2, PHONE_SIZE) < 1.0
    ps = cut_patches(tmp_path / "al", tmp_path / "ds", PatchOptions(search=SearchOptions(size=64), test_photos=1,
                                                                    jobs=1, progress=False), log=lambda *_: None)
    assert ps.patches["train"] > 5 and ps.patches["test"] > 5, ps.lines()
    # training reads this DPED layout unchanged (tests/test_train.py); one iteration costs ~40 s here, so not repeated
    from dpedkit.train.data import load_split
    ph, ds = load_split(tmp_path / "ds" / "phone", "phone", "canon", "train", size=None, jobs=1)
    assert ph.shape == ds.shape and ph.shape[0] == ps.patches["train"]


def test_zrr_search_measures_a_known_dslr_shift_and_rejects_a_wrong_scene(raw_aligned):
    """Deliberate errors of known size: the aligned DSLR shifted by 3 px is found at dx = 3
    (within 0.2 px) with the mosaic window unmoved on R sites; the DSLR photo of another
    scene reaches the threshold in no window."""
    from dpedkit.patches.search import SearchOptions, ncc
    from dpedkit.patches.zrr import dslr_patch, read_mosaic_png, zrr_windows
    root, _, _ = raw_aligned
    rec = read_records(root / "aligned" / "manifest.jsonl")["b"]
    m = read_mosaic_png(root / "aligned" / "phone" / "b.png", rec)
    h, w = m.data.shape
    other = cv2.resize(read_image(root / "aligned" / "canon" / "a.png"), (w, h), interpolation=cv2.INTER_AREA)
    for dslr, shift in ((read_image(root / "aligned" / "canon" / "b.png"), 3), (other, 0)):
        moved = np.roll(dslr, shift, axis=1)
        # the DPED-style search: this measures its correlation on a wrong scene (the verified
        # search rejects every such window before any score)
        o = SearchOptions(size=96, max_angle=0, method="exhaustive", verify=False)
        rendering, wins = zrr_windows(m, moved, o)
        scores, dxs = [], []
        for X, Y, win in wins:
            assert (X % 2, Y % 2) == (0, 1)                  # GBRG: R sits at odd rows
            if win.status == "ok":
                scores.append(ncc(rendering[Y:Y + 96, X:X + 96], dslr_patch(moved, X, Y, win, 96)))
                dxs.append(win.dx)
        if shift:
            assert np.median(scores) > 0.9 and abs(np.median(dxs) - shift) < 0.2, (np.median(scores), np.median(dxs))
        else:
            assert len(scores) >= 6 and max(scores) < 0.9, max(scores)


def test_full_resolution_keeps_the_whole_sensor_the_dslr_covers(tmp_path, dslr_photos):
    """A DSLR photo wider than the phone's view on every side: the aligned crop is the whole
    sensor and so is the full-resolution test mosaic (PyNET's visual tests cut a fixed
    2944×3968 window of the P20's 2976×3968 sensor: no pixel may be lost), GBRG sensor included."""
    from dpedkit.align.stage import AlignRunOptions, align_folder
    from dpedkit.patches.stage import PatchOptions, cut_patches
    from dpedkit.patches.search import SearchOptions
    raw = tmp_path / "raw"
    dslr = dslr_photos["coffee"]
    theta = np.deg2rad(0.5)      # 0.72 phone px per DSLR px: the DSLR frame reaches 57 px beyond each side
    H = np.array([[0.72 * np.cos(theta), -0.72 * np.sin(theta), -57.0],
                  [0.72 * np.sin(theta), 0.72 * np.cos(theta), -39.0], [0, 0, 1]])
    mosaic = simulate_raw_phone(dslr, H, PHONE_SIZE, "GBRG", 10, 64, np.random.default_rng(3))
    (raw / "phone").mkdir(parents=True)
    write_dng(raw / "phone" / "f.dng", mosaic, "GBRG", 64, 1023)
    write_image(raw / "canon" / "f.jpg", dslr, quality=95)
    s = align_folder(raw, tmp_path / "al", AlignRunOptions(jobs=1, progress=False), log=lambda *_: None)
    rec = read_records(tmp_path / "al" / "manifest.jsonl")["f"]
    assert s.counts["ok"] == 1 and rec["crop"] == [0, 0, *PHONE_SIZE], rec["crop"]
    cut_patches(tmp_path / "al", tmp_path / "ds", PatchOptions(layout="zrr", search=SearchOptions(size=96),
                                                               test_photos=1, jobs=1, progress=False), log=lambda *_: None)
    fm = cv2.imread(str(tmp_path / "ds" / "test" / "huawei_full_resolution" / "f.png"), cv2.IMREAD_UNCHANGED)
    assert fm.shape == (PHONE_SIZE[1], PHONE_SIZE[0])
    assert np.array_equal(fm[:-1], mosaic[1:])      # R at (0,0): sensor row 1 on top, 10-bit values unchanged
