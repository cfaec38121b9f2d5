"""Start a data-parallel training run on several local processes, as ``torchrun
--nproc-per-node N`` would (the per-process pieces are in :mod:`dpedkit.train.distributed`;
this module sits above both it and the loop, so neither imports the other back)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from dpedkit.train.distributed import Ranks, _free_port, batch_slice
from dpedkit.train.loop import TrainError, train


def _worker(local_rank: int, world: int, port: int, cfg, quiet: bool) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # share the cores (as torchrun does with OMP_NUM_THREADS): spinning thread pools of
    # several processes on the same cores slow every one of them down many times
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    try:
        train(cfg, log=(lambda *_: None) if quiet else print, progress=not quiet)
    finally:
        shutdown_decoding_pool()


def shutdown_decoding_pool() -> None:
    """Stop joblib's idle loky workers (they decoded the patches). Call it at the end of a
    torch.multiprocessing child: such a child waits at exit for its own children, and idle
    loky workers would keep it alive for their 300 s timeout."""
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)


def train_on_processes(cfg, nproc: int, quiet: bool = False) -> list[dict]:
    """Train ``cfg`` on ``nproc`` local processes, as ``torchrun --nproc-per-node`` would;
    returns the rows of ``metrics.csv``.

    The Python counterpart of ``dpedkit train --nproc-per-node N``; on a GPU machine each
    process takes the GPU of its local rank. An error in a process is raised here as a
    :class:`~dpedkit.train.loop.TrainError` carrying that process's message."""
    import torch.multiprocessing as mp
    try:
        batch_slice(cfg.batch_size, Ranks(0, nproc, 0))  # fail here, not in every process
        mp.spawn(_worker, args=(nproc, _free_port(), cfg, quiet), nprocs=nproc, join=True)
    except ValueError as e:
        raise TrainError(str(e)) from None
    except mp.ProcessRaisedException as e:
        raise TrainError(str(e).strip().splitlines()[-1]) from None
    with open(Path(cfg.out) / "metrics.csv") as f:
        return list(csv.DictReader(f))
