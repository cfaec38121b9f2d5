"""DPED-layout patch sets held in memory as uint8 tensors (the DPED layout: :class:`dpedkit.layout.DpedLayout`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed

from dpedkit.imageio import ImageReadError, read_image
from dpedkit.layout import DpedLayout
from dpedkit.errors import DpedkitError


class DatasetError(DpedkitError, ValueError):
    pass


def _read(path: Path, size: int | None) -> np.ndarray:
    try:
        img = read_image(path)
    except ImageReadError as e:
        raise ImageReadError(f"{path.name}: {e}") from None   # the reader's message names no file
    if size is not None and img.shape[:2] != (size, size):
        raise ImageReadError(f"{path.name} is {img.shape[1]}x{img.shape[0]}, not {size}x{size}")
    return img


def load_split(root: str | Path, phone: str, dslr: str, split: str, limit: int | None = None,
               size: int | None = 100, jobs: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(phone, dslr)`` uint8 tensors ``(N, 3, H, W)`` of ``<i>.jpg`` for i = 0..N-1, N counted
    as the original loader counts (files in the phone folder), capped at ``limit``."""
    layout = DpedLayout(Path(root).absolute(), phone, dslr)   # absolute: pooled workers keep their own working directory
    base, pdir, ddir = layout.split_dir(split), layout.patch_dir(split, "phone"), layout.patch_dir(split, "dslr")
    if not pdir.is_dir() or not ddir.is_dir():
        raise DatasetError(f"{base} needs the folders {phone}/ and {dslr}/ (the DPED layout)")
    n = sum(1 for p in pdir.iterdir() if p.is_file() and p.suffix.lower() == ".jpg")
    n = min(n, limit) if limit else n
    if n == 0:
        raise DatasetError(f"no patches in {pdir}")
    paths = [(pdir / f"{i}.jpg", ddir / f"{i}.jpg") for i in range(n)]
    if n <= 256:   # one batch of the pool: starting its worker processes costs more than reading these
        jobs = 1
    try:
        pairs = Parallel(n_jobs=jobs, batch_size=256)(delayed(lambda a, b: (_read(a, size), _read(b, size)))(a, b)
                                                      for a, b in paths)
    except ImageReadError as e:
        raise DatasetError(f"bad patch in {base}: {e}") from None
    if len({p.shape for pair in pairs for p in pair}) != 1:
        raise DatasetError(f"the patches in {base} differ in size")
    ph = torch.from_numpy(np.stack([p for p, _ in pairs])).permute(0, 3, 1, 2).contiguous()
    ds = torch.from_numpy(np.stack([d for _, d in pairs])).permute(0, 3, 1, 2).contiguous()
    return ph, ds
