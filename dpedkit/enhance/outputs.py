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


def read_metadata(path: str | Path) -> PhotoMetadata:
    """The EXIF (orientation normalised to 1) and ICC profile of a photo; empty when it has
    none or Pillow cannot read it (the photo is still enhanced)."""
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            icc = im.info.get("icc_profile") or None
    except Exception:      # unreadable metadata is not a reason to fail a photo OpenCV can read
        return PhotoMetadata()
    data = None
    if len(exif):
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1
        data = exif.tobytes()
        data = data[6:] if data.startswith(b"Exif\x00\x00") else data
    return PhotoMetadata(data, icc)


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
