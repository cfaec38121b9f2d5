"""A tiny simulated Zurich RAW-to-RGB dataset, written as ``dpedkit patches --layout zrr``
writes one: real photos (scikit-image) as the DSLR, and what a phone sensor records of them
as RGGB mosaics in PyNET values (black 0, white 1020).

The sensor: sRGB decoded to linear, a colour cross-talk matrix (a camera's RGB is not
sRGB, and the quick rendering applies no colour matrix), white-balance gains divided out,
exposure 0.6, RGGB sampling, 10-bit levels (0…1020), shot and read noise, rounding. The
DSLR patch is the photo in the DSLR's own rendition (:func:`dslr_look`: more contrast and
saturation), which a learned ISP learns and the quick rendering knows nothing of.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

SENSOR_WB = (2.0, 1.0, 1.5)
CROSSTALK = np.array([[0.70, 0.25, 0.05], [0.12, 0.76, 0.12], [0.05, 0.30, 0.65]], np.float32)


def srgb_decode(rgb8: np.ndarray) -> np.ndarray:
    x = rgb8.astype(np.float32) / 255
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def simulate_mosaic(rgb8: np.ndarray, rng: np.random.Generator, exposure: float = 0.6) -> np.ndarray:
    """The RGGB mosaic (uint16, 0…1020) a phone sensor records of ``rgb8`` (sRGB uint8, even size)."""
    cam = srgb_decode(rgb8) @ CROSSTALK.T / np.asarray(SENSOR_WB, np.float32) * exposure
    h, w = rgb8.shape[:2]
    m = np.empty((h, w), np.float32)
    m[0::2, 0::2], m[0::2, 1::2] = cam[0::2, 0::2, 0], cam[0::2, 1::2, 1]
    m[1::2, 0::2], m[1::2, 1::2] = cam[1::2, 0::2, 1], cam[1::2, 1::2, 2]
    v = m * 1020
    v += rng.normal(0, 1, v.shape) * np.sqrt(0.5 * v.clip(0) + 2.0)
    return np.clip(np.rint(v), 0, 1020).astype(np.uint16)


def dslr_look(rgb8: np.ndarray, contrast: float = 0.6, saturation: float = 1.3) -> np.ndarray:
    """The DSLR's own rendition of the scene (its tone curve and colour): a smoothstep contrast
    curve blended in by ``contrast`` and saturation ``saturation`` about the luminance."""
    x = rgb8.astype(np.float32) / 255
    x = x * (1 - contrast) + contrast * (3 * x ** 2 - 2 * x ** 3)
    y = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = y[..., None] + saturation * (x - y[..., None])
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def photos() -> list[np.ndarray]:
    from skimage import data
    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


TEST_COLUMNS = 0.6     # held_out="region": test patches lie right of this share of each photo's width


def _windows(img: np.ndarray, split: str, held_out: str, size: int) -> tuple[int, int]:
    """The even-x range ``[x0, x1)`` of a split's patch origins in ``img`` (module's ``held_out``)."""
    w = img.shape[1]
    cut = int(w * TEST_COLUMNS) // 2 * 2
    if held_out == "photo":
        return 0, w - size
    return (0, cut - size) if split == "train" else (cut, w - size)


def write_zrr(root: Path, size: int = 64, n_train: int = 48, n_test: int = 8, raw_dir: str = "huawei_raw",
              dslr_dir: str = "canon", raw_json: bool = True, seed: int = 0, held_out: str = "photo") -> dict:
    """``root/{train,test}/<raw_dir>/<i>.png`` + ``<dslr_dir>/<i>.jpg``: ``size`` px patches cut
    at random even positions from whole simulated photos. ``held_out="photo"``: test patches
    from the last photo (a dark blue night sky the other three hardly show), train from the
    others; ``"region"``: both from every photo, test patches right of
    :data:`TEST_COLUMNS` of its width and training patches left of it (disjoint pixels, one
    sensor simulation per photo). Returns the test patches as written and the quick
    rendering of the whole mosaic cut at the same places (as ``patches --layout zrr``
    renders it): ``{"test_mosaics", "test_dslr", "test_quick"}``."""
    from dpedkit.raw import Mosaic, exposure_level
    from dpedkit.train.raw_data import quick_rendering
    rng = np.random.default_rng(seed)
    imgs = [p[: p.shape[0] // 2 * 2, : p.shape[1] // 2 * 2, :3] for p in photos()]
    out = {"test_mosaics": [], "test_dslr": [], "test_quick": []}
    exposure, rows = {}, ["split,index,name"]        # per simulated photo, as patches records them
    every = list(range(len(imgs)))
    pools = (("train", n_train, every[:-1]), ("test", n_test, every[-1:])) if held_out == "photo" else \
        (("train", n_train, every), ("test", n_test, every))
    shared = [simulate_mosaic(img, rng) for img in imgs] if held_out == "region" else None
    for split, n, pool in pools:
        (root / split / raw_dir).mkdir(parents=True, exist_ok=True)
        (root / split / dslr_dir).mkdir(parents=True, exist_ok=True)
        sims = shared or [simulate_mosaic(imgs[k], rng) for k in pool]
        quick = [quick_rendering(m, SENSOR_WB) for m in sims] if split == "test" else None
        for j, k in enumerate(pool):
            exposure[f"{split}{k}"] = exposure_level(Mosaic(sims[j], "RGGB", (0.0,) * 4, 1020.0, SENSOR_WB))
        for i in range(n):
            j = i % len(pool)
            img, full = imgs[pool[j]], sims[j]
            rows.append(f"{split},{i},{split}{pool[j]}")
            x0, x1 = _windows(img, split, held_out, size)
            y = 2 * int(rng.integers(0, (img.shape[0] - size) // 2))
            x = x0 + 2 * int(rng.integers(0, (x1 - x0) // 2))
            mosaic = full[y:y + size, x:x + size]
            cv2.imwrite(str(root / split / raw_dir / f"{i}.png"), mosaic)
            cv2.imwrite(str(root / split / dslr_dir / f"{i}.jpg"), dslr_look(img[y:y + size, x:x + size])[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            if split == "test":
                out["test_mosaics"].append(mosaic)
                out["test_dslr"].append(cv2.imread(str(root / split / dslr_dir / f"{i}.jpg"))[..., ::-1])
                out["test_quick"].append(quick[j][y:y + size, x:x + size])
    if raw_json:
        (root / "raw.json").write_text(json.dumps({
            "layout": "zrr", "raw_values": "normalized", "size": size,
            "folders": {"raw": f"{{train,test}}/{raw_dir}/<i>.png", "dslr": f"{{train,test}}/{dslr_dir}/<i>.jpg"},
            "levels": {name: {"wb_gains": list(SENSOR_WB)} for name in exposure}, "exposure_levels": exposure}))
        (root / "patches.csv").write_text("\n".join(rows) + "\n")
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2)
    return float(20 * np.log10(1 / np.sqrt(mse)))
