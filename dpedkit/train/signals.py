"""Stopping a run on SIGINT/SIGTERM after the current iteration, every process at the same one."""

from __future__ import annotations

import signal
import threading

import torch

from dpedkit.errors import DpedkitError
from dpedkit.train.distributed import Ranks


class Interrupted(DpedkitError):
    """Training stopped on a signal after saving ``last.pt``; ``exit_code`` is 128 + signal,
    ``resume_command`` the command that continues the run with the options it started with."""

    def __init__(self, signum: int, message: str, resume_command: str = ""):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
        self.resume_command = resume_command


class StopSignals:
    """SIGINT/SIGTERM set a flag the loop checks after each iteration; a second signal stops
    at once (KeyboardInterrupt). Only installed in the main thread (Python's rule)."""

    def __init__(self):
        self.signum = 0
        self.saved = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def stop_requested(signals: StopSignals, iteration: int, ranks: Ranks, device: torch.device) -> bool:
    """Whether to stop now. With several processes every one must stop after the same
    iteration: the flag is agreed on (max over processes) every 10 iterations."""
    if ranks.world == 1:
        return bool(signals.signum)
    if iteration % 10:
        return False
    import torch.distributed as dist
    flag = torch.tensor([float(signals.signum)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() and not signals.signum:
        signals.signum = int(flag.item())
    return bool(flag.item())
