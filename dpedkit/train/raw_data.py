"""Stream RAW-to-RGB training pairs from a Zurich RAW-to-RGB (PyNET) layout, one patch pair
per item, read from disk when asked (no dataset-wide arrays: memory is a batch, whatever
the dataset's size, so the full-resolution level trains on a 24 GB machine).

Layout (``dpedkit patches --layout zrr``, :class:`dpedkit.layout.ZrrLayout`)::

    <root>/{train,test}/<raw folder>/<i>.png     1-channel 16-bit RGGB mosaic, values 0…1020
    <root>/{train,test}/<dslr folder>/<i>.jpg    the DSLR patch, same size as the mosaic

The folder names are parameters (PyNET's are ``huawei_raw`` and ``canon``); without them
they come from ``raw.json`` (its ``folders`` entry), else the split folder's only folder of
PNGs and only folder of JPEGs.

An item is what PyNET-PyTorch's ``load_data.LoadData`` returns:

- ``raw``: ``(4, H/2, W/2)`` float32, channels ``(B, Gb, R, Gr)`` =
  ``raw[1::2, 1::2], raw[0::2, 1::2], raw[0::2, 0::2], raw[1::2, 0::2]``, divided by
  ``4·255 = 1020`` (:func:`pack_bayer`);
- ``dslr``: ``(3, H/2**level, W/2**level)`` float32 RGB in [0, 1], the JPEG resized as
  ``scipy.misc.imresize(img, 1/2**level)`` does (Pillow bilinear, which widens its filter
  when it shrinks, then rounded to 8 bits; level 0 is the JPEG as is) (:func:`dslr_target`).

No flips or rotations: PyNET-PyTorch's loader has none (the TensorFlow PyNET rotates and
flips the *packed* channels, which changes which Bayer site each channel holds).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dpedkit.errors import DpedkitError
from dpedkit.layout import RAW_JSON
from dpedkit.raw import PYNET_MAX, Mosaic, RawMosaicError, decode_mosaic, pack_bayer, quick_rgb, unpack_bayer  # noqa: F401

log = logging.getLogger(__name__)
SPLITS = ("train", "test")
_INDEX = re.compile(r"^(\d+)\.(png|jpg)$")


class RawDataError(DpedkitError, ValueError):
    """A RAW-to-RGB dataset folder or patch cannot be used; the message says why."""


# ---------------------------------------------------------------- per-patch conversions

def dslr_target(rgb: np.ndarray, level: int) -> np.ndarray:
    """The DSLR patch (``(H, W, 3)`` uint8 RGB) as PyNET-PyTorch's loader feeds level ``level``:
    ``(3, H/2**level, W/2**level)`` float32 in [0, 1] (module docstring)."""
    if level:
        h, w = (int(s / 2 ** level) for s in rgb.shape[:2])     # imresize truncates the size
        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255


def quick_rendering(mosaic: np.ndarray, wb: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The baseline a learned ISP has to beat: :func:`dpedkit.raw.quick_rgb` of an RGGB patch
    in PyNET values (black 0, white 1020) with white-balance gains ``wb`` (R, G, B);
    ``(H, W, 3)`` uint8 at the mosaic's resolution."""
    return quick_rgb(Mosaic(np.asarray(mosaic, np.uint16), "RGGB", (0.0,) * 4, float(PYNET_MAX), tuple(wb)))


def baseline_renderer(root: str | os.PathLike):
    """``render(split, index, mosaic) → (H, W, 3) uint8``: the quick rendering of a dataset's
    patch with its photo's white balance, written black/white levels and exposure
    (``raw.json``'s ``levels``, ``written_levels`` and ``exposure_levels``, the photo named by
    ``patches.csv``), as ``patches --layout zrr`` rendered it to verify the pair; without
    those, no white balance, black 0, white 1020, the patch's own exposure."""
    import csv
    root = Path(root)
    try:
        d = json.loads((root / RAW_JSON).read_text())
        with open(root / "patches.csv", newline="") as f:
            photo = {(r["split"], int(r["index"])): r["name"] for r in csv.DictReader(f)}
    except (OSError, ValueError, KeyError):
        d, photo = {}, {}

    def render(split: str, index: int, mosaic: np.ndarray) -> np.ndarray:
        name = photo.get((split, index))
        levels, written = d.get("levels", {}).get(name, {}), d.get("written_levels", {}).get(name, {})
        black = float(np.mean(written.get("black_level", [0.0])))
        white = float(written.get("white_level", PYNET_MAX))
        wb = tuple(levels.get("wb_gains", (1.0, 1.0, 1.0)))
        level = d.get("exposure_levels", {}).get(name)
        return quick_rgb(Mosaic(np.asarray(mosaic, np.uint16), "RGGB", (black,) * 4, white, wb), level=level)
    return render


# ---------------------------------------------------------------- folders

@dataclass(frozen=True)
class ZrrFolders:
    """Where one split's patches are: ``<root>/<split>/<raw>/<i>.png``, ``…/<dslr>/<i>.jpg``."""
    root: Path
    raw: str
    dslr: str

    def raw_path(self, split: str, i: int) -> Path:
        return self.root / split / self.raw / f"{i}.png"

    def dslr_path(self, split: str, i: int) -> Path:
        return self.root / split / self.dslr / f"{i}.jpg"


def _from_raw_json(root: Path) -> tuple[str | None, str | None]:
    try:
        d = json.loads((root / RAW_JSON).read_text())
    except (OSError, ValueError):
        return None, None
    if d.get("raw_values") == "native":
        raise RawDataError(f"{root / RAW_JSON} says the mosaics hold the camera's native values; PyNET's packing "
                           "divides by 1020: build the dataset with --raw-values zurich (the default) or normalized")
    folders = d.get("folders") if isinstance(d.get("folders"), dict) else {}
    name = lambda p: p.split("/")[1] if isinstance(p, str) and p.count("/") >= 2 else None  # noqa: E731
    return name(folders.get("raw")), name(folders.get("dslr"))


def _guess(split_dir: Path, suffix: str) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.endswith("_full_resolution")
                  and (p / f"0.{suffix}").is_file())


def zrr_folders(root: str | os.PathLike, raw: str | None = None, dslr: str | None = None) -> ZrrFolders:
    """The patch folders of a ZRR dataset: the names given, else ``raw.json``'s, else the
    only folder of ``<i>.png`` and the only folder of ``<i>.jpg`` in ``train/`` (or ``test/``)."""
    root = Path(root)
    split_dir = next((root / s for s in SPLITS if (root / s).is_dir()), None)
    if split_dir is None:
        raise RawDataError(f"{root} has no train/ or test/ folder: is it a dataset built with --layout zrr?")
    rec_raw, rec_dslr = _from_raw_json(root)
    raw, dslr = raw or rec_raw, dslr or rec_dslr
    for kind, suffix in (("raw", "png"), ("dslr", "jpg")):
        if (raw if kind == "raw" else dslr) is None:
            found = _guess(split_dir, suffix)
            if len(found) != 1:
                raise RawDataError(f"cannot tell the {kind} patch folder of {split_dir} (folders with 0.{suffix}: "
                                   f"{', '.join(found) or 'none'}): name it")
            raw, dslr = (found[0], dslr) if kind == "raw" else (raw, found[0])
    return ZrrFolders(root, raw, dslr)


def _indices(folder: Path, suffix: str) -> set[int]:
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for m in map(_INDEX.match, os.listdir(folder)) if m and m.group(2) == suffix}


# ---------------------------------------------------------------- the dataset

class ZrrPatches(Dataset):
    """The patch pairs of one split, read per item (module docstring); ``item i → (raw, dslr)``.

    Pairs are the indices present in both folders (a file without its partner is counted in
    ``unpaired`` and left out). A file that cannot be read is logged and replaced by the next
    readable pair, so one bad patch never stops a run; ``bad`` lists those seen (per process)."""

    def __init__(self, root: str | os.PathLike, split: str = "train", level: int = 0, raw: str | None = None,
                 dslr: str | None = None, limit: int | None = None):
        if split not in SPLITS:
            raise RawDataError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        if level not in range(6):
            raise RawDataError(f"level must be 0 (full resolution) … 5, not {level!r}")
        self.folders = zrr_folders(root, raw, dslr)
        self.split, self.level = split, level
        a = _indices(self.folders.root / split / self.folders.raw, "png")
        b = _indices(self.folders.root / split / self.folders.dslr, "jpg")
        self.indices = sorted(a & b)[:limit]
        self.unpaired = len(a ^ b)
        self.bad: list[tuple[int, str]] = []
        if not self.indices:
            raise RawDataError(f"no patch pairs in {self.folders.root / split} ({self.folders.raw}/<i>.png with "
                               f"{self.folders.dslr}/<i>.jpg)")

    def __len__(self) -> int:
        return len(self.indices)

    def read_pair(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k``-th pair as stored: the mosaic ``(H, W)`` uint16 and the DSLR ``(H, W, 3)`` uint8 RGB."""
        i = self.indices[k]
        p, q = self.folders.raw_path(self.split, i), self.folders.dslr_path(self.split, i)
        try:
            mosaic = decode_mosaic(p)
        except RawMosaicError as e:
            raise RawDataError(f"{p}: {e}") from None
        bgr = cv2.imread(str(q), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RawDataError(f"{q}: not a JPEG OpenCV can decode")
        if bgr.shape[:2] != mosaic.shape:
            raise RawDataError(f"{q} is {bgr.shape[1]}x{bgr.shape[0]}, its mosaic {mosaic.shape[1]}x{mosaic.shape[0]}")
        return mosaic, np.ascontiguousarray(bgr[..., ::-1])

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        for j in range(len(self.indices)):
            kk = (k + j) % len(self.indices)
            try:
                mosaic, rgb = self.read_pair(kk)
                return torch.from_numpy(pack_bayer(mosaic)), torch.from_numpy(dslr_target(rgb, self.level))
            except (RawDataError, RawMosaicError) as e:
                self.bad.append((self.indices[kk], str(e)))
                log.warning("skipping patch %d: %s", self.indices[kk], e)
        raise RawDataError(f"no readable patch pair in {self.folders.root / self.split}")
