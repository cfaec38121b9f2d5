"""One resumable per-item runner for every stage that maps work over items (align,
patches, enhance).

A stage lists its items (a pair, an aligned photo, a photo to enhance); for each the runner
decides *done* or *to do* from the item's previous record:

- the record says ``ok``;
- its ``params`` equal the hash of every option (and model) that changes the outputs;
- its ``inputs`` equal the fingerprints of the item's input files now;
- its identity fields (e.g. which source files a pair names) are unchanged;
- every output file the record implies exists.

The items to do run in parallel (:func:`dpedkit.parallel.imap`) and each returns its new
record, which the stage journals as it arrives, so a killed run keeps every finished item and
a re-run of the same command resumes. :func:`stage_folder` holds the output folder's lock and
removes temporaries a killed run left; :class:`RunSummary` counts statuses and reasons; the
exit codes below are those of every batch command.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from dpedkit.fs import exclusive, file_fingerprint, remove_stale_temps, sync_folders
from dpedkit.parallel import imap, resolve_jobs, workers_text

from dpedkit.errors import (EXIT_BAD_START, EXIT_INTERRUPTED, EXIT_ITEMS_FAILED, EXIT_OK,  # noqa: F401
                            EXIT_STOPPED, OptionError)


def params_hash(params: Mapping[str, Any]) -> str:
    """A short, stable hash of every option that changes an item's outputs."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def fingerprints(paths: Mapping[str, str | os.PathLike | None]) -> dict[str, str | None]:
    """:func:`dpedkit.fs.file_fingerprint` of each named input; ``None`` for a missing one."""
    out: dict[str, str | None] = {}
    for key, path in paths.items():
        try:
            out[key] = file_fingerprint(path) if path is not None else None
        except OSError:
            out[key] = None
    return out


@dataclass(frozen=True)
class Item:
    """One unit of a stage's work.

    ``job``: what the stage's worker function receives (picklable for process pools);
    ``inputs``: the files whose content decides the outputs, by name (fingerprinted);
    ``identity``: record fields that must be unchanged for an earlier record to count."""
    name: str
    job: Any = None
    inputs: Mapping[str, Path | None] = field(default_factory=dict)
    identity: Mapping[str, Any] = field(default_factory=dict)


def is_done(rec: Mapping | None, item: Item, params: str, outputs: Iterable[Path]) -> bool:
    """The item's earlier record is ok, for the same parameters, inputs and identity, and its
    outputs exist."""
    if not rec or rec.get("status") != "ok" or rec.get("params") != params:
        return False
    if any(rec.get(k) != v for k, v in item.identity.items()):
        return False
    if rec.get("inputs") != fingerprints(item.inputs):
        return False
    return all(Path(p).is_file() for p in outputs)


@dataclass
class Plan:
    """Which items an earlier run finished (their records) and which are left to do."""
    done: list[dict] = field(default_factory=list)
    todo: list[Item] = field(default_factory=list)


def plan(items: Iterable[Item], params: str, previous: Callable[[Item], Mapping | None],
         outputs: Callable[[Item, Mapping], Iterable[Path]], force: bool = False) -> Plan:
    """Split ``items`` into done and to do; ``previous`` gives an item's earlier record (or
    None) and ``outputs`` the files that record implies. ``force`` redoes every item."""
    p = Plan()
    for item in items:
        rec = None if force else previous(item)
        if rec is not None and is_done(rec, item, params, outputs(item, rec)):
            p.done.append(dict(rec))
        else:
            p.todo.append(item)
    return p


def run(todo: list[Item], fn: Callable[[Any], dict], jobs: int | None = None, scheduler: str | None = None,
        label: str = "", progress: bool = True) -> Iterator[dict]:
    """Yield ``fn(item.job)``, each item's new record, as items finish (any order); each
    item's output folders are fsynced in the process that wrote them before it yields."""
    yield from imap(_Durable(fn), [it.job for it in todo], resolve_jobs(jobs), label=label, progress=progress,
                    scheduler=scheduler)


class _Durable:
    """``fn`` followed by :func:`dpedkit.fs.sync_folders` (a class, so workers can unpickle it)."""

    def __init__(self, fn: Callable[[Any], dict]):
        self.fn = fn
        functools.update_wrapper(self, fn)     # its name labels the tasks (joblib, Dask's dashboard)

    def __call__(self, job: Any) -> dict:
        try:
            return self.fn(job)
        finally:
            sync_folders()


def plan_text(stage: str, what: str, plan_: Plan, jobs: int | None, scheduler: str | None) -> str:
    """The line every stage logs before it starts: what, how much is done, how much to do, where."""
    return (f"{stage}: {what}; {len(plan_.done)} already done, {len(plan_.todo)} to do on "
            f"{workers_text(resolve_jobs(jobs), scheduler)}")


def absolute_folders(inp: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, Path]:
    """Both folders made absolute (pooled worker processes keep the working directory they
    started in); raises ValueError when the output lies inside the input."""
    inp, out = Path(inp).absolute(), Path(out).absolute()
    if out.resolve().is_relative_to(inp.resolve()):
        raise OptionError(f"the output folder {out} must not lie inside the input folder {inp}")
    return inp, out


@contextmanager
def stage_folder(out: str | os.PathLike, what: str):
    """Hold ``out``'s lock (one run per output folder) and clear a killed run's temporaries."""
    with exclusive(out, what):
        remove_stale_temps(Path(out))
        yield Path(out)


def count_text(n: int, noun: str) -> str:
    """``1 pair``, ``2 pairs``, ``1 photo``, ``0 photos``, ``1 patch``: English plurals of
    the nouns the summaries use (``noun`` is the singular)."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}es" if noun.endswith(("ch", "sh", "s", "x")) else f"{n} {noun}s"


@dataclass
class RunSummary:
    """Counts by status, each failed item with its reason, and whether the run should exit
    non-zero.

    A run in which nothing usable was found (no item at all, or only ignored sidecar files)
    is a problem too: "nothing to do because nothing was found" must not read as success.
    ``empty_reason`` says what was looked for; the stage sets it."""
    total: int = 0
    counts: Counter = field(default_factory=Counter)
    skipped: int = 0                   # done in an earlier run, not redone
    failures: list = field(default_factory=list)    # (item name or "", status, reason)
    noun: str = "pair"
    statuses: tuple[str, ...] = ("ok", "failed", "unpaired")
    empty_reason: str = "nothing usable was found in the input"
    shown: int = 20                    # failed items listed one by one; the rest by reason

    def add(self, rec: Mapping) -> None:
        self.total += 1
        self.counts[rec["status"]] += 1
        if rec["status"] != "ok":
            self.failures.append((rec.get("name") or "", rec["status"], rec.get("reason") or "no reason recorded"))

    @property
    def empty(self) -> bool:
        return self.total == self.counts["ignored"]

    @property
    def problems(self) -> int:
        # "ignored": a sidecar file beside the photos (.xmp, .aae, …), reported but no problem
        found = sum(n for s, n in self.counts.items() if s not in ("ok", "ignored"))
        return found or int(self.empty)

    def lines(self) -> list[str]:
        shown = self.statuses + tuple(s for s in self.counts if s not in self.statuses)
        head = (f"{count_text(self.total, self.noun)}: " + ", ".join(f"{self.counts[s]} {s}" for s in shown)
                + f" ({self.skipped} already done, skipped)")
        return [head] + self.failure_lines() + self.empty_lines()

    def failure_lines(self) -> list[str]:
        """Each failed item with its reason (ignored sidecars last), then the rest by reason."""
        listed = [f for f in self.failures if f[1] != "ignored"] + [f for f in self.failures if f[1] == "ignored"]
        out = [f"  {status} {name}: {reason}" if name else f"  {status}: {reason}"
               for name, status, reason in listed[:self.shown]]
        rest = Counter(_reason_kind(r) for _, _, r in listed[self.shown:])
        if rest:
            out.append(f"  … and {sum(rest.values())} more (each with its reason in the manifest):")
            out += [f"    {n} × {r}" for r, n in rest.most_common()]
        return out

    def empty_lines(self) -> list[str]:
        return [f"error: nothing to do: {self.empty_reason}"] if self.empty else []


def exit_code(problems: int, allow_failures: bool = False) -> int:
    """:data:`EXIT_ITEMS_FAILED` when items failed (unless allowed), else :data:`EXIT_OK`."""
    return EXIT_ITEMS_FAILED if problems and not allow_failures else EXIT_OK


def _reason_kind(reason: str) -> str:
    # group reasons that differ only in their numbers
    return reason.split(" (")[0].split(":")[0] if reason else "unknown"
