"""Reading dpedkit checkpoints safely (``weights_only=True``: plain tensors and types only)."""

from __future__ import annotations

from pathlib import Path

import torch
from dpedkit.errors import DpedkitError


class CheckpointError(DpedkitError, ValueError):
    pass


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint dict; a clear :class:`CheckpointError` for anything else."""
    path = Path(path)
    if path.is_dir():  # a run folder
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # bytes we did not write may fail in any way torch's unpickler can
        first_line = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path} is not a readable dpedkit checkpoint (truncated or foreign?): "
                              f"{first_line}") from None
    if not isinstance(ck, dict) or "generator" not in ck:
        raise CheckpointError(f"{path} is not a dpedkit checkpoint (no generator weights)")
    return ck
