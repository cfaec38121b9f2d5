"""Reading the files phones and cameras write: HEIC/HEIF, camera RAW/DNG, their capture
time and orientation, and every other file of a camera folder reported with a reason.
Fixtures are written by the tests (tests/camera_writer.py), none committed."""

from __future__ import annotations

import datetime as dt
import sys

import numpy as np
import pytest

from dpedkit.camera_files import capture_time
from dpedkit.imageio import ImageReadError, list_images, other_files, read_image, write_image
from dpedkit.raw import RawMosaicError, read_mosaic
from tests.camera_writer import luminance_corr, write_dng, write_heic


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
