"""What an enhanced photo carries over from its input, and the labelled before/after image.

The pixels are encoded as :func:`dpedkit.imageio.encode_image` encodes them; the input's EXIF
(capture time, camera, lens, GPS …) and ICC colour profile are then inserted into the JPEG
or PNG bytes, so metadata never changes a pixel. The EXIF orientation is set to 1 (normal):
the photo was read upright (:func:`dpedkit.imageio.read_image` applies the orientation), so
the output is stored upright.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ORIENTATION = 0x0112
_ICC_CHUNK = 65519          # bytes of profile per JPEG APP2 segment (65535 − 2 length − 14 header)


@dataclass
class PhotoMetadata:
    exif: bytes | None = None      # TIFF-structured EXIF, starting with b"II" or b"MM"
    icc: bytes | None = None       # ICC profile


# IFD0 tags that lay out a TIFF/DNG's own image data (sizes, strips, tiles, sub-IFDs, colour
# calibration, XMP, ICC) rather than describe the photo: in a JPEG/PNG's EXIF they would point
# at bytes that are not there. Camera RAW files are TIFF-based, so their IFD0 is full of them.
_LAYOUT_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317,
                          320, 322, 323, 324, 325, 330, 338, 339, 513, 514, 529, 530, 531, 532, 700, 34675})
_DNG_PRIVATE = range(50706, 52800)       # DNG tags (DNGVersion … DNG 1.7): meaningless outside the DNG
EXIF_IFD, GPS_IFD = 0x8769, 0x8825


def _portable_exif(exif: Image.Exif, raw_file: bool) -> bytes | None:
    """EXIF bytes (TIFF structure) with the orientation set to 1; for a TIFF-based RAW only
    the descriptive IFD0 tags, the EXIF IFD and the GPS IFD. Must run while the file is open:
    Pillow reads the EXIF and GPS sub-IFDs lazily."""
    if not len(exif):
        return None
    if raw_file:
        out = Image.Exif()
        for tag, value in exif.items():
            if tag not in _LAYOUT_TAGS and tag not in _DNG_PRIVATE and tag not in (EXIF_IFD, GPS_IFD):
                out[tag] = value
        for ifd in (EXIF_IFD, GPS_IFD):
            sub = exif.get_ifd(ifd)
            if sub:
                out.get_ifd(ifd).update(sub)
        exif = out
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1
    data = exif.tobytes()
    return data[6:] if data.startswith(b"Exif\x00\x00") else data


def read_metadata(path: str | Path) -> PhotoMetadata:
    """The EXIF (orientation normalised to 1) and ICC profile of a photo; empty when it has
    none or Pillow cannot read it (the photo is still enhanced: unreadable metadata is not a
    reason to fail a photo dpedkit can decode).

    Camera RAW/DNG files keep their descriptive EXIF (camera, lens, capture time, exposure,
    GPS) but no ICC profile: dpedkit renders them to sRGB, whatever profile the file carries.
    Everything is read before the file is closed (Pillow reads sub-IFDs lazily: reading them
    later fails with "seek of closed file")."""
    from dpedkit.camera_files import CameraFileError, _pillow_heif, kind_of
    raw_file = kind_of(path) == "raw"
    try:
        if kind_of(path) == "heif":
            _pillow_heif()          # registers Pillow's HEIF opener
    except CameraFileError:
        return PhotoMetadata()
    try:
        with Image.open(path) as im:
            exif = _portable_exif(im.getexif(), raw_file)
            icc = None if raw_file else (im.info.get("icc_profile") or None)
    except Exception:
        return PhotoMetadata()
    return PhotoMetadata(exif, icc)


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def add_metadata(encoded: bytes, meta: PhotoMetadata) -> bytes:
    """JPEG or PNG bytes with ``meta``'s EXIF and ICC profile inserted (others unchanged)."""
    if not (meta.exif or meta.icc):
        return encoded
    if encoded[:2] == b"\xff\xd8":
        insert = b""
        if meta.exif and len(meta.exif) + 8 <= 65533:
            insert += _jpeg_segment(0xE1, b"Exif\x00\x00" + meta.exif)
        if meta.icc:
            parts = [meta.icc[i:i + _ICC_CHUNK] for i in range(0, len(meta.icc), _ICC_CHUNK)]
            if len(parts) < 256:
                insert += b"".join(_jpeg_segment(0xE2, b"ICC_PROFILE\x00" + bytes([i + 1, len(parts)]) + p)
                                   for i, p in enumerate(parts))
        at = 2
        if encoded[2:4] == b"\xff\xe0":                       # after the JFIF APP0 segment, which comes first
            at = 4 + struct.unpack(">H", encoded[4:6])[0]
        return encoded[:at] + insert + encoded[at:]
    if encoded[:8] == b"\x89PNG\r\n\x1a\n":
        at = 8 + 8 + struct.unpack(">I", encoded[8:12])[0] + 4   # after IHDR
        insert = b""
        if meta.icc:
            insert += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc))
        if meta.exif:
            insert += _png_chunk(b"eXIf", meta.exif)
        return encoded[:at] + insert + encoded[at:]
    return encoded


def side_by_side(before: np.ndarray, after: np.ndarray, labels: tuple[str, str] = ("phone", "enhanced")) -> np.ndarray:
    """``before | after`` (RGB uint8, same size) with each half labelled in its top-left corner
    (white text on a dark box, scaled to the photo: readable on a phone screen and on a print)."""
    out = np.concatenate([before, after], axis=1)
    h, w = before.shape[:2]
    scale = max(0.4, min(h, w) / 700)
    thick = max(1, round(scale * 2))
    pad = max(4, round(10 * scale))
    for i, text in enumerate(labels):
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        x0, y0 = i * w + pad, pad
        box = out[y0:y0 + th + base + 2 * pad, x0:x0 + tw + 2 * pad]
        box[:] = (box * 0.35).astype(np.uint8)
        cv2.putText(out, text, (x0 + pad, y0 + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return out
