"""The files cameras write beyond JPEG/PNG: HEIC/HEIF (phones) and camera RAW/DNG.

* HEIC/HEIF is decoded with ``pillow-heif`` (``pip install 'dpedkit[heic]'``).
* Camera RAW (CR2, CR3, NEF, ARW, RAF, RW2, ORF, DNG, …) is decoded with ``rawpy`` / LibRaw
  (``pip install 'dpedkit[raw]'``) and rendered to RGB as :class:`RawRendering` states.

Both are optional extras: they bundle native libraries (libheif with its codecs; LibRaw)
whose wheels lag new Python versions and platforms, and a JPEG-only user should not need
them. A missing library is an :class:`CameraFileError` naming the extra to install.

Every function returns images as the rest of dpedkit does: (H, W, 3) uint8 RGB with the
photo's orientation applied.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpedkit.errors import DpedkitError

HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif", ".avif"})
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".rw2",
                          ".rwl", ".orf", ".pef", ".ptx", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".erf", ".mef",
                          ".mos", ".mrw", ".kdc", ".dcr", ".gpr"})
# files cameras and photo apps write next to the photos; reported as such, never read
SIDECAR_SUFFIXES = frozenset({".xmp", ".aae", ".thm", ".xml", ".json", ".txt", ".pp3", ".dop", ".cos", ".lrv",
                              ".mov", ".mp4"})

TIFF_COMPRESSION_JPEG_XL = 52546   # DNG 1.7 (iOS 18 ProRAW, some Android phones)


class CameraFileError(DpedkitError, ValueError):
    """A camera file cannot be read; the message says why and what to do."""


@dataclass(frozen=True)
class RawRendering:
    """How camera RAW files become the 8-bit RGB photos the RGB pipeline uses (LibRaw's
    ``postprocess``). Defaults: the camera's as-shot white balance, AHD demosaic, sRGB
    primaries and the sRGB tone curve, 8 bits, no automatic brightening, orientation applied."""

    raw_auto_bright: bool = field(default=False, metadata={
        "help": "Let LibRaw brighten RGB renderings of RAW files automatically (default: the exposure as shot)."})
    raw_bright: float = field(default=1.0, metadata={
        "help": "Linear gain of RGB renderings of RAW files (1: as shot).", "min": 0, "min_open": True})
    raw_camera_wb: bool = field(default=True, metadata={
        "help": "RGB renderings of RAW files use the camera's as-shot white balance (--no-raw-camera-wb: "
                "LibRaw's daylight balance)."})

    def postprocess_args(self) -> dict:
        import rawpy
        return dict(use_camera_wb=self.raw_camera_wb, use_auto_wb=False, no_auto_bright=not self.raw_auto_bright,
                    bright=float(self.raw_bright), output_bps=8, output_color=rawpy.ColorSpace.sRGB,
                    gamma=(2.4, 12.92), demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD)


def kind_of(path: str | os.PathLike) -> str:
    """``"heif"``, ``"raw"`` or ``"other"`` by suffix (case-insensitive)."""
    s = Path(path).suffix.lower()
    return "heif" if s in HEIF_SUFFIXES else "raw" if s in RAW_SUFFIXES else "other"


def _pillow_heif():
    try:
        import pillow_heif
    except ImportError:
        raise CameraFileError("reading HEIC/HEIF photos needs pillow-heif: pip install 'dpedkit[heic]'") from None
    pillow_heif.register_heif_opener()
    return pillow_heif


# ISO-BMFF (HEIF) boxes: 4-byte big-endian size, 4-byte type; size 1: a 64-bit size follows,
# size 0: the box runs to the end of its parent. "Full" boxes add 1 byte version + 3 bytes flags.
_FULL_BOXES = frozenset({b"meta", b"pitm", b"ipma", b"iinf", b"iloc", b"iref"})
HEIF_TRANSFORMS = (b"irot", b"imir")   # rotation and mirror item properties (HEIF §6.5.10, §6.5.12)
_SEQUENCE_BRANDS = (b"msf1", b"hevs", b"avis")   # image sequences (HEIF §7): no primary still image
EXIF_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
                  7: "TRANSVERSE", 8: "ROTATE_90"}   # EXIF Orientation → PIL transpose that shows it upright


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """``(type, payload_start, payload_end)`` of the boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        head = 8
        if size == 1:
            size, head = int.from_bytes(data[at + 8:at + 16], "big"), 16
        elif size == 0:
            size = end - at
        if size < head or at + size > end:
            return
        yield kind, at + head + (4 if kind in _FULL_BOXES else 0), at + size
        at += size


def heif_brands(head: bytes) -> tuple[bytes, ...]:
    """Major and compatible brands of the ``ftyp`` box at the start of a file, ``()`` if none."""
    if head[4:8] != b"ftyp":
        return ()
    size = int.from_bytes(head[:4], "big")
    body = head[8:min(size, len(head))]
    return (body[:4],) + tuple(body[i:i + 4] for i in range(8, len(body) - 3, 4))


def heif_primary_transforms(data: bytes) -> list[tuple[str, int]] | None:
    """The ``irot``/``imir`` properties of the primary item of a HEIF file's bytes, in the
    order the file lists them, as ``("irot", quarter turns anticlockwise)`` and ``("imir",
    axis)``; ``None`` when the ``meta`` box cannot be parsed. libheif applies these when it
    decodes; a file without them is oriented by its EXIF Orientation only."""
    meta = next(((a, b) for k, a, b in _boxes(data) if k == b"meta"), None)
    if meta is None:
        return None
    primary, props, assoc = None, [], {}
    for kind, a, b in _boxes(data, *meta):
        if kind == b"pitm":
            primary = int.from_bytes(data[a:a + (2 if data[a - 4] == 0 else 4)], "big")
        elif kind == b"iprp":
            for k2, a2, b2 in _boxes(data, a, b):
                if k2 == b"ipco":
                    props = [(k3, data[a3:b3]) for k3, a3, b3 in _boxes(data, a2, b2)]
                elif k2 == b"ipma":
                    version, flags = data[a2 - 4], int.from_bytes(data[a2 - 3:a2], "big")
                    n, at = int.from_bytes(data[a2:a2 + 4], "big"), a2 + 4
                    for _ in range(n):
                        w = 2 if version == 0 else 4
                        item, count = int.from_bytes(data[at:at + w], "big"), data[at + w]
                        at += w + 1
                        idx = []
                        for _ in range(count):
                            if flags & 1:
                                idx.append(int.from_bytes(data[at:at + 2], "big") & 0x7FFF)
                                at += 2
                            else:
                                idx.append(data[at] & 0x7F)
                                at += 1
                        assoc[item] = idx
    if primary is None:
        return None
    out = []
    for i in assoc.get(primary, []):
        if 1 <= i <= len(props) and props[i - 1][0] in HEIF_TRANSFORMS and props[i - 1][1]:
            kind, body = props[i - 1]
            out.append((kind.decode(), body[0] & (3 if kind == b"irot" else 1)))
    return out


def _not_heif_reason(head: bytes) -> str | None:
    """Why a file named .heic/.heif is not a HEIF still image, from its first bytes; or None."""
    if head[4:8] != b"ftyp":
        for magic, what, suffix in ((b"\xff\xd8\xff", "a JPEG", ".jpg"), (b"\x89PNG", "a PNG", ".png"),
                                    (b"II*\x00", "a TIFF", ".tif"), (b"MM\x00*", "a TIFF", ".tif")):
            if head.startswith(magic):
                return f"not a HEIF file: it is {what} image with a HEIF suffix; rename it to {suffix}"
        return ("not a HEIF file (no 'ftyp' box at its start): a corrupt or mis-named file; if it opens on the "
                "phone, export it again as HEIC or JPEG")
    brands = heif_brands(head)
    if any(b in _SEQUENCE_BRANDS for b in brands) and not any(b in (b"mif1", b"mif2") for b in brands):
        return ("a HEIF image sequence (brand " + brands[0].decode("ascii", "replace") + ", e.g. a burst or a "
                "Live/animated photo) with no still image: dpedkit reads still photos; export one frame as "
                "HEIC or JPEG")
    return None


def read_heif(path: str | os.PathLike) -> np.ndarray:
    """A HEIC/HEIF photo as 8-bit RGB, oriented as a viewer shows it.

    The orientation is the container's ``irot``/``imir`` transform of the primary image when
    it has one (libheif applies it while decoding; the EXIF Orientation is then only
    informational, HEIF §6.5.10), else the EXIF Orientation (an iPhone 7 HEIC carries only
    the EXIF tag). pillow-heif resets the EXIF tag to 1 in either case and keeps the file's
    value as ``info["original_orientation"]``, which is what is read here.
    """
    _pillow_heif()
    from PIL import Image
    path = Path(path)
    data = path.read_bytes()
    reason = _not_heif_reason(data[:64])
    if reason:
        raise CameraFileError(reason)
    try:
        with Image.open(path) as im:
            orientation = im.info.get("original_orientation") or im.getexif().get(0x0112) or 1
            img = im.convert("RGB")
    except Exception as e:
        raise CameraFileError(f"pillow-heif cannot decode this HEIF file ({type(e).__name__}: {e}); if it plays on the "
                              "phone, export it as JPEG (iPhone: Settings › Camera › Formats › Most Compatible)") from None
    transforms = heif_primary_transforms(data)
    if not transforms and orientation in EXIF_TRANSPOSE:   # None (unparseable) too: EXIF is all there is
        img = img.transpose(getattr(Image.Transpose, EXIF_TRANSPOSE[orientation]))
    return np.ascontiguousarray(np.array(img))   # writable: torch.from_numpy warns on read-only arrays


def _tiff_tags(path: Path) -> dict[int, object] | None:
    """Tags of every IFD of a TIFF-based RAW (DNG, CR2, NEF, ARW, …), the first value winning;
    ``None`` when the file is not TIFF."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(path) as tf:
            tags: dict[int, object] = {}
            for page in tf.pages:
                for t in page.tags.values():
                    tags.setdefault(t.code, t.value)
                    if t.code == 34665 and isinstance(t.value, dict):   # EXIF IFD, decoded by name
                        for name, v in t.value.items():
                            tags.setdefault(name, v)
            return tags
    except Exception:
        return None


def _dng_compressions(path: Path) -> set[int]:
    try:
        import tifffile
        with tifffile.TiffFile(path) as tf:
            out = set()
            todo = list(tf.pages)
            while todo:   # the raw image of a DNG is usually in a SubIFD, IFD0 being a preview
                page = todo.pop()
                out.add(int(page.compression))
                todo += list(getattr(page, "pages", None) or [])
            return out
    except Exception:
        return set()


# Lossless RAW compression (lossless JPEG, Nikon/Canon/Panasonic codecs) keeps several bits per
# sensor pixel; even lossy DNG keeps more than one. A file with less than half a bit per pixel of
# the sensor it declares cannot hold that sensor's image: it is metadata only, or cut short.
MIN_RAW_BITS_PER_PIXEL = 0.5
STUB_ADVICE = "copy the original file from the camera or phone again (an incomplete download or copy?)"


def _kib(n: int) -> str:
    return f"{n / 1024:.0f} KB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MB"


def raw_open_error(path: Path, exc: BaseException) -> str:
    """The reason shown when LibRaw cannot open or unpack ``path``: what is wrong and what to do."""
    path = Path(path)
    try:
        import rawpy
        libraw = "LibRaw " + ".".join(map(str, rawpy.libraw_version))
    except ImportError:
        libraw = "LibRaw"
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    if path.suffix.lower() == ".dng" and TIFF_COMPRESSION_JPEG_XL in _dng_compressions(path):
        return (f"this DNG is compressed with JPEG XL (DNG 1.7, as iOS 18 ProRAW and some Android phones write); "
                f"{libraw} builds commonly cannot decode it. Export an uncompressed or lossless-JPEG DNG instead "
                "(Adobe DNG Converter with 'JPEG XL' compression off, Lightroom 'Export as DNG', or on iPhone a "
                "ProRAW setting/app that writes DNG 1.6), or shoot HEIC/JPEG for an RGB dataset")
    name = type(exc).__name__
    if name == "LibRawIOError":       # LibRaw read past the end of the file
        what = (f"at {_kib(size)} it holds the metadata only, or is truncated" if size < 1024 ** 2 else
                "it is truncated")
        return f"{libraw} reached the end of the file before the end of the image data: {what}; {STUB_ADVICE}"
    if name == "LibRawDataError":
        detail = exc.args[0].decode("ascii", "replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        return f"{libraw} found corrupt or truncated image data ({detail}); {STUB_ADVICE}"
    if name == "LibRawFileUnsupportedError" or "unsupported" in str(exc).lower():
        return (f"{libraw} cannot decode this RAW file ({name}): an unsupported or newer camera model, or a corrupt "
                "file. Update rawpy (pip install -U rawpy) or convert it to DNG with Adobe DNG Converter")
    return f"{libraw} cannot read this RAW file ({name}: {exc}): corrupt or truncated?"


def raw_data_problem(raw, path: Path) -> str | None:
    """Why a RAW file LibRaw opened without error holds no usable image, or ``None``.

    LibRaw decodes a metadata-only file (the image data cut away) without complaint, to a flat
    or noise image of the declared sensor size. Two signs give it away: far fewer bytes than
    the sensor needs (:data:`MIN_RAW_BITS_PER_PIXEL`), and raw values that hardly vary."""
    import numpy as np
    s = raw.sizes
    data = raw.raw_image
    pixels = int(s.raw_width) * int(s.raw_height) * (data.shape[2] if data.ndim == 3 else 1)
    size = Path(path).stat().st_size
    need = pixels * MIN_RAW_BITS_PER_PIXEL / 8
    if size < need:
        return (f"the file holds metadata only or is truncated: {_kib(size)} for a {s.raw_width}×{s.raw_height} "
                f"sensor, which needs at least {_kib(int(need))} even compressed; {STUB_ADVICE}")
    sample = np.asarray(data[::max(1, data.shape[0] // 64), ::max(1, data.shape[1] // 64)])
    if len(np.unique(sample)) < 8:
        return (f"the file holds no image: its {s.raw_width}×{s.raw_height} raw values take "
                f"{len(np.unique(sample))} distinct levels (metadata only, or the image data were cut); "
                f"{STUB_ADVICE}")
    return None


def saturation_level(raw) -> int:
    """The white (saturation) level of an opened RAW: LibRaw's, unless the data exceed it.

    LibRaw takes some files' bit depth wrong — a Nikon film scanner's 16-bit NEF is reported
    with white level 255, and its rendering comes out blown white. Data above twice the
    reported level mean the bit depth is wrong (a few hot pixels a little above it do not);
    the smallest ``2^k − 1`` that holds the data is used then."""
    white = int(raw.white_level)
    top = int(raw.raw_image.max())
    return white if top <= 2 * white else (1 << top.bit_length()) - 1


def read_raw_rgb(path: str | os.PathLike, rendering: RawRendering = RawRendering()) -> np.ndarray:
    """A camera RAW/DNG file rendered to 8-bit sRGB as ``rendering`` says, oriented."""
    try:
        import rawpy
    except ImportError:
        raise CameraFileError("reading camera RAW files needs rawpy (LibRaw): pip install 'dpedkit[raw]'") from None
    path = Path(path)
    try:   # rawpy opens lazily: an undecodable file may fail only when its data are used
        with rawpy.imread(str(path)) as raw:
            problem = raw_data_problem(raw, path)
            sat = saturation_level(raw)
            extra = {} if sat == raw.white_level else {"user_sat": sat}
            rgb = None if problem else raw.postprocess(**rendering.postprocess_args(), **extra)
    except Exception as e:
        raise CameraFileError(raw_open_error(path, e)) from None
    if problem:
        raise CameraFileError(problem)
    return np.ascontiguousarray(rgb)


def read_camera_file(path: str | os.PathLike, rendering: RawRendering = RawRendering()) -> np.ndarray:
    """Read a HEIF or RAW file as 8-bit RGB (raises :class:`CameraFileError`)."""
    kind = kind_of(path)
    if kind == "heif":
        return read_heif(path)
    if kind == "raw":
        return read_raw_rgb(path, rendering)
    raise CameraFileError(f"not a HEIF or camera RAW file: {path}")


def _parse_stamp(stamp, subsec=None) -> float | None:
    if not stamp:
        return None
    try:
        t = dt.datetime.strptime(str(stamp).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    frac = str(subsec or "").strip("\x00 ")
    return t.replace(tzinfo=dt.timezone.utc).timestamp() + (float("0." + frac) if frac.isdigit() else 0.0)


def capture_time(path: str | os.PathLike) -> float | None:
    """EXIF DateTimeOriginal (+ SubSecTimeOriginal) in seconds (the clock read as UTC), or
    ``None`` when the file has none that dpedkit can read.

    JPEG/PNG/TIFF/WebP and HEIC (with pillow-heif) are read with Pillow; TIFF-based RAW files
    (DNG, CR2, NEF, ARW, ORF, PEF, …) with tifffile, falling back to the IFD0 DateTime.
    Other RAW containers (CR3, RAF, RW2) give ``None``: pair them by name or with ``--pairs``.
    """
    path = Path(path)
    kind = kind_of(path)
    if kind == "heif":
        try:
            _pillow_heif()
        except CameraFileError:
            return None
    if kind != "raw":
        from PIL import Image
        try:
            with Image.open(path) as im:
                exif = im.getexif()
                sub = exif.get_ifd(0x8769)
                return _parse_stamp(sub.get(0x9003) or exif.get(0x0132), sub.get(0x9291))
        except Exception:
            return None
    tags = _tiff_tags(path)
    if not tags:
        return None
    return _parse_stamp(tags.get("DateTimeOriginal") or tags.get(36867) or tags.get(306),
                        tags.get("SubsecTimeOriginal") or tags.get(37521))


def is_sidecar(path: str | os.PathLike) -> bool:
    """A file cameras or photo apps write beside photos (edits, thumbnails, videos)."""
    return Path(path).suffix.lower() in SIDECAR_SUFFIXES


def other_file_status(path: str | os.PathLike) -> str:
    """Manifest status of a non-photo file in a camera folder: ``ignored`` for a sidecar
    (not a problem), ``failed`` for a file in a format dpedkit cannot read."""
    return "ignored" if is_sidecar(path) else "failed"


def unreadable_reason(path: str | os.PathLike) -> str:
    """Why a file in a camera folder is not a photo dpedkit reads (by suffix)."""
    s = Path(path).suffix.lower()
    if s in SIDECAR_SUFFIXES:
        return f"not a photo: a {s or 'suffix-less'} sidecar or video file, left alone"
    return (f"not a photo format dpedkit reads ({s or 'no suffix'}): convert it to JPEG, PNG, TIFF, HEIC or a "
            "camera RAW/DNG file")
