"""One writer per output folder: a second run on the same folder stops with a clear message.

An advisory ``flock`` on ``<folder>/.dpedkit.lock``: the kernel releases it when the holder
exits, however it exits (SIGKILL included), so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from dpedkit.imageio import OutputWriteError, make_output_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking
    fcntl = None

LOCK_NAME = ".dpedkit.lock"


class LockError(RuntimeError):
    pass


@contextmanager
def exclusive(folder: str | Path, what: str):
    """Hold the folder's lock for the duration of the block, or raise :class:`LockError`."""
    folder = make_output_dir(folder)
    if fcntl is None:
        yield
        return
    try:
        f = open(folder / LOCK_NAME, "a+")
    except OSError as e:
        raise OutputWriteError(f"cannot write in {folder}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise LockError(f"{folder} is in use by another dpedkit run ({holder}); "
                            f"wait for it to finish, or stop it and re-run (finished work is kept)") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {what}")
        f.flush()
        yield
    finally:
        f.close()  # releases the lock
