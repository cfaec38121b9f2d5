"""Run a function over many items in parallel with joblib, with a progress bar."""

from __future__ import annotations

import os
import sys
from typing import Callable, Iterable, Iterator, TypeVar

import click
from joblib import Parallel, delayed

T = TypeVar("T")
R = TypeVar("R")


def resolve_jobs(jobs: int | None) -> int:
    """``None`` or ``0`` means all cores; negative counts back from all cores as in joblib."""
    n = os.cpu_count() or 1
    if not jobs:
        return n
    return max(1, n + 1 + jobs) if jobs < 0 else jobs


def cv_threads_per_job(jobs: int) -> int:
    """OpenCV threads for one worker so that ``jobs`` workers do not oversubscribe cores."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def imap(fn: Callable[[T], R], items: Iterable[T], jobs: int, label: str = "",
         progress: bool = True) -> Iterator[R]:
    """Yield ``fn(item)`` for every item as each finishes (any order).

    ``jobs == 1`` runs in this process (easy to debug and profile). The progress bar goes
    to stderr and only when it is a terminal or ``progress`` is forced on.
    """
    items = list(items)
    if jobs == 1 or len(items) <= 1:
        results: Iterable[R] = map(fn, items)
    else:
        results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(fn)(item) for item in items)
    show = progress and sys.stderr.isatty()
    with click.progressbar(results, length=len(items), label=label, file=sys.stderr,
                           show_pos=True, show_eta=True) if show else _null(results) as bar:
        yield from bar


class _null:
    def __init__(self, it):
        self.it = it

    def __enter__(self):
        return self.it

    def __exit__(self, *exc):
        return False
