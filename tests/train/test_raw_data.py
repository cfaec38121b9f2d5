"""The streaming RAW-to-RGB dataset on a simulated ZRR folder (tests/train/zrr_sim.py): PyNET's
packing and per-level targets, folder names from the options / raw.json / the folders,
per-item reads from disk, bad files skipped."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from dpedkit.raw import RawMosaicError
from dpedkit.train.raw_data import (RawDataError, ZrrPatches, dslr_target, pack_bayer, unpack_bayer, zrr_folders)
from tests.train.zrr_sim import write_zrr


@pytest.fixture(scope="module")
def zrr(tmp_path_factory):
    root = tmp_path_factory.mktemp("zrr")
    write_zrr(root, size=64, n_train=12, n_test=4)
    return root


def test_pack_bayer_is_pynets_channel_order():
    # every site holds its own code: colour (R=1, Gb=2, Gr=3, B=4) ·100 + row·10 + column
    m = np.zeros((4, 6), np.uint16)
    for y in range(4):
        for x in range(6):
            m[y, x] = {(0, 0): 100, (0, 1): 200, (1, 0): 300, (1, 1): 400}[(y % 2, x % 2)] + 10 * y + x
    p = pack_bayer(m)
    assert p.shape == (4, 2, 3) and p.dtype == np.float32
    # PyNET's extract_bayer_channels: dstack((B, Gb, R, Gr)) / (4 * 255)
    assert np.allclose(p[0] * 1020, m[1::2, 1::2]) and np.allclose(p[1] * 1020, m[0::2, 1::2])
    assert np.allclose(p[2] * 1020, m[0::2, 0::2]) and np.allclose(p[3] * 1020, m[1::2, 0::2])
    assert np.allclose(p[2, 1, 2] * 1020, 100 + 10 * 2 + 4)        # R of the cell at row 2, column 4
    assert np.allclose(unpack_bayer(p), m)
    with pytest.raises(RawMosaicError, match="even size"):
        pack_bayer(m[:3])


def test_dslr_target_per_level_is_imresize_bilinear():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    assert np.array_equal(dslr_target(rgb, 0) * 255, rgb.transpose(2, 0, 1).astype(np.float32))
    for level in range(1, 6):
        t = dslr_target(rgb, level)
        assert t.shape == (3, 64 // 2 ** level, 96 // 2 ** level)
    # level 1: scipy.misc.imresize(rgb, 0.5) = Pillow's bilinear resize, rounded to 8 bits
    ref = np.asarray(Image.fromarray(rgb).resize((48, 32), Image.BILINEAR)).transpose(2, 0, 1) / 255
    assert np.allclose(dslr_target(rgb, 1), ref, atol=1e-6)
    # Pillow's bilinear widens its filter when shrinking: a 2x2 block average, not a point sample
    flat = np.kron(np.array([[0, 255], [255, 0]], np.uint8), np.ones((32, 32), np.uint8))
    one = np.dstack([flat] * 3)
    assert abs(dslr_target(one, 5)[0].mean() - 0.5) < 0.02


def test_items_per_level(zrr):
    for level, side in ((0, 64), (1, 32), (5, 2)):
        ds = ZrrPatches(zrr, "train", level)
        raw, dslr = ds[3]
        assert len(ds) == 12 and raw.shape == (4, 32, 32) and dslr.shape == (3, side, side)
        assert 0 <= raw.min() and raw.max() <= 1 and 0 <= dslr.min() and dslr.max() <= 1
    mosaic = cv2.imread(str(zrr / "train" / "huawei_raw" / "3.png"), cv2.IMREAD_UNCHANGED)
    assert np.allclose(raw.numpy(), pack_bayer(mosaic))


def test_folder_names(zrr, tmp_path):
    assert zrr_folders(zrr) == zrr_folders(zrr, "huawei_raw", "canon")       # raw.json's names
    other = tmp_path / "other"
    write_zrr(other, size=64, n_train=3, n_test=1, raw_dir="pixel_raw", dslr_dir="dslr", raw_json=False)
    f = zrr_folders(other)                                                    # guessed: the PNG and the JPEG folder
    assert (f.raw, f.dslr) == ("pixel_raw", "dslr")
    (other / "train" / "extra_raw").mkdir()
    cv2.imwrite(str(other / "train" / "extra_raw" / "0.png"), np.zeros((4, 4), np.uint16))
    with pytest.raises(RawDataError, match="cannot tell the raw patch folder.*extra_raw, pixel_raw"):
        zrr_folders(other)
    assert len(ZrrPatches(other, "train", raw="pixel_raw", dslr="dslr")) == 3
    (other / "raw.json").write_text(json.dumps({"raw_values": "native"}))
    with pytest.raises(RawDataError, match="native values"):
        ZrrPatches(other, "train", raw="pixel_raw", dslr="dslr")
    with pytest.raises(RawDataError, match="no train/ or test/"):
        zrr_folders(tmp_path / "nothing")


def test_reads_from_disk_per_item_and_skips_bad_files(tmp_path):
    root = tmp_path / "z"
    write_zrr(root, size=64, n_train=5, n_test=1)
    ds = ZrrPatches(root, "train")
    first = ds[1][0].clone()
    # streamed: a file changed after the dataset was made is what the next read returns
    cv2.imwrite(str(root / "train" / "huawei_raw" / "1.png"), np.full((64, 64), 1020, np.uint16))
    assert float(ds[1][0].min()) == 1.0 and not np.allclose(first.numpy(), 1.0)
    # a corrupt mosaic: logged, and the next pair served instead
    (root / "train" / "huawei_raw" / "2.png").write_bytes(b"not a png")
    raw, _ = ds[2]
    assert np.allclose(raw.numpy(), ds[3][0].numpy()) and ds.bad and ds.bad[0][0] == 2
    # a patch without its partner is left out and counted
    (root / "train" / "canon" / "4.jpg").unlink()
    ds = ZrrPatches(root, "train")
    assert len(ds) == 4 and ds.unpaired == 1
    assert not hasattr(ds, "data") and all(not isinstance(v, np.ndarray) for v in vars(ds).values())
