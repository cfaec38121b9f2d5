"""Camera RAW mosaics: the colour-filter pattern, levels, the raw values, and quick renderings.

Conventions. A mosaic is a 2-D ``uint16`` array in the **sensor's orientation** (no EXIF or
RAW ``flip`` applied: rotating a Bayer mosaic would change its pattern), indexed
``[row, column]`` = ``[y, x]``. Its ``pattern`` names the colours of the 2×2 cell at the
array's top-left in the order ``(0,0) (0,1) (1,0) (1,1)``, e.g. ``"RGGB"`` (R at row 0,
column 0; B at row 1, column 1). ``black`` is the black level of each of those four
positions and ``white`` the saturation level, in raw units. A crop keeps the pattern only at
**even** offsets; :func:`pattern_at` gives it at any offset.

PyNET (the Zurich RAW-to-RGB dataset's model) unpacks a mosaic with
``R = raw[0::2, 0::2]``, ``Gb = raw[0::2, 1::2]``, ``Gr = raw[1::2, 0::2]``,
``B = raw[1::2, 1::2]`` and divides by 4·255 = 1020, so its inputs must have R at (0,0) and B
at (1,1) (:func:`rggb_offset`). The published dataset's mosaics hold the sensor's 10-bit raw
values as PyNET's ``dng_to_png.py`` writes them, black level included (:func:`to_zurich_values`
gives that convention for any sensor); :func:`to_pynet_values` is the black-subtracted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dpedkit.errors import DpedkitError

PYNET_MAX = 1020          # PyNET's loaders divide the mosaic by 4·255
ZURICH_BITS = 10          # the published Zurich RAW-to-RGB mosaics: the Huawei P20's 10-bit raw values
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


class RawMosaicError(DpedkitError, ValueError):
    """A file or array is not a usable 2×2 Bayer mosaic; the message says why and what to do."""


@dataclass
class Mosaic:
    """A camera's raw Bayer mosaic with what is needed to interpret it (module docstring)."""

    data: np.ndarray                       # (H, W) uint16, sensor orientation
    pattern: str                           # colours at (0,0) (0,1) (1,0) (1,1), e.g. "RGGB"
    black: tuple[float, float, float, float]  # black level per 2×2 position, raw units
    white: float                           # saturation level, raw units
    wb: tuple[float, float, float] = (1.0, 1.0, 1.0)  # as-shot white balance gains R, G, B (G = 1)
    flip: int = 0                          # LibRaw's orientation code (0 none, 3 180°, 5 90° CCW, 6 90° CW)
    meta: dict = field(default_factory=dict)

    def record(self) -> dict:
        """The fields a manifest record carries (JSON-ready)."""
        return {"cfa_pattern": self.pattern, "black_level": [round(float(b), 4) for b in self.black],
                "white_level": float(self.white), "wb_gains": [round(float(g), 6) for g in self.wb],
                "raw_flip": int(self.flip)}

    @classmethod
    def from_record(cls, data: np.ndarray, rec: dict) -> "Mosaic":
        """A mosaic stored as a 16-bit PNG with the fields of :meth:`record`."""
        return cls(data, rec["cfa_pattern"], tuple(rec["black_level"]), float(rec["white_level"]),
                   tuple(rec.get("wb_gains", (1.0, 1.0, 1.0))), int(rec.get("raw_flip", 0)))


def check_bayer(pattern: str) -> str:
    pattern = str(pattern).upper()
    if pattern not in BAYER_PATTERNS:
        raise RawMosaicError(f"colour-filter pattern {pattern!r} is not a 2×2 Bayer pattern (one of "
                             f"{', '.join(BAYER_PATTERNS)})")
    return pattern


def pattern_at(pattern: str, ox: int, oy: int) -> str:
    """The pattern of the mosaic cropped at column ``ox``, row ``oy``."""
    p = check_bayer(pattern)
    return "".join(p[((oy + i) % 2) * 2 + (ox + j) % 2] for i in (0, 1) for j in (0, 1))


def rggb_offset(pattern: str) -> tuple[int, int]:
    """``(ox, oy)`` in {0, 1}: cropping at column ``ox + 2k``, row ``oy + 2m`` puts R at (0,0)
    and B at (1,1) (RGGB), what PyNET's ``extract_bayer_channels`` assumes."""
    for oy in (0, 1):
        for ox in (0, 1):
            if pattern_at(pattern, ox, oy) == "RGGB":
                return ox, oy
    raise AssertionError("unreachable for a Bayer pattern")


def black_at(black, pattern_offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The 2×2 black-level tile seen from ``(ox, oy)``; ``black`` lists positions (0,0) (0,1) (1,0) (1,1)."""
    b = np.asarray(black, np.float64).reshape(2, 2)
    ox, oy = pattern_offset
    return np.roll(b, (-oy, -ox), axis=(0, 1))


def channel_masks(pattern: str, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean masks of the R, G and B sites of a mosaic of ``shape`` (rows, columns)."""
    p = check_bayer(pattern)
    masks = {c: np.zeros(shape, bool) for c in "RGB"}
    for k, c in enumerate(p):
        masks[c][k // 2::2, k % 2::2] = True
    return masks


def normalized(m: Mosaic) -> np.ndarray:
    """Raw values as float32 in [0, 1]: black subtracted per position, divided by ``white − black``."""
    h, w = m.data.shape
    b = np.tile(black_at(m.black), ((h + 1) // 2, (w + 1) // 2))[:h, :w]
    return np.clip((m.data.astype(np.float32) - b) / (m.white - b).astype(np.float32), 0, 1)


def to_pynet_values(data: np.ndarray, black, white: float, pattern_offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """PyNET's value convention: ``round((raw − black) / (white − black) · 1020)``, clipped to
    0–1020, as uint16. ``black`` is the 2×2 tile of the uncropped mosaic; ``pattern_offset``
    the crop's ``(column, row)`` offset parity."""
    h, w = data.shape
    b = np.tile(black_at(black, pattern_offset), ((h + 1) // 2, (w + 1) // 2))[:h, :w]
    v = (data.astype(np.float64) - b) / (float(white) - b) * PYNET_MAX
    return np.clip(np.rint(v), 0, PYNET_MAX).astype(np.uint16)


def pack_bayer(mosaic: np.ndarray) -> np.ndarray:
    """PyNET's input: an RGGB mosaic ``(H, W)`` (0…1020) → ``(4, H/2, W/2)`` float32 ``(B, Gb, R, Gr) / 1020``."""
    if mosaic.ndim != 2 or mosaic.shape[0] % 2 or mosaic.shape[1] % 2:
        raise RawMosaicError(f"not a 1-channel mosaic of even size (shape {mosaic.shape})")
    m = mosaic.astype(np.float32) / PYNET_MAX
    return np.stack([m[1::2, 1::2], m[0::2, 1::2], m[0::2, 0::2], m[1::2, 0::2]])


def unpack_bayer(packed: np.ndarray) -> np.ndarray:
    """The inverse of :func:`pack_bayer`: ``(4, h, w)`` → the RGGB mosaic ``(2h, 2w)`` in 0…1020 (float32)."""
    b, gb, r, gr = packed
    m = np.empty((2 * b.shape[0], 2 * b.shape[1]), np.float32)
    m[1::2, 1::2], m[0::2, 1::2], m[0::2, 0::2], m[1::2, 0::2] = b, gb, r, gr
    return m * PYNET_MAX


def to_zurich_values(data: np.ndarray, white: float) -> np.ndarray:
    """The published Zurich RAW-to-RGB convention: the raw values as the sensor wrote them,
    black level included, on a 10-bit scale (what a model trained on that dataset expects).

    A 10-bit sensor (white level ≤ 1023, ``2^10 − 1``) keeps its numbers unchanged, as PyNET's
    ``dng_to_png.py`` writes them. A deeper one is scaled by ``1023 / (2^b − 1)`` with ``b`` the
    bit length of its white level (12-bit: ÷ 4.003, 14-bit: ÷ 16.02), so its black level and
    white level land where a 10-bit sensor's would (12-bit black 256 → 64); rounded, clipped to
    0–1023, uint16. Shallower sensors (8-bit) are scaled up the same way."""
    bits = max(1, int(round(float(white))).bit_length())
    top = (1 << ZURICH_BITS) - 1
    if bits == ZURICH_BITS:
        return np.clip(data, 0, top).astype(np.uint16)
    v = data.astype(np.float64) * (top / ((1 << bits) - 1))
    return np.clip(np.rint(v), 0, top).astype(np.uint16)


_G_KERNEL = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], np.float32) / 4
_RB_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 4


def demosaic_bilinear(values: np.ndarray, pattern: str) -> np.ndarray:
    """Bilinear demosaic of a float mosaic to (H, W, 3) RGB, same units, same pixel grid.

    Every channel is interpolated to every pixel, so the three colour planes share one
    pixel grid (no half-pixel colour shift). The border is mirrored about the edge pixel
    (``BORDER_REFLECT_101``), which keeps the colour-filter phase.
    """
    v = values.astype(np.float32)
    masks = channel_masks(pattern, v.shape)
    out = np.empty(v.shape + (3,), np.float32)
    for k, c in enumerate("RGB"):
        kern = _G_KERNEL if c == "G" else _RB_KERNEL
        out[..., k] = cv2.filter2D(v * masks[c], -1, kern, borderType=cv2.BORDER_REFLECT_101)
    return out


def half_size_rgb(values: np.ndarray, pattern: str) -> np.ndarray:
    """One RGB pixel per 2×2 cell (R, mean of the two G, B): (H/2, W/2, 3). Pixel ``(i, j)``
    stands for the cell whose centre is at full-resolution ``(x, y) = (2j + 0.5, 2i + 0.5)``;
    R and B sit half a pixel off that centre (fine for a preview, not for sub-pixel work)."""
    p = check_bayer(pattern)
    h, w = (values.shape[0] // 2) * 2, (values.shape[1] // 2) * 2
    planes = {c: [] for c in "RGB"}
    for k, c in enumerate(p):
        planes[c].append(values[k // 2:h:2, k % 2:w:2].astype(np.float32))
    return np.dstack([planes["R"][0], (planes["G"][0] + planes["G"][1]) / 2, planes["B"][0]])


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve (IEC 61966-2-1) of linear values in [0, 1]."""
    x = np.clip(linear, 0, 1)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def exposure_level(m: Mosaic, exposure_percentile: float = 99.0) -> float:
    """The level of the black-subtracted, white-balanced mosaic (``normalized`` units, 1 =
    white) at the ``exposure_percentile`` of the brightest channel, on the one-pixel-per-cell
    rendering (a quarter of the pixels): the exposure :func:`quick_rgb` maps to its target."""
    rgb = half_size_rgb(normalized(m), m.pattern) * np.asarray(m.wb, np.float32)
    return float(np.percentile(rgb.max(axis=2), exposure_percentile))


def quick_rgb(m: Mosaic, half: bool = False, exposure_percentile: float = 99.0, target: float = 0.9,
              level: float | None = None) -> np.ndarray:
    """A fast 8-bit RGB rendering of a mosaic for **matching**, not for datasets.

    Black subtracted, as-shot white balance, bilinear demosaic at full sensor resolution
    (or one pixel per 2×2 cell with ``half``), exposure scaled so that ``level`` (default:
    this mosaic's :func:`exposure_level`; phones under-expose RAW captures, and the scale
    changes no correlation) reaches ``target``, sRGB curve. A patch cut from a photo renders
    as the photo did when given the photo's level. No colour matrix: the cameras' colour
    rendition does not matter for geometry. Same pixel grid and orientation as the mosaic.
    """
    v = normalized(m)
    rgb = half_size_rgb(v, m.pattern) if half else demosaic_bilinear(v, m.pattern)
    rgb *= np.asarray(m.wb, np.float32)
    if level is None:
        level = exposure_level(m, exposure_percentile)
    if level > 1e-6:
        rgb *= target / level
    return np.clip(srgb_encode(rgb) * 255 + 0.5, 0, 255).astype(np.uint8)


def even_rect(rect: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """The largest rectangle inside ``rect`` = ``(x, y, w, h)`` with even ``x, y, w, h``, so a
    mosaic crop keeps the colour-filter phase and whole 2×2 cells; ``None`` if empty."""
    x, y, w, h = rect
    x1, y1 = x + (x % 2), y + (y % 2)
    w1, h1 = ((x + w - x1) // 2) * 2, ((y + h - y1) // 2) * 2
    return (x1, y1, w1, h1) if w1 > 0 and h1 > 0 else None


def encode_mosaic(values: np.ndarray) -> bytes:
    """A mosaic (2-D uint16) as 16-bit single-channel PNG bytes (lossless, fast compression)."""
    ok, enc = cv2.imencode(".png", np.ascontiguousarray(values, np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError("OpenCV could not encode a 16-bit PNG")
    return enc.tobytes()


def decode_mosaic(path: str | Path) -> np.ndarray:
    """The 2-D uint16 mosaic of a 16-bit single-channel PNG (what :func:`encode_mosaic`
    writes: aligned mosaics, ZRR patches), or :class:`RawMosaicError` saying what it is instead."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise RawMosaicError("not a PNG OpenCV can decode")
    if data.ndim != 2 or data.dtype != np.uint16:
        raise RawMosaicError(f"not a 1-channel 16-bit mosaic (shape {data.shape}, {data.dtype})")
    return data


def _rawpy():
    try:
        import rawpy
    except ImportError:
        raise RawMosaicError("reading camera RAW files needs rawpy (LibRaw): pip install 'dpedkit[raw]'") from None
    return rawpy


def linear_error(planes: int) -> str:
    """Why a linear (demosaiced) RAW file cannot be a RAW-to-RGB input, and what to do."""
    return (f"this RAW file is linear: it holds an already demosaiced image (LibRaw sees {planes} colour planes per pixel), not a "
            "Bayer mosaic; iPhone ProRAW and Adobe DNG Converter's 'linear' option write such DNGs. Align it as "
            "RGB with --phone-raw rgb (for the DPED layout), or for a RAW-to-RGB dataset use a mosaic (CFA) file: "
            "the camera's original RAW, or a DNG converted without the linear option")


def read_mosaic(path: str | Path) -> Mosaic:
    """The raw Bayer mosaic of a camera RAW/DNG file (visible area, sensor orientation).

    Raises :class:`RawMosaicError` for a file LibRaw cannot read, one that holds metadata
    only or is truncated (:func:`dpedkit.camera_files.raw_data_problem`), a linear
    (demosaiced) file such as iPhone ProRAW (:func:`linear_error`) and sensors that are not
    2×2 Bayer (X-Trans, Foveon), each with the reason and what to do.
    """
    from dpedkit.camera_files import raw_data_problem, raw_open_error, saturation_level
    rawpy = _rawpy()
    path = Path(path)
    try:   # rawpy opens lazily: an undecodable file may fail only when its data are used
        raw = rawpy.imread(str(path))
        problem = raw_data_problem(raw, path)
        planes = 1 if raw.raw_image.ndim == 2 else raw.raw_image.shape[2]
        if problem or planes != 1:
            raw.close()
            raise RawMosaicError(problem or linear_error(planes))
        colors = raw.raw_colors_visible
        data = raw.raw_image_visible.copy()
    except RawMosaicError:
        raise
    except Exception as e:
        raise RawMosaicError(raw_open_error(path, e)) from None
    with raw:
        if raw.num_colors not in (3, 4):
            raise RawMosaicError(f"LibRaw reports {raw.num_colors} colours: not a 2×2 Bayer (RGB) sensor")
        desc = raw.color_desc.decode("ascii", "replace")
        if colors.shape[0] < 6 or colors.shape[1] < 6:
            raise RawMosaicError("mosaic too small")
        cell = colors[:6, :6]
        if not (np.array_equal(cell[:, :2], cell[:, 2:4]) and np.array_equal(cell[:2], cell[2:4])):
            raise RawMosaicError("the colour filter repeats over more than 2×2 pixels (e.g. Fujifilm X-Trans): "
                                 "RAW-to-RGB datasets need a 2×2 Bayer sensor")
        pattern = "".join(desc[c] for c in cell[:2, :2].ravel())
        try:
            check_bayer(pattern)
        except RawMosaicError as e:
            raise RawMosaicError(f"{e}; LibRaw reports colours {desc!r}") from None
        blc = np.asarray(raw.black_level_per_channel, np.float64)
        black = tuple(float(blc[c]) for c in cell[:2, :2].ravel())
        white = float(saturation_level(raw))
        wb = np.asarray(raw.camera_whitebalance, np.float64)[:3]
        if not np.all(np.isfinite(wb)) or wb[1] <= 0 or np.any(wb <= 0):
            wb = np.ones(3)
        return Mosaic(data=data.astype(np.uint16), pattern=pattern, black=black, white=white,
                      wb=tuple(float(g) for g in wb / wb[1]), flip=int(raw.sizes.flip),
                      meta={"libraw": ".".join(map(str, rawpy.libraw_version))})
