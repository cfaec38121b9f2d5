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
