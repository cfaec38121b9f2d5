"""Test fixtures for camera files, made by the tests (no binary files in the repository).

* :func:`write_dng` writes a minimal but complete Bayer DNG with tifffile: the tags LibRaw
  needs to interpret it (DNGVersion, CFARepeatPatternDim, CFAPattern, BlackLevel, WhiteLevel,
  ColorMatrix1, AsShotNeutral, …).
* :func:`simulate_raw_phone` re-images an sRGB "DSLR" photo through a known homography into
  a phone sensor: linear light, the sensor's white balance, under-exposure, a Bayer mosaic,
  a black level, read and shot noise, N-bit quantisation.
* :func:`write_heic` writes a HEIC with pillow-heif, with an EXIF capture time and orientation.
"""

from __future__ import annotations

import datetime as dt

import cv2
import numpy as np

CFA_CODES = {"R": 0, "G": 1, "B": 2}
SENSOR_WB = (2.0, 1.0, 1.5)     # gains that white-balance the simulated sensor (R, G, B)


def _rationals(values, den=1_000_000):
    return tuple(x for v in values for x in (int(round(v * den)), den))


def write_dng(path, mosaic: np.ndarray, pattern: str, black: float, white: int, wb=SENSOR_WB,
              when: dt.datetime | None = None, orientation: int = 1, model: str = "sim phone") -> None:
    """A Bayer DNG of ``mosaic`` (uint16, sensor orientation) that LibRaw reads back exactly."""
    import tifffile
    cm = np.array([[0.80, -0.20, -0.05], [-0.40, 1.20, 0.20], [-0.10, 0.20, 0.60]])  # XYZ → camera
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),            # DNGVersion
        (50707, "B", 4, (1, 3, 0, 0), True),            # DNGBackwardVersion
        (271, "s", 0, "dpedkit", True),                  # Make
        (272, "s", 0, model, True),                      # Model
        (50708, "s", 0, f"dpedkit {model}", True),      # UniqueCameraModel
        (33421, "H", 2, (2, 2), True),                   # CFARepeatPatternDim
        (33422, "B", 4, tuple(CFA_CODES[c] for c in pattern), True),  # CFAPattern
        (50710, "B", 3, (0, 1, 2), True),               # CFAPlaneColor
        (50711, "H", 1, 1, True),                        # CFALayout: rectangular
        (50713, "H", 2, (1, 1), True),                   # BlackLevelRepeatDim
        (50714, "I", 1, int(black), True),               # BlackLevel
        (50717, "I", 1, int(white), True),               # WhiteLevel
        (50721, "2i", 9, _rationals(cm.ravel()), True),  # ColorMatrix1
        (50778, "H", 1, 21, True),                       # CalibrationIlluminant1: D65
        (50728, "2I", 3, _rationals(1 / np.asarray(wb, float)), True),  # AsShotNeutral
        (274, "H", 1, orientation, True),                # Orientation
    ]
    if when is not None:
        tags.append((36867, "s", 0, when.strftime("%Y:%m:%d %H:%M:%S"), True))   # DateTimeOriginal
    tifffile.imwrite(path, np.ascontiguousarray(mosaic, np.uint16), photometric=32803, extratags=tags,
                     subfiletype=0, metadata=None)


def srgb_decode(img8: np.ndarray) -> np.ndarray:
    x = img8.astype(np.float32) / 255
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def simulate_raw_phone(dslr: np.ndarray, H: np.ndarray, phone_size: tuple[int, int], pattern: str, bits: int,
                       black: int, rng: np.random.Generator, exposure: float = 0.7) -> np.ndarray:
    """The uint16 Bayer mosaic (``phone_size`` = (w, h)) a phone sensor records of ``dslr``
    (sRGB uint8) placed by ``H`` (DSLR px → phone sensor px)."""
    pw, ph = phone_size
    lin = srgb_decode(dslr)
    scale = np.sqrt(abs(np.linalg.det(H[:2, :2])))
    if scale < 1:   # the optical low-pass of the phone
        lin = cv2.GaussianBlur(lin, (0, 0), 0.5 * np.sqrt(1 / scale ** 2 - 1))
    img = cv2.warpPerspective(lin, H, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    cam = img / np.asarray(SENSOR_WB, np.float32) * exposure
    mosaic = np.zeros((ph, pw), np.float32)
    for k, c in enumerate(pattern):
        i, j = divmod(k, 2)
        mosaic[i::2, j::2] = cam[i::2, j::2, "RGB".index(c)]
    white = 2 ** bits - 1
    v = black + mosaic * (white - black)
    v += rng.normal(0, 1, v.shape) * np.sqrt(0.5 * (v - black).clip(0) * 2 ** (bits - 10) + 2.0)
    return np.clip(np.rint(v), 0, white).astype(np.uint16)


def write_heic(path, rgb: np.ndarray, when: dt.datetime | None = None, orientation: int = 1, quality: int = 90) -> None:
    import pillow_heif
    from PIL import Image
    pillow_heif.register_heif_opener()
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    if when is not None:
        exif.get_ifd(0x8769)[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
    im.save(path, format="HEIF", quality=quality, exif=exif.tobytes())


def luminance_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Zero-mean normalised correlation of two RGB images' luminance (any numeric range)."""
    a = cv2.cvtColor(np.asarray(a, np.float32), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(np.asarray(b, np.float32), cv2.COLOR_RGB2GRAY)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
