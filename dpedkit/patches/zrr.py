"""``dpedkit patches --layout zrr``: RAW-to-RGB patch pairs in the Zurich RAW-to-RGB / PyNET layout.

Input: an ``aligned/`` folder whose phone images are 16-bit Bayer mosaic crops (``dpedkit
align`` on RAW/DNG phone photos) with records carrying ``cfa_pattern``, ``black_level`` and
``white_level``. Output (``S`` = ``--size``, 448 by default as in the Zurich dataset), with the
folder names the original PyNET code reads (``--zrr-phone huawei``, ``--dped-dslr canon``; the
real camera names are in dataset.json and raw.json)::

    OUT/train/huawei_raw/<i>.png             1-channel 16-bit mosaic, S×S, R at (0,0), B at (1,1)
    OUT/train/canon/<i>.jpg                  S×S RGB, the same scene at the mosaic's resolution
    OUT/test/huawei_raw/<i>.png, OUT/test/canon/<i>.jpg       ``<i>`` = 0 … N−1 per split
    OUT/test/huawei_full_resolution/<name>.png   whole aligned test mosaics (RGGB phase, same values and size)
    OUT/raw.json        pattern, value convention and levels;   OUT/patches.csv, OUT/patches_report.json

Full resolution. The full-resolution image is the whole aligned crop, which is the whole
sensor where the DSLR photo covers it (PyNET's visual tests cut a fixed 2944×3968 / 2880×3968
window of a Huawei P20's 2976×3968 sensor). When the crop does not start on an R site (a
GBRG, GRBG or BGGR sensor) the first row and/or column is dropped to reach the RGGB phase and
the last one is repeated from its same-colour neighbour two pixels before (a mirror that keeps
the pattern), so the size stays the crop's.

Geometry. The phone window is never resampled: it sits on a grid of ``S`` steps whose origin
has the parity that puts R at (0,0) (:func:`dpedkit.raw.rggb_offset`), and is cut from the
mosaic as is. The local refinement (shift ± ``max_shift`` px, rotation ± ``max_angle``) moves
and rotates the **DSLR** window instead, searched on the quick rendering of the mosaic
(:func:`dpedkit.raw.quick_rgb`) with :mod:`dpedkit.patches.search` (roles swapped: the
mosaic rendering is the fixed image). A pair is kept when the correlation of the rendering
of the written mosaic patch with the written DSLR patch reaches ``threshold``.

Values. ``raw_values="zurich"`` (default): what the published dataset holds and a model trained
on it expects — the sensor's raw values with the black level included, 10-bit (PyNET's
``dng_to_png.py`` writes a Huawei P20's values unchanged; its loaders divide by 4·255 and
subtract nothing); a deeper sensor is scaled to 10 bits (:func:`dpedkit.raw.to_zurich_values`).
``"normalized"``: black level subtracted per colour-filter position, scaled so the white level
is 1020, clipped to 0–1020. ``"native"``: the camera's raw values, unchanged. raw.json lists
each photo's levels in the written values.

This module holds only what is particular to mosaics (:class:`MosaicPair`, raw.json); the
stage itself — scoring, staging, resuming, assembly, the report — is
:mod:`dpedkit.patches.stage`, the same as for the DPED layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dpedkit.errors import OptionError
from dpedkit.fs import write_bytes_atomic, write_text_atomic
from dpedkit.imageio import ImageReadError, read_image
from dpedkit.layout import ZrrLayout
from dpedkit.patches.common import is_plain_name, same_size
from dpedkit.patches.search import SearchOptions, extract_phone_patch, grid_positions, match_windows
from dpedkit.raw import (PYNET_MAX, ZURICH_BITS, Mosaic, RawMosaicError, decode_mosaic, encode_mosaic, exposure_level,
                         pattern_at, quick_rgb, rggb_offset, to_pynet_values, to_zurich_values)

ZRR_SIZE = 448
RAW_VALUES = ("zurich", "normalized", "native")


def read_mosaic_png(path: Path, rec: dict) -> Mosaic:
    """An aligned mosaic (16-bit 1-channel PNG) with the levels of its manifest record."""
    try:
        data = decode_mosaic(path)
    except RawMosaicError as e:
        raise ImageReadError(f"{e}: align this folder from RAW/DNG phone photos") from None
    if data.shape[0] % 2 or data.shape[1] % 2:
        raise ImageReadError("the aligned mosaic has an odd size: it was not cropped at even offsets")
    return Mosaic.from_record(data, rec)


def mosaic_values(m: Mosaic, x: int, y: int, w: int, h: int, raw_values: str) -> np.ndarray:
    """The mosaic crop at column ``x``, row ``y`` in the chosen value convention (uint16)."""
    crop = m.data[y:y + h, x:x + w]
    if raw_values == "native":
        return crop.copy()
    if raw_values == "zurich":
        return to_zurich_values(crop, m.white)
    return to_pynet_values(crop, m.black, m.white, (x % 2, y % 2))


def written_levels(m: Mosaic, raw_values: str) -> dict:
    """Black level (per 2×2 position of the source pattern) and white level in the written values."""
    if raw_values == "normalized":
        return {"black_level": [0.0] * 4, "white_level": float(PYNET_MAX)}
    if raw_values == "native":
        return {"black_level": list(m.black), "white_level": float(m.white)}
    bits = max(1, int(round(m.white)).bit_length())
    k = 1.0 if bits == ZURICH_BITS else ((1 << ZURICH_BITS) - 1) / ((1 << bits) - 1)
    return {"black_level": [round(b * k, 3) for b in m.black], "white_level": round(min(m.white * k, 1023), 3)}


def zrr_windows(m: Mosaic, dslr: np.ndarray, o: SearchOptions, level: float | None = None):
    """Search every grid window of the mosaic against the aligned DSLR image.

    Returns ``(rendering, windows)``: the quick rendering the search ran on (at the photo's
    :func:`~dpedkit.raw.exposure_level`, which ``raw.json`` records), and for each
    grid window ``(X, Y, match)`` with ``(X, Y)`` its top-left in mosaic pixels (R at
    ``(X, Y)``, B at ``(X+1, Y+1)``) and ``match`` the
    :class:`~dpedkit.patches.search.WindowMatch` whose ``dx, dy, angle`` place the DSLR patch
    (cut it with :func:`dslr_patch`)."""
    if o.size % 2:
        raise OptionError(f"the patch size must be even for a Bayer mosaic (got {o.size})")
    rendering = quick_rgb(m, level=level)
    h, w = m.data.shape
    ox, oy = rggb_offset(m.pattern)
    pos = grid_positions(w, h, o)
    if not pos:
        return rendering, []
    # shift both images so the search's grid lands on R sites of the mosaic
    sx, sy = (ox - pos[0][0]) % 2, (oy - pos[0][1]) % 2
    found = match_windows(rendering[sy:, sx:], dslr[sy:, sx:], o)
    out = []
    for win in found:
        X, Y = win.x + sx, win.y + sy
        if pattern_at(m.pattern, X, Y) != "RGGB":
            raise AssertionError(f"window at ({X}, {Y}) is off the RGGB phase")
        win.x, win.y = X, Y     # the search ran on shifted copies; its offsets are relative, so they carry over
        out.append((X, Y, win))
    return rendering, out


def dslr_patch(dslr: np.ndarray, X: int, Y: int, win, size: int) -> np.ndarray:
    """The DSLR patch the search placed for the mosaic window at ``(X, Y)``: centred at the
    window's centre plus ``(dx, dy)``, rotated by ``angle`` (search module's convention)."""
    return extract_phone_patch(dslr, X, Y, win.dx, win.dy, win.angle, size)


def raw_json(layout: ZrrLayout, o, results: list[dict]) -> dict:
    """What raw.json states: the layout, the unpacking and the value convention."""
    ok = [r for r in results if r["status"] == "ok"]
    rel = lambda p: p.relative_to(layout.root).as_posix().replace("train/", "{train,test}/")  # noqa: E731
    d = {"layout": "zrr", "phone": layout.phone, "phone_folder": layout.folder, "dslr": layout.dslr,
         "size": o.search.size,
         "folders": {"raw": rel(layout.patch("train", "phone", 0)).replace("/0.png", "/<i>.png"),
                     "dslr": rel(layout.patch("train", "dslr", 0)).replace("/0.jpg", "/<i>.jpg"),
                     "full_resolution": rel(layout.full_size_dir) + "/<name>.png"},
         "cfa_pattern": "RGGB",
         "unpack": "R = raw[0::2, 0::2], Gb = raw[0::2, 1::2], Gr = raw[1::2, 0::2], B = raw[1::2, 1::2]",
         "orientation": "sensor (the RAW file's orientation flag is not applied)",
         "full_resolution": "the whole aligned crop (the whole sensor where the DSLR covers it), same size; a crop "
                            "not starting on an R site loses its first row/column to the RGGB phase and repeats "
                            "its last from the same-colour neighbour",
         "dslr_scale": 1, "raw_values": o.raw_values,
         "source_patterns": {r["name"]: r["levels"]["cfa_pattern"] for r in ok},
         "levels": {r["name"]: r["levels"] for r in ok},
         "written_levels": {r["name"]: r["written_levels"] for r in ok if "written_levels" in r},
         # the exposure each photo's quick rendering used (dpedkit.raw.exposure_level): evaluate's baseline
         # renders a patch as the pair was verified, not with the patch's own exposure
         "exposure_levels": {r["name"]: r["exposure_level"] for r in ok if "exposure_level" in r}}
    if o.raw_values == "zurich":
        d.update(value_range=[0, 1023], convention=(
            "the published Zurich RAW-to-RGB convention: the sensor's raw values, black level included (as PyNET's "
            "dng_to_png.py writes them), 10-bit; a sensor whose white level has b > 10 bits is scaled by "
            "1023 / (2^b - 1), rounded, clipped to 0..1023. PyNET's loaders divide by 4*255 = 1020 and subtract "
            "nothing; written_levels gives each photo's black and white level in these values"))
    elif o.raw_values == "normalized":
        d.update(black_level=0, white_level=PYNET_MAX, value_range=[0, PYNET_MAX],
                 convention="round((raw - black) / (white - black) * 1020) per colour-filter position, clipped to "
                            "0..1020 (not the published dataset's values: those keep the black level)")
    else:
        d.update(convention="the camera's raw values; subtract black_level (per 2x2 position of the source "
                            "pattern, see levels) and divide by white_level - black_level")
    return d


class MosaicPair:
    """One aligned pair of the ZRR layout: a 16-bit Bayer mosaic (phone) and an RGB DSLR image
    of the same size (the pair interface: :class:`dpedkit.patches.stage.RgbPair`).

    The mosaic window stays where the grid puts it, at an RGGB site, never resampled; the
    search runs on the mosaic's quick rendering and moves/rotates the DSLR window
    (:func:`zrr_windows`). A pair is scored on the rendering of the written mosaic window;
    the mosaic patch is written as 16-bit PNG in ``raw_values``; the folders are named as
    the original PyNET code reads them (:class:`dpedkit.layout.ZrrLayout`)."""
    layout = ZrrLayout
    noun = "mosaic"
    read_errors: tuple = (ImageReadError, RawMosaicError)

    def __init__(self, job):
        try:
            self.mosaic = read_mosaic_png(job.phone_path, job.record)
        except KeyError as e:
            raise RawMosaicError(f"the manifest record lacks {e}: align this folder again from RAW/DNG phone photos")
        self.dslr = read_image(job.dslr_path)
        self.hw = self.mosaic.data.shape
        same_size(self.hw, self.dslr)
        self.raw_values = job.opts.raw_values
        self.rendering = None
        self.level = exposure_level(self.mosaic)

    def windows(self, o: SearchOptions) -> list:
        self.rendering, found = zrr_windows(self.mosaic, self.dslr, o, self.level)
        return [w for _, _, w in found]

    def cut(self, w, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X, Y = w.x, w.y
        return (dslr_patch(self.dslr, X, Y, w, size), self.rendering[Y:Y + size, X:X + size],
                mosaic_values(self.mosaic, X, Y, size, size, self.raw_values))

    @staticmethod
    def write_phone(path: Path, values: np.ndarray, quality: int) -> None:
        write_bytes_atomic(path, encode_mosaic(values))

    def full(self) -> np.ndarray:
        """The whole mosaic at the RGGB phase, the crop's size (module docstring: the first
        row/column dropped to reach the phase, the last mirrored about its neighbour)."""
        ox, oy = rggb_offset(self.mosaic.pattern)
        h, w = self.hw
        v = mosaic_values(self.mosaic, ox, oy, w - ox, h - oy, self.raw_values)
        # numpy's "reflect" repeats the row two before the edge: the same colour-filter phase
        return np.pad(v, ((0, oy), (0, ox)), mode="reflect") if ox or oy else v

    def result(self) -> dict:
        return {"levels": self.mosaic.record(), "written_levels": written_levels(self.mosaic, self.raw_values),
                "exposure_level": self.level}

    @staticmethod
    def root(out: Path, phone: str) -> Path:
        return out

    @staticmethod
    def new_layout(out: Path, phone: str, opts) -> ZrrLayout:
        return ZrrLayout(out, phone, opts.dped_dslr, opts.zrr_phone)

    @staticmethod
    def check(aligned: Path, ok_records: dict, opts) -> None:
        if opts.raw_values not in RAW_VALUES:
            raise OptionError(f"raw_values must be one of {', '.join(RAW_VALUES)}")
        if not is_plain_name(opts.zrr_phone) or "/" in opts.zrr_phone or "\\" in opts.zrr_phone:
            raise OptionError(f"--zrr-phone must be a plain folder name (got {opts.zrr_phone!r})")
        if opts.search.size % 2:
            raise OptionError(f"--size must be even for a Bayer mosaic (got {opts.search.size})")
        if ok_records and not any("cfa_pattern" in r for r in ok_records.values()):
            raise OptionError(f"{aligned} holds RGB phone images, not RAW mosaics: align RAW/DNG phone photos (with "
                             "--phone-raw mosaic) for --layout zrr, or use the default DPED layout")

    @staticmethod
    def params(opts) -> dict:
        return {"layout": "zrr", "raw_values": opts.raw_values}

    @staticmethod
    def finish(layout: ZrrLayout, opts, results: list[dict]) -> None:
        write_text_atomic(layout.raw_json, json.dumps(raw_json(layout, opts, results), indent=1))
