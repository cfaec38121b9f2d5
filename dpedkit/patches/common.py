"""What both patch layouts (DPED and Zurich RAW-to-RGB) share besides the stage itself: the
train/test split, safe names, the aligned pair's size check, and linking staged files into place."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from dpedkit.fs import replace
from dpedkit.imageio import ImageReadError


def is_plain_name(name: str) -> bool:
    """A pair name usable as a file name inside one folder: no separators, no '..'."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\x00")


def split_hash(name: str, seed: int) -> float:
    """A stable number in [0, 1) for a photo: the same for the same name and seed forever."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") / 2 ** 64


def assign_splits(names: list[str], seed: int, test_fraction: float, test_photos: int | None) -> dict[str, str]:
    """``train``/``test`` per photo. With a fraction, a photo's split depends only on its own
    name, so adding photos later moves no existing one; ``test_photos`` takes the N lowest."""
    if test_photos is not None:
        test = set(sorted(names, key=lambda n: split_hash(n, seed))[:test_photos])
        return {n: "test" if n in test else "train" for n in names}
    return {n: "test" if split_hash(n, seed) < test_fraction else "train" for n in names}


def link_into_place(src: Path, dst: Path) -> None:
    """Hard-link (else copy) ``src`` to ``dst`` through a temporary name, replacing ``dst``."""
    tmp = dst.with_name(f".dpedkit-tmp-{dst.name}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another filesystem or no hard links: copy
        shutil.copyfile(src, tmp)
    replace(tmp, dst)      # marks the folder for fs.sync_folders


def same_size(phone_hw: tuple[int, int], dslr: np.ndarray) -> None:
    """Raise :class:`ImageReadError` unless the aligned DSLR image is ``phone_hw`` (rows, columns)."""
    if tuple(dslr.shape[:2]) != tuple(phone_hw):
        raise ImageReadError(f"the aligned images differ in size ({phone_hw[1]}x{phone_hw[0]} vs "
                             f"{dslr.shape[1]}x{dslr.shape[0]})")
