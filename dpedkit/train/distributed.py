"""Data-parallel training over several processes (``torchrun``, DistributedDataParallel).

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address) in the
environment of each process; there is no ``--local_rank`` argument. Every process builds the
same run from the same seed, draws the same *global* batch from the same random stream and
trains on its own contiguous slice of it; DDP averages the gradients over the processes, so
with equal slices N processes take the steps one process takes with the whole batch (up to
float summation order). The batch size stays the global one (50 by default, the paper's).
Only rank 0 writes metrics, samples and checkpoints; a checkpoint holds no per-rank state, so
any number of processes can resume it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks_from_env() -> Ranks:
    """This process's place among those torchrun started (one process: ``Ranks()``)."""
    env = os.environ
    return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def start(ranks: Ranks, cuda: bool) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if ranks.world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(ranks.local)
        dist.init_process_group("nccl" if cuda else "gloo")


def stop() -> None:
    if dist.is_initialized():
        dist.barrier()  # rank 0 may still be writing the last checkpoint
        dist.destroy_process_group()


def batch_slice(batch_size: int, ranks: Ranks) -> slice:
    """This rank's part of a global batch; equal parts, or DDP's gradient mean would be biased."""
    if batch_size % ranks.world:
        raise ValueError(f"the batch size {batch_size} does not split evenly over {ranks.world} processes")
    n = batch_size // ranks.world
    return slice(ranks.rank * n, (ranks.rank + 1) * n)


def mean_over_ranks(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The mean of ``t`` over all processes (a collective: every rank must call it)."""
    if ranks.world == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)  # SUM: gloo has no AVG
    return t / ranks.world


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, world: int, port: int, cfg, quiet: bool) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # share the cores (as torchrun does with OMP_NUM_THREADS): spinning thread pools of
    # several processes on the same cores slow every one of them down many times
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    from dpedkit.train.loop import train
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
    import csv
    from pathlib import Path

    import torch.multiprocessing as mp
    from dpedkit.train.loop import TrainError
    try:
        batch_slice(cfg.batch_size, Ranks(0, nproc, 0))  # fail here, not in every process
        mp.spawn(_worker, args=(nproc, _free_port(), cfg, quiet), nprocs=nproc, join=True)
    except ValueError as e:
        raise TrainError(str(e)) from None
    except mp.ProcessRaisedException as e:
        raise TrainError(str(e).strip().splitlines()[-1]) from None
    with open(Path(cfg.out) / "metrics.csv") as f:
        return list(csv.DictReader(f))
