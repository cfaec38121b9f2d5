"""``dpedkit align``: align every pair of a ``raw/`` folder into ``aligned/`` (DESIGN.md §2)."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2

from dpedkit.align.core import AlignError, AlignOptions, align_images, checkerboard
from dpedkit.align.pairing import Pair, other_file_pairs, pair_by_name, pair_by_time, pair_from_csv, resolve_cameras
from dpedkit.camera_files import RawRendering, kind_of, other_file_status
from dpedkit.imageio import (PHOTO_SUFFIXES, ImageReadError, OutputWriteError, file_fingerprint, read_image,
                             remove_stale_temps, write_bytes_atomic, write_image)
from dpedkit.lock import exclusive
from dpedkit.manifest import Journal
from dpedkit.parallel import cv_threads_per_job, imap, resolve_jobs, workers_text
from dpedkit.summary import RunSummary

MANIFEST = "manifest.jsonl"


@dataclass
class AlignRunOptions:
    phone: str | None = None
    dslr: str | None = None
    pairs_csv: Path | None = None
    pair_by: str = "name"              # name | time
    max_skew: float = 2.0              # seconds, for pair_by == "time"
    clock_offset: float = 0.0          # seconds added to the DSLR's clock
    jobs: int | None = None            # None: all cores
    dask_scheduler: str | None = None  # run the pairs on this Dask cluster instead (tcp://host:8786)
    previews: bool = False
    force: bool = False                # redo pairs that are already done
    progress: bool = True
    align: AlignOptions = field(default_factory=AlignOptions)
    phone_raw: str = field(default="mosaic", metadata={
        "choices": ["mosaic", "rgb"], "help": "Phone RAW/DNG photos: mosaic (aligned/<phone>/<name>.png is the 16-bit Bayer mosaic crop, for "
                "RAW-to-RGB datasets) or rgb (rendered as --raw-* say, for the DPED layout)."})
    raw: RawRendering = field(default_factory=RawRendering)


def params_key(opts: AlignRunOptions) -> str:
    """Hash of every option that changes an aligned output."""
    d = {"align": opts.align.to_dict(), "previews": opts.previews, "phone_raw": opts.phone_raw,
         "raw": asdict(opts.raw)}
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
        out.append(p if name == p.name else Pair(name, p.phone, p.dslr, p.reason))
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


def _fingerprints(raw: Path, pair: Pair) -> dict:
    out = {}
    for key in ("phone", "dslr"):
        rel = getattr(pair, key)
        try:
            out[key] = file_fingerprint(raw / rel) if rel else None
        except OSError:
            out[key] = None
    return out


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


def output_paths(out: Path, phone_dir: str, dslr_dir: str, name: str) -> tuple[Path, Path]:
    return out / phone_dir / f"{name}.png", out / dslr_dir / f"{name}.png"


def align_one(job: _Job) -> dict:
    """Align one pair and write its outputs; always returns a manifest record."""
    cv2.setNumThreads(job.cv_threads)
    t0 = time.perf_counter()
    p = job.pair
    rec = {"name": p.name, "phone": p.phone, "dslr": p.dslr, "status": "failed", "reason": None,
           "homography": None, "crop": None, "matches": None, "inliers": None, "reprojection_rmse": None,
           "inputs": _fingerprints(job.raw, p), "params": job.params}
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
            for key in ("phone", "dslr"):
                try:
                    images[key] = read_image(job.raw / getattr(p, key), job.opts.raw)
                except ImageReadError as e:
                    raise AlignError(f"{key} photo {getattr(p, key)}: {e}") from None
                rec[f"{key}_size"] = [images[key].shape[1], images[key].shape[0]]
            res = align_images(images["phone"], images["dslr"], job.opts.align)
            phone_path, dslr_path = output_paths(job.out, job.phone_dir, job.dslr_dir, p.name)
            write_image(phone_path, res.phone)
            write_image(dslr_path, res.dslr)
            if job.opts.previews:
                write_image(job.out / "previews" / f"{p.name}.jpg", checkerboard(res.phone, res.dslr), quality=90)
            rec.update(status="ok", homography=res.homography.round(10).tolist(), crop=list(res.crop),
                       matches=res.matches, inliers=res.inliers, reprojection_rmse=round(res.reprojection_rmse, 4),
                       refine_points=res.refine_points)
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
    from dpedkit.raw import RawMosaicError, read_mosaic
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
        phone_path, dslr_path = output_paths(job.out, job.phone_dir, job.dslr_dir, p.name)
        ok, enc = cv2.imencode(".png", res.mosaic.data, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise AlignError("OpenCV could not encode the 16-bit mosaic")
        write_bytes_atomic(phone_path, enc.tobytes())
        write_image(dslr_path, res.dslr)
        if job.opts.previews:
            write_image(job.out / "previews" / f"{p.name}.jpg", checkerboard(res.preview, res.dslr), quality=90)
        rec.update(status="ok", phone_kind="mosaic", homography=res.homography.round(10).tolist(), crop=list(res.crop),
                   matches=res.matches, inliers=res.inliers, reprojection_rmse=round(res.reprojection_rmse, 4),
                   refine_points=res.refine_points, **res.mosaic.record())
    except AlignError as e:
        rec.update(reason=str(e), **e.stats)
    except MemoryError:
        rec.update(reason="out of memory while aligning this pair (try fewer --jobs)")
    except OutputWriteError:
        raise
    except Exception as e:
        rec.update(reason=f"unexpected error: {type(e).__name__}: {e}")


def is_done(rec: dict | None, job: _Job) -> bool:
    """A pair whose record is ok, whose outputs exist, with unchanged inputs and parameters."""
    if not rec or rec.get("status") != "ok" or rec.get("params") != job.params:
        return False
    if rec.get("phone") != job.pair.phone or rec.get("dslr") != job.pair.dslr:
        return False
    if rec.get("inputs") != _fingerprints(job.raw, job.pair):
        return False
    paths = output_paths(job.out, job.phone_dir, job.dslr_dir, job.pair.name)
    if job.opts.previews:
        paths += (job.out / "previews" / f"{job.pair.name}.jpg",)
    return all(q.is_file() for q in paths)


def align_folder(raw: str | Path, out: str | Path, opts: AlignRunOptions = AlignRunOptions(),
                 log=print) -> RunSummary:
    """Align all pairs of ``raw`` into ``out``; resumes an interrupted run in ``out``."""
    # absolute: pooled worker processes keep the working directory they started in
    raw, out = Path(raw).absolute(), Path(out).absolute()
    if out.resolve().is_relative_to(raw.resolve()):
        raise ValueError(f"the output folder {out} must not lie inside the input folder {raw}")
    phone_dir, dslr_dir, pairs = make_pairs(raw, opts)
    with exclusive(out, "dpedkit align"):
        return _align_pairs(raw, out, phone_dir, dslr_dir, pairs, opts, log)


def _align_pairs(raw: Path, out: Path, phone_dir: str, dslr_dir: str, pairs: list[Pair], opts: AlignRunOptions,
                 log) -> RunSummary:
    remove_stale_temps(out)
    journal = Journal(out / MANIFEST)
    jobs = resolve_jobs(opts.jobs)
    params = params_key(opts)
    cv_threads = cv_threads_per_job(jobs, opts.dask_scheduler)
    todo, summary = [], RunSummary()
    for pair in pairs:
        job = _Job(raw, out, phone_dir, dslr_dir, pair, params, opts, cv_threads)
        if not opts.force and is_done(journal.records.get(pair.name), job):
            summary.add(journal.records[pair.name])
            summary.skipped += 1
        else:
            todo.append(job)
    if opts.pair_by == "time" and not opts.pairs_csv:
        log(f"paired {sum(p.paired_by == 'time' for p in pairs)} by capture time, "
            f"{sum(p.paired_by == 'name' for p in pairs)} by name (photos without a capture time)")
    log(f"align: {len(pairs)} pairs from {raw} ({phone_dir} → {dslr_dir}); {summary.skipped} already done, "
        f"{len(todo)} to do on {workers_text(jobs, opts.dask_scheduler)}")
    try:
        for rec in imap(align_one, todo, jobs, label="aligning", progress=opts.progress, scheduler=opts.dask_scheduler):
            journal.append(rec)
            summary.add(rec)
    finally:
        journal.close(keep={p.name for p in pairs})
    return summary
