"""The on-disk contracts of dpedkit, as code: every stage takes its folder names, file
names and record formats from here (docs/contracts.md describes them in prose).

::

    raw/<phone>/*.jpg, raw/<dslr>/*.jpg                       input (camera folders)
    aligned/<phone>/<name>.png, aligned/<dslr>/<name>.png     align: the aligned, cropped pair
    aligned/previews/<name>.jpg                               align --previews
    aligned/manifest.jsonl                                    align: one record per pair
    aligned/dataset.json                                      align: the camera folder names
    dataset/<phone>/training_data/{<phone>,canon}/<i>.jpg     patches: the DPED layout
    dataset/<phone>/test_data/patches/{<phone>,canon}/<i>.jpg
    dataset/<phone>/test_data/full_size_test_images/<name>.jpg
    dataset/<phone>/patches.csv, patches_report.json, dataset.json
    dataset/{train,test}/huawei_raw/<i>.png, …/canon/<i>.jpg   patches --layout zrr (:class:`ZrrLayout`)

The DSLR folder of the DPED layout is ``canon`` (as in the published dataset and the
original ``load_dataset.py``) unless the user names it otherwise; the real DSLR camera
folder is recorded in ``dataset.json``.
"""

from __future__ import annotations

import json
import os
import typing
from dataclasses import asdict, dataclass
from pathlib import Path

from dpedkit.fs import fsync_file, sync_folders, write_text_atomic
from dpedkit.errors import DpedkitError

MANIFEST = "manifest.jsonl"          # aligned/: one JSON record per pair
DATASET_JSON = "dataset.json"        # aligned/ and dataset/<phone>/: camera names
PREVIEWS = "previews"                # aligned/previews/<name>.jpg
DSLR_NAMES = ("dslr", "canon")       # a raw/ folder with one of these names is the DSLR's
DPED_DSLR = "canon"                  # the DSLR folder name in the DPED layout
STAGING = ".dpedkit"                 # dataset/<phone>/.dpedkit/<name>/: patches' per-photo work
PATCHES_CSV = "patches.csv"
PATCHES_REPORT = "patches_report.json"

# one character per grid window in row-major order, in patches_report.json's window_map
WINDOW_CODES = {"ok": "a", "flat": "f", "outside": "o", "low_ncc": "l",   # a: accepted
                "at_search_limit": "s", "inconsistent": "i", "asymmetric": "b", "sparse": "p", "defocus": "d"}


class LayoutError(DpedkitError, ValueError):
    """A folder does not hold what a stage needs; the message says what to do."""


# ---------------------------------------------------------------- camera names

@dataclass(frozen=True)
class Cameras:
    """The camera folder names of a dataset.

    ``phone``/``dslr``: the folders in ``raw/`` and ``aligned/``. ``dped_dslr``: the DSLR
    folder in the DPED layout (``canon`` unless named otherwise)."""
    phone: str
    dslr: str
    dped_dslr: str = DPED_DSLR

    def write(self, folder: str | os.PathLike) -> None:
        write_text_atomic(Path(folder) / DATASET_JSON, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "Cameras | None":
        """The cameras recorded in ``folder/dataset.json``, or None when it has none."""
        try:
            d = json.loads((Path(folder) / DATASET_JSON).read_text())
            return cls(d["phone"], d["dslr"], d.get("dped_dslr", DPED_DSLR))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def resolve_cameras(folder: str | os.PathLike, phone: str | None, dslr: str | None,
                    ignore: tuple[str, ...] = ()) -> tuple[str, str]:
    """The (phone, DSLR) camera folder names of ``folder`` (``raw/`` or ``aligned/``).

    From the options when both are given; else from ``folder/dataset.json`` (written by
    align); else guessed: exactly two sub-folders (besides ``ignore``), one named ``dslr`` or
    ``canon``. Raises :class:`LayoutError` when they cannot be told apart."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LayoutError(f"{folder} is not a folder")
    if phone and dslr:
        for n in (phone, dslr):
            if not (folder / n).is_dir():
                raise LayoutError(f"camera folder {folder / n} does not exist")
        return phone, dslr
    recorded = Cameras.read(folder)
    if recorded and (phone in (None, recorded.phone)) and (dslr in (None, recorded.dslr)):
        return recorded.phone, recorded.dslr
    dirs = sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in ignore)
    if len(dirs) == 2:
        d = [n for n in dirs if n.lower() in DSLR_NAMES and n != phone]
        if dslr in dirs or len(d) == 1:
            dslr = dslr or d[0]
            return (phone or next(n for n in dirs if n != dslr)), dslr
    raise LayoutError(f"cannot tell the phone and DSLR folders apart in {folder} "
                      f"(found: {', '.join(dirs) or 'none'}); pass --phone NAME --dslr NAME")


# ---------------------------------------------------------------- aligned/

def aligned_paths(aligned: Path, phone_dir: str, dslr_dir: str, name: str) -> tuple[Path, Path]:
    """The aligned pair's two images: ``aligned/<phone>/<name>.png``, ``aligned/<dslr>/<name>.png``."""
    return Path(aligned) / phone_dir / f"{name}.png", Path(aligned) / dslr_dir / f"{name}.png"


def preview_path(aligned: Path, name: str) -> Path:
    return Path(aligned) / PREVIEWS / f"{name}.jpg"


# ---------------------------------------------------------------- manifest journal (manifest.jsonl)


def read_records(path: str | os.PathLike) -> dict[str, dict]:
    """Records by ``name``, the last one for each name winning; unparseable lines skipped."""
    records: dict[str, dict] = {}
    path = Path(path)
    if not path.exists():
        return records
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("name"), str):
                records[rec["name"]] = rec
    return records


class Journal:
    """Append-only writer of records; ``close`` compacts the file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records = read_records(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        """Record one item, durably, after the folders its outputs were renamed into."""
        sync_folders()
        self.records[record["name"]] = record
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        fsync_file(self._f)

    def close(self, keep: set[str] | None = None) -> None:
        """Compact to one line per record (only names in ``keep`` when given)."""
        self._f.close()
        names = sorted(n for n in self.records if keep is None or n in keep)
        text = "".join(json.dumps(self.records[n], sort_keys=True) + "\n" for n in names)
        write_text_atomic(self.path, text)
        sync_folders()


# ---------------------------------------------------------------- the patch layouts (DPED, Zurich RAW-to-RGB)

@dataclass(frozen=True)
class PatchLayout:
    """Paths of one patch dataset below ``root``; ``phone`` and ``dslr`` name the camera folders
    inside the split folders (``dslr`` is ``canon`` by default). Subclasses fix the folder
    names (:class:`DpedLayout`, :class:`ZrrLayout`)."""
    root: Path
    phone: str
    dslr: str = DPED_DSLR

    SPLIT_DIRS: typing.ClassVar[dict[str, str]] = {}
    PHONE_SUFFIX: typing.ClassVar[str] = ""       # the phone's patch folder is <phone><suffix>
    PHONE_EXT: typing.ClassVar[str] = "jpg"       # phone patches and full-size images
    FULL_SIZE: typing.ClassVar[str] = ""          # full-size test images' folder, {phone} filled in

    def split_dir(self, split: str) -> Path:
        return Path(self.root) / self.SPLIT_DIRS[split]

    def patch_dir(self, split: str, camera: str) -> Path:
        """Folder of the numbered patches ``0 … N-1`` of ``camera`` ("phone" or "dslr")."""
        return self.split_dir(split) / (self.phone + self.PHONE_SUFFIX if camera == "phone" else self.dslr)

    @classmethod
    def ext(cls, camera: str) -> str:
        """File suffix (no dot) of ``camera``'s patches: the DSLR's are always JPEG."""
        return cls.PHONE_EXT if camera == "phone" else "jpg"

    def patch(self, split: str, camera: str, index: int) -> Path:
        return self.patch_dir(split, camera) / f"{index}.{self.ext(camera)}"

    @property
    def full_size_dir(self) -> Path:
        return Path(self.root) / self.FULL_SIZE.format(phone=self.phone)

    @property
    def staging(self) -> Path:
        return Path(self.root) / STAGING

    @property
    def patches_csv(self) -> Path:
        return Path(self.root) / PATCHES_CSV

    @property
    def report(self) -> Path:
        return Path(self.root) / PATCHES_REPORT


@dataclass(frozen=True)
class DpedLayout(PatchLayout):
    """The DPED layout, ``root = dataset/<phone>``::

        <root>/training_data/{<phone>,<dslr>}/<i>.jpg
        <root>/test_data/patches/{<phone>,<dslr>}/<i>.jpg
        <root>/test_data/full_size_test_images/<name>.jpg
    """
    SPLIT_DIRS: typing.ClassVar[dict[str, str]] = {"train": "training_data", "test": "test_data/patches"}
    FULL_SIZE: typing.ClassVar[str] = "test_data/full_size_test_images"


def dataset_root(data_dir: str | os.PathLike, phone: str | None = None) -> Path:
    """The folder holding ``training_data/`` and ``test_data/``: ``DATA_DIR/<phone>`` or DATA_DIR
    itself. Without ``phone``, the only sub-folder of DATA_DIR that holds a dataset, if one."""
    root = Path(data_dir)

    def holds(p: Path) -> bool:
        return (p / "test_data").is_dir() or (p / "training_data").is_dir()
    if phone:
        return root / phone if holds(root / phone) else root
    if holds(root):
        return root
    found = [p for p in sorted(root.iterdir()) if p.is_dir() and holds(p)] if root.is_dir() else []
    return found[0] if len(found) == 1 else root


def dataset_cameras(data_dir: str | os.PathLike, phone: str | None = None,
                    dslr: str | None = None) -> tuple[Path, str, str]:
    """(root, phone folder, DSLR folder) of a DPED dataset: the options where given, else
    what ``patches`` recorded in ``dataset.json``, else the DPED defaults (DSLR ``canon``).

    ``--dslr`` may name the DSLR as the user knows it (its ``raw/`` folder, recorded as
    ``dslr`` in ``dataset.json``): it then means the DPED folder recorded beside it
    (``canon``). Raises :class:`LayoutError`, listing the folders the dataset has, when the
    camera folders are not there."""
    root = dataset_root(data_dir, phone)
    rec = Cameras.read(root)
    named_after_phone = any((root / d / root.name).is_dir() for d in DpedLayout.SPLIT_DIRS.values())
    phone = phone or (rec.phone if rec else None) or (root.name if named_after_phone else None)
    if not phone:
        raise LayoutError(f"cannot tell the phone folder of {data_dir}: pass --phone NAME")
    if dslr and rec and dslr == rec.dslr and not any((root / d / dslr).is_dir() for d in DpedLayout.SPLIT_DIRS.values()):
        dslr = rec.dped_dslr
    dslr = dslr or (rec.dped_dslr if rec else DPED_DSLR)
    _check_camera_folders(root, phone, dslr, rec)
    return root, phone, dslr


def _check_camera_folders(root: Path, phone: str, dslr: str, rec: Cameras | None) -> None:
    for split_dir in (root / d for d in DpedLayout.SPLIT_DIRS.values()):
        if not split_dir.is_dir():
            continue
        have = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        missing = [n for n in (phone, dslr) if n not in have]
        if missing:
            known = (f"; dataset.json records the phone '{rec.phone}' and the DSLR '{rec.dslr}' "
                     f"(folder '{rec.dped_dslr}')" if rec else "")
            raise LayoutError(f"{split_dir} has no folder {', '.join(m + '/' for m in missing)} (it has: "
                              f"{', '.join(h + '/' for h in have) or 'no folders'}){known}: pass --phone and "
                              f"--dslr naming its folders")


# ---------------------------------------------------------------- the Zurich RAW-to-RGB (PyNET) layout

RAW_JSON = "raw.json"                # dataset/: pattern, value convention and levels of the mosaics


ZRR_PHONE = "huawei"   # the phone folders' prefix in the original PyNET code: huawei_raw, huawei_full_resolution


@dataclass(frozen=True)
class ZrrLayout(PatchLayout):
    """Paths of a RAW-to-RGB dataset in the Zurich RAW-to-RGB / PyNET layout, ``root = dataset``::

        <root>/{train,test}/<folder>_raw/<i>.png     1-channel 16-bit Bayer mosaic, R at (0,0), B at (1,1)
        <root>/{train,test}/<dslr>/<i>.jpg           the DSLR patch (``dslr`` is ``canon`` by default)
        <root>/test/<folder>_full_resolution/<name>.png   whole aligned test mosaics
        <root>/raw.json, patches.csv, patches_report.json, dataset.json

    ``folder`` is ``huawei`` by default: the original PyNET code (``load_dataset.py``,
    ``load_data.py``, ``test_model.py``) hard-codes ``huawei_raw``, ``huawei_full_resolution``
    and ``canon``, as the DPED loader hard-codes ``canon``. ``phone`` stays the aligned
    folder's (the real camera's) name; dataset.json and raw.json record both.
    """
    folder: str = ZRR_PHONE

    SPLIT_DIRS: typing.ClassVar[dict[str, str]] = {"train": "train", "test": "test"}
    PHONE_SUFFIX: typing.ClassVar[str] = "_raw"
    PHONE_EXT: typing.ClassVar[str] = "png"
    FULL_SIZE: typing.ClassVar[str] = "test/{phone}_full_resolution"

    def patch_dir(self, split: str, camera: str) -> Path:
        return self.split_dir(split) / (self.folder + self.PHONE_SUFFIX if camera == "phone" else self.dslr)

    @property
    def full_size_dir(self) -> Path:
        return Path(self.root) / self.FULL_SIZE.format(phone=self.folder)

    @property
    def raw_json(self) -> Path:
        return Path(self.root) / RAW_JSON
