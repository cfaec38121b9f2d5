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

from dpedkit.errors import OptionError


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
        raise OptionError(f"the batch size {batch_size} does not split evenly over {ranks.world} processes")
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
