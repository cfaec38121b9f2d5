"""Which torch device a run uses (``--device auto|cpu|cuda``)."""

from __future__ import annotations

import torch
from dpedkit.errors import DpedkitError


class DeviceError(DpedkitError, RuntimeError):
    """The device asked for is not available; the message says which."""


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda`` without a GPU raises
    :class:`DeviceError` instead of silently running on the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)
