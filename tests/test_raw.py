"""Bayer mosaics from DNG files: exact read-back of values, pattern and levels; the crop
phase that puts R at (0,0); PyNET's value convention."""

from __future__ import annotations


import numpy as np
import pytest

from dpedkit.imageio import read_image
from dpedkit.raw import even_rect, pattern_at, read_mosaic, rggb_offset, to_pynet_values
from tests.camera_writer import SENSOR_WB, write_dng


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


# what each real RAW file of ../shared/camera_files gives: (rows, columns) of the RGB rendering
# or the reason it fails; the mosaic read (RAW-to-RGB) likewise
STUB = "metadata only or is truncated"
REAL_RAW = {"Blackmagic.dng": ((2176, 4128), (2176, 4128)),            # a real Bayer DNG
            "Nikon_uncompressed.nef": ((593, 869), "linear.*--phone-raw rgb"),   # a 16-bit RGB film scan
            "canon_eos_6d.dng": ((816, 1224), "linear.*already demosaiced.*ProRAW.*--phone-raw rgb.*CFA"),
            "DNG.dng": (STUB, STUB), "Panasonic.rw2": (STUB, STUB),
            "CanonRaw.cr3": ("end of the file.*the metadata only, or is truncated",) * 2}


@pytest.mark.parametrize("name", sorted(REAL_RAW))
def test_real_raw_files_decode_or_say_why(name):
    from dpedkit.imageio import ImageReadError
    from dpedkit.raw import RawMosaicError
    from tests.test_camera_files import camera_file
    path = camera_file(name)
    rgb_want, mosaic_want = REAL_RAW[name]
    if isinstance(rgb_want, str):
        with pytest.raises(ImageReadError, match=rgb_want):
            read_image(path)
    elif name != "Blackmagic.dng":     # its 9 MP AHD rendering takes seconds; its mosaic is checked below
        rgb = read_image(path)
        assert rgb.shape[:2] == rgb_want
        assert 20 < rgb.mean() < 200 and rgb.std() > 20       # an image, neither flat nor blown white
    if isinstance(mosaic_want, str):
        with pytest.raises(RawMosaicError, match=mosaic_want):
            read_mosaic(path)
    else:
        m = read_mosaic(path)
        assert m.data.shape == mosaic_want and m.pattern == "RGGB" and m.black == (512.0,) * 4
        lo, hi = np.percentile(m.data[::8, ::8], [1, 99])
        assert lo > 300 and hi > 10 * lo                         # a scene, above the black level


def test_truncated_real_raw_says_truncated(tmp_path):
    from dpedkit.imageio import ImageReadError
    from tests.test_camera_files import camera_file
    data = camera_file("Blackmagic.dng").read_bytes()
    (tmp_path / "cut.dng").write_bytes(data[:len(data) * 6 // 10])     # an interrupted copy
    with pytest.raises(ImageReadError, match="end of the file before the end of the image data: it is truncated"):
        read_image(tmp_path / "cut.dng")
