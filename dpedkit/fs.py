"""Filesystem transactions every stage needs, images or not.

- atomic, durable writes: a temporary file in the destination folder, fsynced, renamed into
  place, so a killed run never leaves a half-written output under its final name and a power
  loss never leaves a renamed but empty one; :func:`remove_stale_temps` deletes the
  temporaries a killed run left;
- folder fsyncs are batched: a rename marks its folder, and :func:`sync_folders` fsyncs every
  marked folder once — the runner calls it when an item ends, the journal before it records
  the item, so a record that says ``ok`` is durable only after the outputs it names are;
- :func:`file_fingerprint`: a cheap identity of an input's content (resume checks);
- :func:`exclusive`: one writer per output folder. An advisory ``flock`` on
  ``<folder>/.dpedkit.lock``: the kernel releases it when the holder exits, however it exits
  (SIGKILL included), so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from dpedkit.errors import StoppedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking
    fcntl = None

TMP_PREFIX = ".dpedkit-tmp-"

# DPEDKIT_FSYNC=0 trades durability after a power loss for speed (a scratch disk, a benchmark)
DURABLE = os.environ.get("DPEDKIT_FSYNC", "1") != "0"
_renamed_into: set[str] = set()      # folders with a rename not yet fsynced (this process)


class OutputWriteError(StoppedError, RuntimeError):
    """An output could not be written (disk full, no permission, a file where a folder
    should be): the run must stop, since every later output would fail the same way."""


def make_output_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents), or raise :class:`OutputWriteError` saying why not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputWriteError(f"cannot create the output folder {folder}: {e.strerror or e}") from None
    return folder


def _file_mode() -> int:
    # mkstemp creates files readable by their owner only; outputs get the usual 0666 & ~umask
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path`` (for a writer that needs a file name, e.g.
    ``torch.onnx.export``), to be passed to :func:`commit` or deleted. Its prefix is the one
    :func:`remove_stale_temps` cleans; it follows the umask like every output."""
    path = Path(path)
    try:
        fd, tmp = _atomic_target(path)
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
    except OSError as e:
        raise OutputWriteError(f"cannot write {path}: {e.strerror or e}") from None
    return Path(tmp)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the finished temporary ``tmp`` to ``path``: its data fsynced first, the folder
    marked for :func:`sync_folders`."""
    if DURABLE:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    replace(tmp, path)


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``os.replace`` that marks ``dst``'s folder for :func:`sync_folders` (the data of
    ``src`` must already be durable, e.g. a hard link to a committed file)."""
    os.replace(src, dst)
    _renamed_into.add(os.path.dirname(os.path.abspath(dst)))


def fsync_file(f) -> None:
    """Flush and fsync the open file ``f`` (an append-only journal); a no-op beyond the flush
    with ``DPEDKIT_FSYNC=0``."""
    f.flush()
    if DURABLE:
        os.fsync(f.fileno())


def sync_folders() -> int:
    """fsync each folder a rename went into since the last call (once however many files it
    got); returns how many. A no-op with ``DPEDKIT_FSYNC=0``."""
    folders = list(_renamed_into)
    _renamed_into.clear()
    if not DURABLE:
        return 0
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except FileNotFoundError:       # removed since (a stage folder after linking)
            continue
        try:
            os.fsync(fd)
        except OSError:                 # some filesystems cannot fsync a folder: nothing more to do
            pass
        finally:
            os.close(fd)
    return len(folders)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, an fsync and a rename (the
    folder's fsync is batched: :func:`sync_folders`)."""
    path = Path(path)
    try:
        fd, tmp = _atomic_target(path)
    except OSError as e:
        raise OutputWriteError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), FILE_MODE)
            f.flush()
            if DURABLE:
                os.fsync(f.fileno())
        replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputWriteError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files a killed run left below ``folder``; returns how many."""
    n = 0
    if Path(folder).is_dir():
        for p in Path(folder).rglob(TMP_PREFIX + "*"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def file_fingerprint(path: str | os.PathLike) -> str:
    """A cheap identity of a file's content: size, mtime and a hash of its first 64 KiB."""
    st = os.stat(path)
    with open(path, "rb") as f:
        head = hashlib.sha1(f.read(65536)).hexdigest()[:16]
    return f"{st.st_size}:{st.st_mtime_ns}:{head}"


LOCK_NAME = ".dpedkit.lock"


class LockError(StoppedError, RuntimeError):
    """Another dpedkit run holds the output folder."""


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
