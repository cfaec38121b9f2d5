"""HEIC and camera RAW in; RAW-to-RGB datasets (Zurich RAW-to-RGB / PyNET layout) out.

Every fixture is made here: DNG files with tifffile (tests/camera_writer.py), HEIC with
pillow-heif, from real photos of scikit-image warped by known homographies.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

import cv2
import numpy as np
import pytest

from camera_writer import SENSOR_WB, simulate_raw_phone, write_dng, write_heic
from dpedkit.align.geometry import corner_error
from dpedkit.camera_files import capture_time
from dpedkit.imageio import ImageReadError, list_images, other_files, read_image, write_image
from dpedkit.raw import (RawMosaicError, even_rect, pattern_at, read_mosaic, rggb_offset, to_pynet_values)
from dpedkit.synth import random_homography

PHONE_SIZE = (576, 384)    # sensor (w, h)


# --- PyNET's loader, re-implemented minimally (PyNET-PyTorch load_data.py) --------------------

def extract_bayer_channels(raw):
    ch_B = raw[1::2, 1::2]
    ch_Gb = raw[0::2, 1::2]
    ch_R = raw[0::2, 0::2]
    ch_Gr = raw[1::2, 0::2]
    return np.dstack((ch_B, ch_Gb, ch_R, ch_Gr)).astype(np.float32) / (4 * 255)


def pynet_load(root, split, phone, dslr, i):
    raw = cv2.imread(str(root / split / f"{phone}_raw" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
    rgb = cv2.imread(str(root / split / dslr / f"{i}.jpg"))[..., ::-1].astype(np.float32) / 255
    return extract_bayer_channels(raw), rgb


def simple_rgb(packed):
    """A simple demosaic of PyNET's 4 channels: white balance, 2× nearest upsampling, sRGB-ish gamma."""
    B, Gb, R, Gr = (packed[..., k] for k in range(4))
    rgb = np.dstack([R * SENSOR_WB[0], (Gb + Gr) / 2 * SENSOR_WB[1], B * SENSOR_WB[2]])
    rgb = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    return np.clip(rgb / 0.7, 0, 1) ** (1 / 2.2)


def corr(a, b):
    a, b = cv2.cvtColor(a.astype(np.float32), cv2.COLOR_RGB2GRAY), cv2.cvtColor(b.astype(np.float32), cv2.COLOR_RGB2GRAY)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dslr_photos():
    from dpedkit.synth import sample_images
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


# --- reading -------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,bits,black", [("RGGB", 10, 64), ("GBRG", 12, 256), ("BGGR", 12, 200),
                                                ("GRBG", 10, 16)])
def test_dng_reads_back_exactly(tmp_path, pattern, bits, black):
    rng = np.random.default_rng(bits)
    m = rng.integers(0, 2 ** bits, (40, 62)).astype(np.uint16)
    write_dng(tmp_path / "a.dng", m, pattern, black, 2 ** bits - 1, orientation=6)
    got = read_mosaic(tmp_path / "a.dng")
    assert np.array_equal(got.data, m)
    assert got.pattern == pattern and got.black == (black,) * 4 and got.white == 2 ** bits - 1
    np.testing.assert_allclose(got.wb, SENSOR_WB, rtol=1e-5)
    assert got.flip == 6                                       # the mosaic itself stays in sensor order
    rgb = read_image(tmp_path / "a.dng")                       # the RGB rendering is oriented
    assert rgb.shape == (62, 40, 3) and rgb.dtype == np.uint8


def test_bayer_phase_and_pynet_values():
    for p in ("RGGB", "BGGR", "GRBG", "GBRG"):
        ox, oy = rggb_offset(p)
        assert pattern_at(p, ox, oy) == "RGGB" and pattern_at(p, ox + 2, oy + 4) == "RGGB"
        assert pattern_at(p, 0, 0) == p
    assert rggb_offset("BGGR") == (1, 1) and rggb_offset("GRBG") == (1, 0) and rggb_offset("GBRG") == (0, 1)
    assert pattern_at("RGGB", 1, 0) == "GRBG" and pattern_at("RGGB", 0, 1) == "GBRG"
    assert even_rect((3, 2, 10, 9)) == (4, 2, 8, 8)
    v = np.array([[64, 1023], [543, 20]], np.uint16)
    # black 64, white 1023: (543-64)/959*1020 = 509.47 → 509; below black clips to 0
    assert to_pynet_values(v, (64,) * 4, 1023).tolist() == [[0, 1020], [509, 0]]
    # per-position black seen from an odd crop offset
    assert to_pynet_values(np.full((2, 2), 100, np.uint16), (10, 20, 30, 40), 1000, (1, 0)).tolist() == \
        [[round(80 / 980 * 1020), round(90 / 990 * 1020)], [round(60 / 960 * 1020), round(70 / 970 * 1020)]]


def test_heic_orientation_and_capture_time(tmp_path, samples):
    img = samples["chelsea"][:120, :160]
    write_heic(tmp_path / "IMG_1.HEIC", img, dt.datetime(2024, 5, 1, 12, 0, 3), orientation=6)
    got = read_image(tmp_path / "IMG_1.HEIC")
    assert got.shape == (160, 120, 3)                                    # rotated upright, once
    assert corr(got.astype(np.float32), np.rot90(img, -1).astype(np.float32)) > 0.98
    assert capture_time(tmp_path / "IMG_1.HEIC") == dt.datetime(2024, 5, 1, 12, 0, 3, tzinfo=dt.timezone.utc).timestamp()
    assert list_images(tmp_path) == [tmp_path / "IMG_1.HEIC"]


def test_undecodable_files_say_what_to_do(tmp_path, monkeypatch):
    import tifffile
    m = np.random.default_rng(0).integers(0, 1023, (32, 48)).astype(np.uint16)
    write_dng(tmp_path / "jxl.dng", m, "RGGB", 64, 1023)
    with tifffile.TiffFile(tmp_path / "jxl.dng") as tf:     # mark it JPEG XL, as iOS 18 ProRAW writes
        off = tf.pages[0].tags[259].valueoffset
    with open(tmp_path / "jxl.dng", "r+b") as f:
        f.seek(off)
        f.write((52546).to_bytes(2, "little"))
    for read in (read_image, read_mosaic):
        with pytest.raises((ImageReadError, RawMosaicError), match="JPEG XL.*LibRaw.*Export"):
            read(tmp_path / "jxl.dng")
    (tmp_path / "junk.nef").write_bytes(b"II*\x00" + b"\x00" * 200)
    with pytest.raises(ImageReadError, match="LibRaw"):
        read_image(tmp_path / "junk.nef")
    (tmp_path / "IMG_1.AAE").write_text("<plist/>")
    (tmp_path / "scan.psd").write_bytes(b"8BPS")
    reasons = dict((p.name, r) for p, r in other_files(tmp_path))
    assert "sidecar" in reasons["IMG_1.AAE"] and "convert it" in reasons["scan.psd"]
    monkeypatch.setitem(sys.modules, "rawpy", None)          # the extra not installed
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    with pytest.raises(ImageReadError, match=r"pip install 'dpedkit\[raw\]'"):
        read_image(tmp_path / "jxl.dng")
    (tmp_path / "a.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(ImageReadError, match=r"pip install 'dpedkit\[heic\]'"):
        read_image(tmp_path / "a.heic")


def test_pair_by_time_falls_back_to_names(tmp_path, samples):
    from dpedkit.align.pairing import pair_by_time
    raw = tmp_path / "raw"
    t0 = dt.datetime(2024, 5, 1, 12, 0, 0)
    img = samples["coffee"][:64, :96]
    (raw / "phone").mkdir(parents=True)
    write_heic(raw / "phone" / "IMG_1.HEIC", img, t0)
    write_dng(raw / "phone" / "IMG_2.dng", np.zeros((32, 48), np.uint16), "RGGB", 0, 1023, when=t0 + dt.timedelta(60))
    write_heic(raw / "phone" / "IMG_3.HEIC", img)                           # no capture time
    write_image(raw / "dslr" / "C_1.jpg", img)
    from PIL import Image
    for name, t in (("C_1.jpg", t0 + dt.timedelta(seconds=1)), ("C_2.jpg", t0 + dt.timedelta(60, 0.5))):
        ex = Image.Exif()
        ex.get_ifd(0x8769)[0x9003] = t.strftime("%Y:%m:%d %H:%M:%S")
        Image.fromarray(img).save(raw / "dslr" / name, exif=ex)
    write_image(raw / "dslr" / "img_3.jpg", img)                            # no time either: same stem
    pairs = {(p.phone, p.dslr): p.paired_by for p in pair_by_time(raw, "phone", "dslr")}
    assert pairs == {("phone/IMG_1.HEIC", "dslr/C_1.jpg"): "time", ("phone/IMG_2.dng", "dslr/C_2.jpg"): "time",
                     ("phone/IMG_3.HEIC", "dslr/img_3.jpg"): "name"}


# --- RAW → aligned mosaic → ZRR layout ----------------------------------------------------------------

@pytest.fixture(scope="module")
def raw_aligned(tmp_path_factory, dslr_photos):
    """Two simulated RAW phones (RGGB 10-bit, GBRG 12-bit) against DSLR JPEGs, aligned."""
    from dpedkit.align.run import AlignRunOptions, align_folder
    root = tmp_path_factory.mktemp("rawset")
    raw = root / "raw"
    truth = {"a": raw_pair(raw, "a", dslr_photos["coffee"], "RGGB", 10, 64, 1),
             "b": raw_pair(raw, "b", dslr_photos["astronaut"], "GBRG", 12, 256, 2)}
    (raw / "phone" / "a.xmp").write_text("<x/>")                             # a sidecar: reported, not a problem
    summary = align_folder(raw, root / "aligned", AlignRunOptions(jobs=1, progress=False), log=lambda *_: None)
    return root, truth, summary


def test_raw_align_recovers_the_homography_and_keeps_the_mosaic(raw_aligned):
    from dpedkit.manifest import read_records
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
    assert recs["a"]["cfa_pattern"] == "RGGB" and recs["b"]["cfa_pattern"] == "GBRG"
    assert recs["b"]["black_level"] == [256.0] * 4 and recs["b"]["white_level"] == 4095


def test_zrr_layout_is_what_pynet_reads(raw_aligned, tmp_path):
    from dpedkit.patches.run import PatchOptions, cut_patches
    from dpedkit.patches.search import SearchOptions
    root, truth, _ = raw_aligned
    S = 96
    opts = PatchOptions(layout="zrr", search=SearchOptions(size=S), test_photos=1, jobs=1, progress=False)
    summary = cut_patches(root / "aligned", tmp_path / "ds", opts, log=lambda *_: None)
    ds = tmp_path / "ds"
    assert summary.problems == 0 and summary.counts["train"] >= 8 and summary.counts["test"] >= 4, summary.lines()
    meta = json.loads((ds / "raw.json").read_text())
    assert meta["cfa_pattern"] == "RGGB" and meta["raw_values"] == "pynet" and meta["white_level"] == 1020
    rows = list(__import__("csv").DictReader(open(ds / "patches.csv")))
    aligned_mosaics = {n: cv2.imread(str(root / "aligned" / "phone" / f"{n}.png"), cv2.IMREAD_UNCHANGED) for n in truth}
    levels = {"a": (64, 1023), "b": (256, 4095)}
    checked = 0
    for r in rows:
        split, i, name, x, y = r["split"], int(r["index"]), r["name"], int(r["x"]), int(r["y"])
        raw_png = cv2.imread(str(ds / split / "phone_raw" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        assert raw_png.shape == (S, S) and raw_png.dtype == np.uint16 and raw_png.max() <= 1020
        # never resampled: the aligned mosaic at an RGGB site, in PyNET's values
        src = aligned_mosaics[name]
        assert pattern_at(["RGGB", "GBRG"][name == "b"], x, y) == "RGGB"
        black, white = levels[name]
        assert np.array_equal(raw_png, to_pynet_values(src[y:y + S, x:x + S], (black,) * 4, white))
        packed, rgb = pynet_load(ds, split, "phone", "canon", i)
        assert packed.shape == (S // 2, S // 2, 4) and rgb.shape == (S, S, 3) and packed.max() <= 1.0
        c = corr(simple_rgb(packed), rgb)
        assert c > 0.9, (name, i, c)
        checked += 1
    assert checked == summary.counts["train"] + summary.counts["test"]
    full = list((ds / "test" / "phone_full_resolution").glob("*.png"))
    assert len(full) == 1
    fm = cv2.imread(str(full[0]), cv2.IMREAD_UNCHANGED)
    assert fm.dtype == np.uint16 and fm.shape[0] % 2 == 0 and fm.max() <= 1020
    # native values: the same windows, the camera's numbers
    opts = PatchOptions(layout="zrr", raw_values="native", search=SearchOptions(size=S), test_photos=1, jobs=1,
                        progress=False)
    cut_patches(root / "aligned", tmp_path / "nat", opts, log=lambda *_: None)
    meta = json.loads((tmp_path / "nat" / "raw.json").read_text())
    assert meta["raw_values"] == "native" and meta["levels"]["b"]["white_level"] == 4095
    r = rows[0]
    nat = cv2.imread(str(tmp_path / "nat" / r["split"] / "phone_raw" / f"{r['index']}.png"), cv2.IMREAD_UNCHANGED)
    x, y = int(r["x"]), int(r["y"])
    assert np.array_equal(nat, aligned_mosaics[r["name"]][y:y + S, x:x + S])
    with pytest.raises(ValueError, match="layout zrr"):
        cut_patches(root / "aligned", tmp_path / "dped", PatchOptions(jobs=1, progress=False), log=lambda *_: None)


def test_heic_and_rgb_raw_pairs_go_through_align_and_patches(tmp_path, dslr_photos):
    """A HEIC phone and a RAW phone rendered to RGB (--phone-raw rgb) → DPED layout → the trainer's loader."""
    from dpedkit.align.run import AlignRunOptions, align_folder
    from dpedkit.patches.run import PatchOptions, cut_patches
    from dpedkit.patches.search import SearchOptions
    from dpedkit.synth import render_phone
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
    from dpedkit.manifest import read_records
    recs = read_records(tmp_path / "al" / "manifest.jsonl")
    assert corner_error(np.array(recs["h"]["homography"]), H, PHONE_SIZE) < 1.0
    assert corner_error(np.array(recs["r"]["homography"]), H2, PHONE_SIZE) < 1.0
    ps = cut_patches(tmp_path / "al", tmp_path / "ds", PatchOptions(search=SearchOptions(size=64), test_photos=1,
                                                                    jobs=1, progress=False), log=lambda *_: None)
    assert ps.counts["train"] > 5 and ps.counts["test"] > 5, ps.lines()
    # training reads this DPED layout unchanged (tests/test_train.py); one iteration costs ~40 s here, so not repeated
    from dpedkit.train.data import load_split
    ph, ds = load_split(tmp_path / "ds" / "phone", "phone", "dslr", "train", size=None, jobs=1)
    assert ph.shape == ds.shape and ph.shape[0] == ps.counts["train"]


def test_enhance_reports_every_file_of_a_folder(tmp_path, samples):
    import torch
    from click.testing import CliRunner
    from dpedkit.cli import main
    from dpedkit.train.networks import Generator
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"generator": Generator().eval().state_dict(), "iteration": 1}, run / "checkpoints" / "last.pt")
    src = tmp_path / "in"
    src.mkdir()
    write_heic(src / "a.HEIC", samples["coffee"][:64, :96])
    write_dng(src / "b.dng", np.random.default_rng(0).integers(64, 1023, (48, 64)).astype(np.uint16), "RGGB", 64, 1023)
    (src / "a.AAE").write_text("<plist/>")
    (src / "c.psd").write_bytes(b"8BPS")
    r = CliRunner().invoke(main, ["enhance", str(run), str(src), "-o", str(tmp_path / "out")])
    assert "4 photos: 2 ok, 1 failed, 1 ignored" in r.output, r.output
    assert r.exit_code == 1 and "c.psd" in r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "b.jpg"]


def test_zrr_search_measures_a_known_dslr_shift_and_rejects_a_wrong_scene(raw_aligned):
    """Deliberate errors of known size: the aligned DSLR shifted by 3 px is found at dx = 3
    (within 0.2 px) with the mosaic window unmoved on R sites; the DSLR photo of another
    scene reaches the threshold in no window."""
    from dpedkit.manifest import read_records
    from dpedkit.patches.search import SearchOptions, ncc
    from dpedkit.patches.zrr import dslr_patch, read_mosaic_png, zrr_windows
    root, _, _ = raw_aligned
    rec = read_records(root / "aligned" / "manifest.jsonl")["b"]
    m = read_mosaic_png(root / "aligned" / "phone" / "b.png", rec)
    h, w = m.data.shape
    other = cv2.resize(read_image(root / "aligned" / "canon" / "a.png"), (w, h), interpolation=cv2.INTER_AREA)
    for dslr, shift in ((read_image(root / "aligned" / "canon" / "b.png"), 3), (other, 0)):
        moved = np.roll(dslr, shift, axis=1)
        rendering, wins = zrr_windows(m, moved, SearchOptions(size=96, max_angle=0))
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
