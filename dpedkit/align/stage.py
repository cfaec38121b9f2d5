"""``dpedkit align``: align every pair of a ``raw/`` folder into ``aligned/`` (the layout: :mod:`dpedkit.layout`)."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import click
import cv2

from dpedkit.align.core import AlignError, AlignOptions, align_images
from dpedkit.align.pairing import Pair, other_file_pairs, pair_by_name, pair_by_time, pair_from_csv
from dpedkit.camera_files import RawRendering, kind_of, other_file_status
from dpedkit.fs import OutputWriteError, write_bytes_atomic
from dpedkit.imageio import PHOTO_SUFFIXES, ImageReadError, read_image, write_image
from dpedkit.imageops import checkerboard
from dpedkit.layout import MANIFEST, Cameras, Journal, aligned_paths, preview_path, resolve_cameras
from dpedkit.parallel import cv_threads_per_job, resolve_jobs
from dpedkit.runner import (Item, RunSummary, absolute_folders, fingerprints, params_hash, plan, plan_text, run,
                            stage_folder)


@dataclass
class AlignRunOptions:
    """Options of ``dpedkit align``; each field is one command-line option (:mod:`dpedkit.options`)."""
    phone: str | None = field(default=None, metadata={
        "help": "Phone camera folder in RAW_DIR (guessed when RAW_DIR has two folders, one named dslr or canon)."})
    dslr: str | None = field(default=None, metadata={"help": "DSLR camera folder in RAW_DIR."})
    pairs_csv: Path | None = field(default=None, metadata={
        "flag": "--pairs", "help": "CSV with columns phone,dslr (paths relative to the camera folders).",
        "click_type": click.Path(exists=True, dir_okay=False, path_type=Path)})
    pair_by: str = field(default="name", metadata={
        "help": "Pair by file stem, or by EXIF capture time.", "choices": ["name", "time"]})
    max_skew: float = field(default=2.0, metadata={
        "help": "Largest capture-time difference of a pair (seconds), with --pair-by time.", "min": 0})
    clock_offset: float = field(default=0.0, metadata={
        "help": "Seconds added to the DSLR's clock, with --pair-by time."})
    jobs: int | None = field(default=None, metadata={
        "short": "-j", "help": "Parallel workers (default: all cores; 1 runs in this process)."})
    dask_scheduler: str | None = field(default=None, metadata={
        "envvar": "DPEDKIT_DASK_SCHEDULER", "metavar": "ADDRESS",
        "help": "Run the per-photo work on this Dask cluster (tcp://host:8786; also $DPEDKIT_DASK_SCHEDULER); "
                "its workers must see the same paths. Needs pip install 'dpedkit[dask]'."})
    previews: bool = field(default=False, metadata={
        "help": "Write previews/<name>.jpg: a checkerboard of the aligned pair."})
    force: bool = field(default=False, metadata={"help": "Redo pairs an earlier run finished."})
    progress: bool = field(default=True, metadata={"cli": False})   # a progress bar on a terminal
    align: AlignOptions = field(default_factory=AlignOptions)
    phone_raw: str = field(default="mosaic", metadata={
        "choices": ["mosaic", "rgb"],
        "help": "Phone RAW/DNG photos: mosaic (aligned/<phone>/<name>.png is the 16-bit Bayer mosaic crop, for "
                "patches --layout zrr) or rgb (rendered as the --raw-* options say, for the DPED layout)."})
    raw: RawRendering = field(default_factory=RawRendering)


def params_key(opts: AlignRunOptions) -> str:
    """Hash of every option that changes an aligned output."""
    return params_hash({"align": opts.align.to_dict(), "previews": opts.previews, "phone_raw": opts.phone_raw,
                        "raw": asdict(opts.raw)})


def unique_names(pairs: list[Pair]) -> list[Pair]:
    """Give every pair its own ``name`` (a DSLR-only photo can share a stem with a phone one)."""
    seen: Counter = Counter()
    out = []
    for p in pairs:
        name = p.name
        while name.lower() in seen:
            name = f"{p.name}~{seen[p.name.lower()]}"
        seen[p.name.lower()] += 1
        seen[name.lower()] += 1
        out.append(p if name == p.name else replace(p, name=name))
    return out


def make_pairs(raw: Path, opts: AlignRunOptions) -> tuple[str, str, list[Pair]]:
    phone, dslr = resolve_cameras(raw, opts.phone, opts.dslr)
    if opts.pairs_csv:
        pairs = pair_from_csv(raw, phone, dslr, Path(opts.pairs_csv))
    elif opts.pair_by == "time":
        pairs = pair_by_time(raw, phone, dslr, opts.max_skew, opts.clock_offset)
    else:
        pairs = pair_by_name(raw, phone, dslr)
    return phone, dslr, unique_names(pairs + other_file_pairs(raw, phone, dslr))


@dataclass(frozen=True)
class _Job:
    raw: Path
    out: Path
    phone_dir: str
    dslr_dir: str
    pair: Pair
    params: str
    opts: AlignRunOptions
    cv_threads: int


def _input_paths(job: _Job) -> dict[str, Path | None]:
    return {key: job.raw / rel if rel else None for key, rel in (("phone", job.pair.phone), ("dslr", job.pair.dslr))}


def _outputs(job: _Job) -> list[Path]:
    paths = list(aligned_paths(job.out, job.phone_dir, job.dslr_dir, job.pair.name))
    return paths + [preview_path(job.out, job.pair.name)] if job.opts.previews else paths


def _both(fn, args: list[tuple], job: _Job) -> list[Future]:
    """``fn(*a)`` for the pair's two photos, finished; in two threads when the job may use
    more than one core (JPEG decoding and PNG encoding are single-threaded)."""
    with ThreadPoolExecutor(2 if job.cv_threads > 1 else 1) as pool:
        return [pool.submit(fn, *a) for a in args]


def align_one(job: _Job) -> dict:
    """Align one pair and write its outputs; always returns a manifest record."""
    cv2.setNumThreads(job.cv_threads)
    t0 = time.perf_counter()
    p = job.pair
    rec = {"name": p.name, "phone": p.phone, "dslr": p.dslr, "status": "failed", "reason": None,
           "homography": None, "crop": None, "matches": None, "inliers": None, "reprojection_rmse": None,
           "inputs": fingerprints(_input_paths(job)), "params": job.params}
    if p.reason:
        rec.update(status="unpaired" if (p.phone is None) != (p.dslr is None) else "failed", reason=p.reason)
        rel = p.phone or p.dslr
        if rel and Path(rel).suffix.lower() not in PHOTO_SUFFIXES:   # a sidecar or an unreadable format
            rec["status"] = other_file_status(rel)
    elif job.opts.phone_raw == "mosaic" and kind_of(p.phone) == "raw":
        _align_mosaic_pair(job, rec)
    else:
        try:
            images = {}
            reads = _both(read_image, [(job.raw / p.phone, job.opts.raw), (job.raw / p.dslr, job.opts.raw)], job)
            for key, read in zip(("phone", "dslr"), reads):
                try:
                    images[key] = read.result()
                except ImageReadError as e:
                    raise AlignError(f"{key} photo {getattr(p, key)}: {e}") from None
                rec[f"{key}_size"] = [images[key].shape[1], images[key].shape[0]]
            res = align_images(images["phone"], images["dslr"], job.opts.align)
            phone_path, dslr_path = aligned_paths(job.out, job.phone_dir, job.dslr_dir, p.name)
            for written in _both(write_image, [(phone_path, res.phone), (dslr_path, res.dslr)], job):
                written.result()
            if job.opts.previews:
                write_image(preview_path(job.out, p.name), checkerboard(res.phone, res.dslr), quality=90)
            rec.update(status="ok", **res.record())
        except AlignError as e:
            rec.update(reason=str(e), **e.stats)
        except MemoryError:
            rec.update(reason="out of memory while aligning this pair (try fewer --jobs)")
        except OutputWriteError:
            raise  # disk full or no permission: stop the run, every later pair would fail too
        except Exception as e:  # a bug or an OpenCV failure: keep going, say what happened
            rec.update(reason=f"unexpected error: {type(e).__name__}: {e}")
    rec["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return rec


def _align_mosaic_pair(job: _Job, rec: dict) -> None:
    """A RAW phone photo: align the DSLR to its mosaic; the phone output is the 16-bit mosaic crop."""
    from dpedkit.align.mosaic import align_mosaic
    from dpedkit.raw import RawMosaicError, encode_mosaic, read_mosaic
    p = job.pair
    try:
        try:
            m = read_mosaic(job.raw / p.phone)
        except RawMosaicError as e:
            raise AlignError(f"phone photo {p.phone}: {e}") from None
        try:
            dslr = read_image(job.raw / p.dslr, job.opts.raw)
        except ImageReadError as e:
            raise AlignError(f"dslr photo {p.dslr}: {e}") from None
        rec.update(phone_size=[m.data.shape[1], m.data.shape[0]], dslr_size=[dslr.shape[1], dslr.shape[0]])
        res = align_mosaic(m, dslr, job.opts.align)
        phone_path, dslr_path = aligned_paths(job.out, job.phone_dir, job.dslr_dir, p.name)
        write_bytes_atomic(phone_path, encode_mosaic(res.mosaic.data))
        write_image(dslr_path, res.dslr)
        if job.opts.previews:
            write_image(preview_path(job.out, p.name), checkerboard(res.preview, res.dslr), quality=90)
        rec.update(status="ok", **res.record())    # warp and residual too, as for RGB pairs
    except AlignError as e:
        rec.update(reason=str(e), **e.stats)
    except MemoryError:
        rec.update(reason="out of memory while aligning this pair (try fewer --jobs)")
    except OutputWriteError:
        raise
    except Exception as e:
        rec.update(reason=f"unexpected error: {type(e).__name__}: {e}")


def align_folder(raw: str | Path, out: str | Path, opts: AlignRunOptions = AlignRunOptions(),
                 log=print) -> RunSummary:
    """Align all pairs of ``raw`` into ``out``; resumes an interrupted run in ``out``.

    Writes ``out/<phone>/<name>.png``, ``out/<dslr>/<name>.png`` (the aligned, cropped pair:
    the same pixel grid, the phone photo's), ``out/manifest.jsonl`` (one record per pair,
    failures included) and ``out/dataset.json`` (the camera folder names)."""
    raw, out = absolute_folders(raw, out)
    phone_dir, dslr_dir, pairs = make_pairs(raw, opts)
    with stage_folder(out, "dpedkit align"):
        Cameras(phone_dir, dslr_dir).write(out)   # later stages read the camera names from here
        return _align_pairs(raw, out, phone_dir, dslr_dir, pairs, opts, log)


def _align_pairs(raw: Path, out: Path, phone_dir: str, dslr_dir: str, pairs: list[Pair], opts: AlignRunOptions,
                 log) -> RunSummary:
    journal = Journal(out / MANIFEST)
    params = params_key(opts)
    cv_threads = cv_threads_per_job(resolve_jobs(opts.jobs), opts.dask_scheduler)
    items = []
    for pair in pairs:
        job = _Job(raw, out, phone_dir, dslr_dir, pair, params, opts, cv_threads)
        items.append(Item(pair.name, job, _input_paths(job), {"phone": pair.phone, "dslr": pair.dslr}))
    todo = plan(items, params, lambda it: journal.records.get(it.name), lambda it, rec: _outputs(it.job), opts.force)
    summary = RunSummary(empty_reason=f"no photos to pair in {raw / phone_dir} and {raw / dslr_dir}")
    for rec in todo.done:
        summary.add(rec)
    summary.skipped = len(todo.done)
    if opts.pair_by == "time" and not opts.pairs_csv:
        log(f"paired {sum(p.paired_by == 'time' for p in pairs)} by capture time, "
            f"{sum(p.paired_by == 'name' for p in pairs)} by name (photos without a capture time)")
    log(plan_text("align", f"{len(pairs)} pairs from {raw} ({phone_dir} → {dslr_dir})", todo, opts.jobs,
                  opts.dask_scheduler))
    try:
        for rec in run(todo.todo, align_one, opts.jobs, opts.dask_scheduler, "aligning", opts.progress):
            journal.append(rec)
            summary.add(rec)
    finally:
        journal.close(keep={p.name for p in pairs})
    return summary
