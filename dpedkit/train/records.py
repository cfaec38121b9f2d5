"""What a run records besides checkpoints: ``metrics.csv`` (the source of truth for every
figure), its TensorBoard copy (``--tensorboard``), and the losses shown on the progress line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from dpedkit.fs import write_text_atomic
from dpedkit.train.config import TrainError
from dpedkit.train.trainer import LOSS_KEYS, METRIC_FIELDS


class LossReadout:
    """Current losses for the progress line without stalling the GPU.

    On CUDA the running means are copied to pinned host memory without blocking, and shown
    once the copy's event has completed (a few iterations late); on the CPU they are read
    directly.
    """

    def __init__(self, device: torch.device, n: int = len(LOSS_KEYS), text=None):
        self.cuda = device.type == "cuda"
        self.format = text
        self.host = torch.zeros(n, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None
        self.shown: list[float] | None = None
        self.pending = False

    def push(self, mean: torch.Tensor) -> None:
        if self.event is None:
            self.shown = mean.tolist()
            return
        if self.pending:
            if not self.event.query():
                return  # the previous copy is still in flight: keep showing the older values
            self.shown = self.host.tolist()
        self.host.copy_(mean, non_blocking=True)
        self.event.record()
        self.pending = True

    def text(self) -> str:
        if self.shown is None or self.format is None:
            return ""
        return self.format(self.shown)


def write_rows(path: Path, rows: list[dict], fields: list[str] = METRIC_FIELDS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def read_rows(path: Path, upto: int) -> list[dict]:
    """The rows of ``metrics.csv`` up to iteration ``upto`` (a killed run's later rows go)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [dict(r) for r in csv.DictReader(f) if int(r["iteration"]) <= upto]


class Board:
    """TensorBoard's copy of every metric row and sample (``--tensorboard``)."""

    def __init__(self, out: Path, purge_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrainError("--tensorboard needs the tensorboard package: pip install 'dpedkit[tensorboard]'") from None
        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=purge_step)

    def add(self, row: dict, sample: np.ndarray) -> None:
        step = row["iteration"]
        for k, v in row.items():
            if k not in ("iteration", "seconds"):
                self.writer.add_scalar(("test/" if k.startswith("test_") else "train/") + k.removeprefix("test_"),
                                       float(v), step)
        self.writer.add_image("samples (phone | enhanced | DSLR)", sample, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
