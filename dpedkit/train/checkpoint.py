"""A run's ``checkpoints/`` folder, owned by one :class:`CheckpointSaver` (after timm's).

::

    last.pt         the full training state (resume); written last at an evaluation, so a
                    run killed while saving resumes from the previous evaluation
    iter_<n>.pt     the last ``keep`` evaluations' full states (older ones pruned)
    best.pt         generator weights at the best test PSNR so far (small)
    generator.pt    the latest generator weights (small; enhance/export take it)

Every file is written atomically (a temporary file renamed into place, :mod:`dpedkit.fs`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from dpedkit.fs import sync_folders, write_bytes_atomic


def save_atomic(path: Path, obj: dict) -> None:
    """``torch.save`` ``obj`` to ``path`` durably: a temporary file, fsynced, renamed, and the
    folder fsynced (a checkpoint is written rarely: no batching to wait for)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())
    sync_folders()


class CheckpointSaver:
    """Writes last / best / history / generator-only checkpoints of a
    :class:`~dpedkit.train.trainer.Trainer` and prunes the history.

    ``best`` is the best test PSNR (dB) so far, from the run's earlier metric rows."""

    def __init__(self, folder: Path, keep: int, best: float = -np.inf):
        self.folder, self.keep, self.best = Path(folder), keep, best

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    def history(self) -> list[tuple[int, Path]]:
        """``(iteration, path)`` of the ``iter_<n>.pt`` files, oldest first."""
        found = ((p.stem.split("_", 1)[1], p) for p in self.folder.glob("iter_*.pt"))
        return sorted((int(n), p) for n, p in found if n.isdigit())

    def save_evaluation(self, trainer, test_psnr: float, seconds: float) -> None:
        """The files of an evaluation at ``trainer.iteration`` (running loss sums reset)."""
        if test_psnr > self.best:
            self.best = test_psnr
            save_atomic(self.folder / "best.pt", trainer.generator_state(test_psnr=test_psnr))
        save_atomic(self.folder / "generator.pt", trainer.generator_state(test_psnr=test_psnr))
        if self.keep > 0:
            save_atomic(self.folder / f"iter_{trainer.iteration}.pt", trainer.state(running={"n": 0}, seconds=seconds))
            self.prune()
        # last: a run killed before this rename resumes from the previous evaluation
        save_atomic(self.last, trainer.state(running={"n": 0}, seconds=seconds))

    def save_last(self, trainer, running: dict, seconds: float) -> None:
        """``last.pt`` between evaluations (on a signal), with the running loss sums."""
        save_atomic(self.last, trainer.state(running=running, seconds=seconds))

    def prune(self) -> None:
        """Delete all but the ``keep`` most recent ``iter_<n>.pt`` (``keep`` 0: none is written,
        none deleted)."""
        for _, p in self.history()[:-self.keep] if self.keep > 0 else ():
            p.unlink(missing_ok=True)
