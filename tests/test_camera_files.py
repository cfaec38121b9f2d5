"""Reading the files phones and cameras write: HEIC/HEIF, camera RAW/DNG, their capture
time and orientation, and every other file of a camera folder reported with a reason.
Fixtures are written by the tests (tests/camera_writer.py), none committed; the real files
phones and cameras wrote are read from ../shared/camera_files (its README says what each is)
and their tests skip when that folder is absent."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pytest

from dpedkit.camera_files import capture_time
from dpedkit.imageio import ImageReadError, list_images, other_files, read_image, write_image
from dpedkit.raw import RawMosaicError, read_mosaic
from tests.camera_writer import luminance_corr, write_dng, write_heic


def _camera_files_dir() -> Path | None:
    repo = Path(__file__).resolve().parents[1]
    for d in (repo / ".." / "shared" / "camera_files", repo / ".." / ".." / "shared" / "camera_files"):
        if d.is_dir():      # the main checkout's sibling, or a worktree's one level up
            return d.resolve()
    return None


CAMERA_FILES = _camera_files_dir()


def camera_file(name: str) -> Path:
    """A real camera file by name (skips the test when the folder or the file is absent)."""
    if CAMERA_FILES is None or not (CAMERA_FILES / name).is_file():
        pytest.skip(f"real camera file {name} not available (../shared/camera_files)")
    return CAMERA_FILES / name


def _utc(*a) -> float:
    return dt.datetime(*a, tzinfo=dt.timezone.utc).timestamp()


# (width, height) as a viewer shows the photo, and the EXIF DateTimeOriginal + SubSecTimeOriginal
REAL_HEIC = {"iphone_7.heic": ((3024, 4032), _utc(2018, 9, 10, 12, 16, 13, 23000)),          # EXIF 6 only
             "iphone_15_pro.heic": ((3024, 4032), _utc(2023, 10, 31, 11, 44, 43, 432000)),   # irot + EXIF 6
             "samsung_sm-g975f.heic": ((3024, 4032), _utc(2020, 6, 30, 11, 27, 59)),         # irot + EXIF 6
             "xiaomi.heic": ((2592, 1944), _utc(2023, 4, 27, 19, 44, 18, 732000))}           # no rotation


@pytest.mark.parametrize("name", sorted(REAL_HEIC))
def test_real_heic_upright_with_capture_time(name):
    from dpedkit.camera_files import heif_primary_transforms
    path = camera_file(name)
    (w, h), when = REAL_HEIC[name]
    img = read_image(path)
    assert (img.shape[1], img.shape[0]) == (w, h)
    assert capture_time(path) == pytest.approx(when, abs=1e-3)
    if name == "iphone_7.heic":      # the EXIF tag alone rotates it: sky at the top, not at a side
        assert heif_primary_transforms(path.read_bytes()) == []
        band = lambda a: float(a[..., 2].mean() - a[..., 0].mean())   # noqa: E731 blue minus red
        top, bottom = band(img[:h // 10].astype(float)), band(img[-h // 10:].astype(float))
        left, right = band(img[:, :w // 10].astype(float)), band(img[:, -w // 10:].astype(float))
        assert top > 80 and bottom < 0 and top > 2 * max(left, right)
    else:
        assert heif_primary_transforms(path.read_bytes()) == ([] if name == "xiaomi.heic" else [("irot", 3)])


@pytest.mark.parametrize("name,reason", [
    ("wrong.heic", "not a HEIF file: it is a JPEG.*rename it to .jpg"),
    ("fixture-msf1.heic", "image sequence.*no still image.*export one frame")])
def test_real_non_still_heic_fails_with_reason(name, reason):
    with pytest.raises(ImageReadError, match=reason):
        read_image(camera_file(name))


def test_heic_orientation_and_capture_time(tmp_path, samples):
    img = samples["chelsea"][:120, :160]
    write_heic(tmp_path / "IMG_1.HEIC", img, dt.datetime(2024, 5, 1, 12, 0, 3), orientation=6)
    got = read_image(tmp_path / "IMG_1.HEIC")
    assert got.shape == (160, 120, 3)                                    # rotated upright, once
    assert luminance_corr(got.astype(np.float32), np.rot90(img, -1).astype(np.float32)) > 0.98
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


def test_enhance_reports_every_file_of_a_folder(tmp_path, samples):
    import torch
    from click.testing import CliRunner
    from dpedkit.cli import main
    from dpedkit.model.networks import Generator
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
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == ["a.jpg", "b.jpg"]


def test_enhance_over_real_bad_files_finishes_the_good_ones(tmp_path, samples, monkeypatch):
    """A linear DNG (its EXIF once stopped the run: "seek of closed file"), a metadata-only
    stub, a JPEG named .heic and an image sequence: each fails or succeeds alone, with its reason.
    The network is replaced by the identity: files, not pixels, are under test (and CPU time)."""
    import torch
    import dpedkit.enhance.stage
    monkeypatch.setattr(dpedkit.enhance.stage, "enhance_array", lambda g, img, *a, **k: img)
    from click.testing import CliRunner
    from dpedkit.cli import main
    from dpedkit.model.networks import Generator
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"generator": Generator().eval().state_dict(), "iteration": 1}, run / "checkpoints" / "last.pt")
    src = tmp_path / "in"
    src.mkdir()
    for name in ("canon_eos_6d.dng", "DNG.dng", "wrong.heic", "fixture-msf1.heic"):
        (src / name).symlink_to(camera_file(name))
    write_image(src / "z.jpg", samples["coffee"][:64, :96])
    r = CliRunner().invoke(main, ["enhance", str(run), str(src), "-o", str(tmp_path / "out")])
    assert "5 photos: 2 ok, 3 failed" in r.output, r.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == ["canon_eos_6d.jpg", "z.jpg"]
    for reason in ("metadata only or is truncated", "it is a JPEG image", "image sequence"):
        assert reason in r.output
    from PIL import Image
    with Image.open(tmp_path / "out" / "canon_eos_6d.jpg") as im:
        assert im.size == (1224, 816) and im.getexif()[0x0110] == "Canon EOS 6D"
