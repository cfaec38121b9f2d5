"""Pair the photos of the two cameras in ``raw/`` (docs/contracts.md §1).

Every photo ends up in exactly one :class:`Pair`: matched (both paths), or unpaired (one
path and a reason). Paths are POSIX strings relative to ``raw/``, e.g. ``"phone/IMG_1.jpg"``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dpedkit.imageio import list_images
from dpedkit.errors import DpedkitError

class PairingError(DpedkitError, ValueError):
    """The pairing cannot start (bad folders or CSV); the message says what to do."""


@dataclass(frozen=True)
class Pair:
    name: str                 # the stem of the output files
    phone: str | None
    dslr: str | None
    reason: str | None = None  # why it is not a usable pair (unpaired or ambiguous)
    paired_by: str | None = None  # "time" or "name" when pair_by_time paired it


def _rel(camera: str, p: Path) -> str:
    return f"{camera}/{p.name}"


def _unpaired(camera_photos: dict[str, str], used: set[str], why: str) -> list[Pair]:
    return [Pair(name=Path(rel).stem, phone=rel if cam == "phone" else None, dslr=rel if cam == "dslr" else None,
                 reason=f"no {other_of(cam)} photo to pair with ({why})")
            for rel, cam in camera_photos.items() if rel not in used]


def other_of(cam: str) -> str:
    return "DSLR" if cam == "phone" else "phone"


def pair_by_name(raw: Path, phone: str, dslr: str) -> list[Pair]:
    """Pair photos with the same stem (case-insensitive, extension ignored)."""
    by_stem: dict[str, dict[str, list[Path]]] = {}
    for cam, folder in (("phone", phone), ("dslr", dslr)):
        for p in list_images(Path(raw) / folder):
            by_stem.setdefault(p.stem.lower(), {"phone": [], "dslr": []})[cam].append(p)
    pairs = []
    for stem in sorted(by_stem):
        ph, ds = by_stem[stem]["phone"], by_stem[stem]["dslr"]
        name = (ph or ds)[0].stem
        if len(ph) > 1 or len(ds) > 1:
            files = ", ".join(_rel(phone, p) for p in ph) + (", " if ph and ds else "") + ", ".join(_rel(dslr, p) for p in ds)
            pairs.append(Pair(name, _rel(phone, ph[0]) if ph else None, _rel(dslr, ds[0]) if ds else None,
                              reason=f"ambiguous: several photos share the stem '{name}' ({files})"))
        elif ph and ds:
            pairs.append(Pair(name, _rel(phone, ph[0]), _rel(dslr, ds[0])))
        elif ph:
            pairs.append(Pair(name, _rel(phone, ph[0]), None, reason="no DSLR photo with the same name"))
        else:
            pairs.append(Pair(name, None, _rel(dslr, ds[0]), reason="no phone photo with the same name"))
    return pairs


def safe_relative(value: str, camera_dir: Path) -> Path:
    """``camera_dir / value`` if ``value`` is a relative path that stays inside; else raises."""
    p = PurePosixPath(value.strip().replace("\\", "/"))
    if not value.strip() or p.is_absolute() or ".." in p.parts:
        raise PairingError(f"path '{value}' must be relative to its camera folder, without '..'")
    return Path(camera_dir) / p


def pair_from_csv(raw: Path, phone: str, dslr: str, csv_path: Path) -> list[Pair]:
    """Pairs listed in a CSV with columns ``phone,dslr`` (paths relative to the camera
    folders); photos the CSV does not mention are reported unpaired."""
    raw = Path(raw)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"phone", "dslr"} <= set(reader.fieldnames):
                raise PairingError(f"{csv_path} needs a header with the columns 'phone' and 'dslr'")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise PairingError(f"{csv_path} is not a readable UTF-8 CSV file: {e}") from None
    pairs, used, names = [], set(), set()
    for i, row in enumerate(rows, start=2):
        try:
            pp = safe_relative(row["phone"] or "", raw / phone)
            dp = safe_relative(row["dslr"] or "", raw / dslr)
        except PairingError as e:
            pairs.append(Pair(f"csv-line-{i}", None, None, reason=f"{csv_path.name} line {i}: {e}"))
            continue
        rp, rd = f"{phone}/{pp.relative_to(raw / phone).as_posix()}", f"{dslr}/{dp.relative_to(raw / dslr).as_posix()}"
        name = pp.stem
        if name.lower() in names:
            pairs.append(Pair(f"{name}-line-{i}", rp, rd, reason=f"{csv_path.name} line {i}: the phone stem '{name}' is already used"))
            continue
        names.add(name.lower())
        missing = [r for r, p in ((rp, pp), (rd, dp)) if not p.is_file()]
        pairs.append(Pair(name, rp, rd, reason=f"listed in {csv_path.name} but missing: {', '.join(missing)}" if missing else None))
        used.update((rp, rd))
    photos = {_rel(phone, p): "phone" for p in list_images(raw / phone)}
    photos.update({_rel(dslr, p): "dslr" for p in list_images(raw / dslr)})
    return pairs + _unpaired(photos, used, f"not listed in {csv_path.name}")


def capture_time(path: Path) -> float | None:
    """EXIF DateTimeOriginal (+ SubSecTimeOriginal) as seconds, or ``None`` when absent
    (JPEG, HEIC and TIFF-based RAW files: :func:`dpedkit.camera_files.capture_time`)."""
    from dpedkit.camera_files import capture_time as camera_capture_time
    return camera_capture_time(path)


def pair_by_time(raw: Path, phone: str, dslr: str, max_skew: float = 2.0, clock_offset: float = 0.0) -> list[Pair]:
    """Pair each phone photo with the DSLR photo taken nearest in time (EXIF capture time;
    ``clock_offset`` seconds are added to the DSLR's clock), within ``max_skew`` seconds,
    closest pairs first, each photo used once."""
    raw = Path(raw)
    times = {}
    for cam, folder in (("phone", phone), ("dslr", dslr)):
        for p in list_images(raw / folder):
            t = capture_time(p)
            times[_rel(folder, p)] = (cam, None if t is None else t + (clock_offset if cam == "dslr" else 0.0))
    ph = [(r, t) for r, (c, t) in times.items() if c == "phone" and t is not None]
    ds = [(r, t) for r, (c, t) in times.items() if c == "dslr" and t is not None]
    cands = sorted((abs(tp - td), rp, rd) for rp, tp in ph for rd, td in ds if abs(tp - td) <= max_skew)
    pairs, used = [], set()
    for _, rp, rd in cands:
        if rp not in used and rd not in used:
            used.update((rp, rd))
            pairs.append(Pair(Path(rp).stem, rp, rd, paired_by="time"))
    # photos without a capture time fall back to their names (same stem, case-insensitive)
    by_stem: dict[tuple[str, str], list[str]] = {}
    for rel, (cam, t) in times.items():
        if rel not in used:
            by_stem.setdefault((cam, Path(rel).stem.lower()), []).append(rel)
    for rel, (cam, t) in sorted(times.items()):
        if t is not None or rel in used:
            continue
        other = [r for r in by_stem.get(("dslr" if cam == "phone" else "phone", Path(rel).stem.lower()), [])
                 if r not in used]
        mine = [r for r in by_stem.get((cam, Path(rel).stem.lower()), []) if r not in used]
        if len(other) == 1 and len(mine) == 1:
            rp, rd = (rel, other[0]) if cam == "phone" else (other[0], rel)
            used.update((rp, rd))
            pairs.append(Pair(Path(rp).stem, rp, rd, paired_by="name"))
    for rel, (cam, t) in times.items():
        if rel not in used:
            why = ("no EXIF capture time and no photo of the same name" if t is None
                   else f"no {other_of(cam)} photo within {max_skew:g} s")
            pairs.append(Pair(Path(rel).stem, rel if cam == "phone" else None, rel if cam == "dslr" else None, reason=why))
    return sorted(pairs, key=lambda p: p.name.lower())


def other_file_pairs(raw: Path, phone: str, dslr: str) -> list[Pair]:
    """Files of the camera folders that are not photos, each as an unusable "pair" with the
    reason, so that every file is either used or reported."""
    from dpedkit.imageio import other_files
    out = []
    for cam, folder in (("phone", phone), ("dslr", dslr)):
        for p, why in other_files(Path(raw) / folder):
            rel = _rel(folder, p)
            out.append(Pair(p.stem, rel if cam == "phone" else None, rel if cam == "dslr" else None, reason=why))
    return out
