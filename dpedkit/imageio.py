"""Image codec at the edges of the pipeline: reading photos, encoding and writing images.

Images are NumPy arrays of shape (H, W, 3), dtype uint8, **RGB** channel order, with the
EXIF orientation already applied. Writers go through :func:`dpedkit.fs.write_bytes_atomic`,
so a killed run never leaves a half-written image under its final name. Filesystem
transactions that need no image (atomic text, fingerprints, locks) live in :mod:`dpedkit.fs`.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from dpedkit.camera_files import (HEIF_SUFFIXES, RAW_SUFFIXES, CameraFileError, RawRendering, kind_of,
                                  read_camera_file, unreadable_reason)
from dpedkit.fs import write_bytes_atomic
from dpedkit.errors import DpedkitError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".jp2", ".pgm", ".ppm"}
PHOTO_SUFFIXES = IMAGE_SUFFIXES | HEIF_SUFFIXES | RAW_SUFFIXES    # what list_images lists


class ImageReadError(DpedkitError, ValueError):
    """An input file is not a readable image; the message says why, in plain words."""


def list_images(folder: Path) -> list[Path]:
    """Photo files directly inside ``folder`` (by suffix, case-insensitive: OpenCV's formats,
    HEIC/HEIF and camera RAW), sorted by name. :func:`other_files` lists the rest."""
    return sorted(
        p for p in Path(folder).iterdir()
        if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def other_files(folder: Path) -> list[tuple[Path, str]]:
    """Files directly inside ``folder`` that :func:`list_images` does not list (hidden ones
    aside), each with the reason, so that no file is skipped silently."""
    return sorted((p, unreadable_reason(p)) for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in PHOTO_SUFFIXES)


def _jpeg_truncated(buf: np.ndarray) -> bool:
    # libjpeg decodes a truncated file into a grey-padded image with only a warning on
    # stderr. A complete JPEG has its end-of-image marker after the last start-of-scan;
    # an embedded EXIF thumbnail has its own markers, but both come before the main scan.
    data = buf.tobytes()
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Convert a decoded OpenCV image (BGR/gray/BGRA, 8/16-bit or float) to 8-bit RGB."""
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype.kind == "f":
        img = np.clip(np.nan_to_num(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"unsupported pixel type {img.dtype}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike, raw: RawRendering = RawRendering()) -> np.ndarray:
    """Read an image as 8-bit RGB with its EXIF orientation applied.

    16-bit, grayscale and alpha inputs are converted (alpha is dropped). HEIC/HEIF and
    camera RAW/DNG files (by suffix) are decoded by :mod:`dpedkit.camera_files`, RAW rendered
    as ``raw`` says. Raises :class:`ImageReadError` for a missing, empty, truncated or
    non-image file, or one whose decoder is not installed (the message names the extra).
    """
    path = Path(path)
    if kind_of(path) != "other":
        if not path.is_file():
            raise ImageReadError("cannot read file: No such file or directory")
        if path.stat().st_size == 0:
            raise ImageReadError("empty file (0 bytes)")
        try:
            return read_camera_file(path, raw)
        except CameraFileError as e:
            raise ImageReadError(str(e)) from None
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(f"cannot read file: {e.strerror or e}") from None
    if buf.size == 0:
        raise ImageReadError("empty file (0 bytes)")
    # IMREAD_COLOR applies the EXIF orientation; ANYDEPTH keeps 16-bit data for a proper
    # conversion instead of OpenCV's truncating one.
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as e:
        raise ImageReadError(f"cannot decode image: {str(e).strip().splitlines()[-1]}") from None
    if img is None:
        head = buf[:16].tobytes()
        if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc", b"ftypavif"):
            raise ImageReadError("a HEIC/HEIF photo with another suffix: rename it to .heic")
        raise ImageReadError("not an image OpenCV can decode (corrupt or unsupported format)")
    if buf[:2].tobytes() == b"\xff\xd8" and _jpeg_truncated(buf):
        raise ImageReadError("truncated JPEG (no end-of-image marker after the image data)")
    return to_rgb8(img)


def encode_image(img: np.ndarray, suffix: str, quality: int = 95, png_level: int = 1) -> bytes:
    """Encode an RGB uint8 image to PNG or JPEG bytes (``suffix`` like ``.png``)."""
    suffix = suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif suffix == ".png":
        # run-length matches after the "up" filter: lossless like any PNG, half the encoding
        # time of zlib's default search with adaptive filters, files a few % smaller, faster to decode
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_level), cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        if hasattr(cv2, "IMWRITE_PNG_FILTER"):      # OpenCV >= 4.11
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    else:
        params = []
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, enc = cv2.imencode(suffix, bgr, params)
    if not ok:
        raise OSError(f"OpenCV could not encode a {suffix} image")
    return enc.tobytes()


def write_image(path: str | os.PathLike, img: np.ndarray, quality: int = 95) -> None:
    """Write an RGB uint8 image atomically; the format follows the suffix."""
    path = Path(path)
    write_bytes_atomic(path, encode_image(img, path.suffix, quality))
