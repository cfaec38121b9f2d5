"""Run a function over many items in parallel with joblib, with a progress display
(:mod:`dpedkit.progress`): in worker processes on this machine, or on the workers of an
existing Dask cluster (joblib's dask backend) when a scheduler address is given."""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, TypeVar

from joblib import Parallel, delayed, parallel_config

from dpedkit.progress import iterate
from dpedkit.errors import StoppedError

T = TypeVar("T")
R = TypeVar("R")


def resolve_jobs(jobs: int | None) -> int:
    """``None`` or ``0`` means all cores; negative counts back from all cores as in joblib."""
    n = os.cpu_count() or 1
    if not jobs:
        return n
    return max(1, n + 1 + jobs) if jobs < 0 else jobs


def cv_threads_per_job(jobs: int, scheduler: str | None = None) -> int:
    """OpenCV threads for one task so that ``jobs`` workers do not oversubscribe cores.

    On a Dask cluster every worker thread runs a task of its own, so each task gets one
    OpenCV thread (joblib caps NumPy's threads on Dask workers, not OpenCV's)."""
    if scheduler:
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


CONNECT_TIMEOUT_S = 20


class ClusterError(StoppedError, RuntimeError):
    """The Dask cluster cannot be used (extra not installed, unreachable) or failed mid-run."""


def workers_text(jobs: int, scheduler: str | None) -> str:
    return f"the Dask cluster at {scheduler}" if scheduler else f"{jobs} worker(s)"


def imap(fn: Callable[[T], R], items: Iterable[T], jobs: int, label: str = "",
         progress: bool = True, scheduler: str | None = None) -> Iterator[R]:
    """Yield ``fn(item)`` for every item as each finishes (any order).

    ``jobs == 1`` runs in this process (easy to debug and profile). ``scheduler``, a Dask
    scheduler address (``tcp://host:8786``), runs the items on that cluster's workers
    instead and ignores ``jobs``; ``fn`` and its items must then be picklable and name
    paths the workers can reach. Progress goes to stderr: a bar on a terminal, else a plain
    line a minute (:func:`dpedkit.progress.iterate`).
    """
    items = list(items)
    if scheduler and items:  # nothing to do: no need for the cluster to be up
        results: Iterable[R] = _on_dask(fn, items, scheduler)
    elif jobs == 1 or len(items) <= 1:
        results = map(fn, items)
    else:
        results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(fn)(item) for item in items)
    yield from iterate(results, len(items), label, enabled=progress)


def _on_dask(fn: Callable[[T], R], items: list[T], address: str) -> Iterator[R]:
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--dask-scheduler needs the dask extra: pip install 'dpedkit[dask]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    from dpedkit.fs import OutputWriteError
    with client, parallel_config(backend="dask", client=client):
        try:
            # a task whose worker dies is run again on another worker by the scheduler
            yield from Parallel(return_as="generator_unordered")(delayed(fn)(item) for item in items)
        except OutputWriteError:
            raise
        except Exception as e:  # tasks record their own failures; this is the cluster's
            raise ClusterError(f"the Dask cluster failed: {type(e).__name__}: {e}") from None

