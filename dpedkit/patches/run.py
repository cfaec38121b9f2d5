"""``dpedkit patches``: cut matched patch pairs from ``aligned/`` into the DPED layout.

Each photo is processed on its own (in parallel) into a staging folder
``OUT/<phone>/.dpedkit/<name>/`` with its patches and a ``result.json``; a photo whose
result exists for the same inputs and parameters is not redone. Assembly then numbers the
patches 0..N-1 per split (photos in name order) and hard-links them into the DPED layout
(DESIGN.md §3), writing ``patches.csv`` and ``patches_report.json`` atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dpedkit.align.pairing import resolve_cameras
from dpedkit.align.run import MANIFEST, output_paths
from dpedkit.imageio import (ImageReadError, OutputWriteError, file_fingerprint, read_image, remove_stale_temps,
                             write_image, write_text_atomic)
from dpedkit.lock import exclusive
from dpedkit.manifest import read_records
from dpedkit.parallel import cv_threads_per_job, imap, resolve_jobs, workers_text
from dpedkit.patches.search import SearchOptions, extract_phone_patch, grid_positions, match_windows, ncc

STAGING = ".dpedkit"
CSV_FIELDS = ["split", "index", "name", "x", "y", "dx", "dy", "angle", "ncc"]


# one character per grid window in row-major order, in patches_report.json
WINDOW_CODES = {"ok": "a", "flat": "f", "outside": "o", "low_ncc": "l"}   # a: accepted


@dataclass
class PatchOptions:
    search: SearchOptions = field(default_factory=SearchOptions)
    threshold: float = 0.9
    test_fraction: float = 0.1
    test_photos: int | None = None    # exactly N test photos (lowest hashes) instead of a fraction
    seed: int = 0
    quality: int = 95                 # JPEG quality of the patches
    jobs: int | None = None
    dask_scheduler: str | None = None  # cut on this Dask cluster instead (tcp://host:8786)
    progress: bool = True
    phone: str | None = None
    dslr: str | None = None
    layout: str = field(default="dped", metadata={
        "choices": ["dped", "zrr"], "help": "dped (phone/DSLR RGB patches) or zrr (Zurich RAW-to-RGB / PyNET: Bayer mosaic patches from "
                "RAW phone photos; --size defaults to 448)."})
    raw_values: str = field(default="pynet", metadata={
        "choices": ["pynet", "native"], "help": "With --layout zrr: pynet (black subtracted, white at 1020) or native (camera raw values)."})


def is_plain_name(name: str) -> bool:
    """A pair name usable as a file name inside one folder: no separators, no '..'."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\x00")


def split_hash(name: str, seed: int) -> float:
    """A stable number in [0, 1) for a photo: the same for the same name and seed forever."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") / 2 ** 64


def assign_splits(names: list[str], seed: int, test_fraction: float, test_photos: int | None) -> dict[str, str]:
    """``train``/``test`` per photo. With a fraction, a photo's split depends only on its own
    name, so adding photos later moves no existing one; ``test_photos`` takes the N lowest."""
    if test_photos is not None:
        test = set(sorted(names, key=lambda n: split_hash(n, seed))[:test_photos])
        return {n: "test" if n in test else "train" for n in names}
    return {n: "test" if split_hash(n, seed) < test_fraction else "train" for n in names}


def _params_key(o: PatchOptions) -> str:
    d = {"search": asdict(o.search), "threshold": o.threshold, "quality": o.quality}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class _Job:
    name: str
    phone_path: Path
    dslr_path: Path
    stage: Path
    params: str
    opts: PatchOptions
    cv_threads: int


def _inputs(job: _Job) -> dict | None:
    try:
        return {"phone": file_fingerprint(job.phone_path), "dslr": file_fingerprint(job.dslr_path)}
    except OSError:
        return None


def cut_photo(job: _Job) -> dict:
    """Search one aligned pair and stage its accepted patches; returns the photo's result."""
    cv2.setNumThreads(job.cv_threads)
    t0 = time.perf_counter()
    res = {"name": job.name, "status": "failed", "reason": None, "params": job.params, "inputs": _inputs(job),
           "windows": 0, "accepted": 0, "flat": 0, "outside": 0, "low_ncc": 0, "median_ncc": None,
           "median_accepted_ncc": None, "patches": []}
    try:
        phone, dslr = read_image(job.phone_path), read_image(job.dslr_path)
        if phone.shape != dslr.shape:
            raise ImageReadError(f"the aligned images differ in size ({phone.shape[1]}x{phone.shape[0]} vs "
                                 f"{dslr.shape[1]}x{dslr.shape[0]})")
        o = job.opts
        S = o.search.size
        shutil.rmtree(job.stage, ignore_errors=True)
        scores, patches, codes, window_ncc = [], [], [], []
        positions = grid_positions(phone.shape[1], phone.shape[0], o.search)
        if positions:
            xs, ys = sorted({x for x, _ in positions}), sorted({y for _, y in positions})
            res["grid"] = {"x": xs[0], "y": ys[0], "cols": len(xs), "rows": len(ys), "size": S}
        for w in match_windows(dslr, phone, o.search):
            res["windows"] += 1
            codes.append(WINDOW_CODES.get(w.status, "?"))
            window_ncc.append(None)
            if w.status != "ok":
                res[w.status] += 1
                continue
            d = dslr[w.y:w.y + S, w.x:w.x + S]
            p = extract_phone_patch(phone, w.x, w.y, w.dx, w.dy, w.angle, S)
            w.ncc = ncc(d, p, o.search.min_std)  # scored on the exact pixels that are written
            if np.isnan(w.ncc):
                res["flat"] += 1
                codes[-1] = WINDOW_CODES["flat"]
                continue
            scores.append(w.ncc)
            window_ncc[-1] = round(float(w.ncc), 4)
            if w.ncc < o.threshold:
                res["low_ncc"] += 1
                codes[-1] = WINDOW_CODES["low_ncc"]
                continue
            k = len(patches)
            write_image(job.stage / "phone" / f"{k}.jpg", p, o.quality)
            write_image(job.stage / "dslr" / f"{k}.jpg", d, o.quality)
            patches.append({"x": w.x, "y": w.y, "dx": round(w.dx, 4), "dy": round(w.dy, 4),
                            "angle": round(w.angle, 4), "ncc": round(w.ncc, 6)})
        write_image(job.stage / "full.jpg", phone, o.quality)
        acc = [q["ncc"] for q in patches]
        res.update(status="ok", accepted=len(patches), patches=patches, window_map="".join(codes),
                   window_ncc=window_ncc,
                   median_ncc=round(float(np.median(scores)), 4) if scores else None,
                   median_accepted_ncc=round(float(np.median(acc)), 4) if acc else None)
        if not patches:
            res["reason"] = "no window reached the correlation threshold" if scores else "no textured window"
    except ImageReadError as e:
        res["reason"] = f"unreadable aligned image: {e}"
    except OutputWriteError:
        raise  # disk full or no permission: stop the run
    except Exception as e:
        res["reason"] = f"unexpected error: {type(e).__name__}: {e}"
    res["elapsed_s"] = round(time.perf_counter() - t0, 3)
    write_text_atomic(job.stage / "result.json", json.dumps(res))
    return res


def _staged(job: _Job) -> dict | None:
    try:
        res = json.loads((job.stage / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if res.get("status") != "ok" or res.get("params") != job.params or res.get("inputs") != _inputs(job):
        return None
    n = len(res.get("patches", []))
    if not all((job.stage / cam / f"{k}.jpg").is_file() for cam in ("phone", "dslr") for k in range(n)):
        return None
    return res


def _link(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".dpedkit-tmp-{dst.name}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another filesystem or no hard links: copy
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _clear_numbered(folder: Path) -> None:
    if folder.is_dir():
        for p in folder.iterdir():
            if p.suffix == ".jpg" and (p.stem.isdigit() or folder.name == "full_size_test_images"):
                p.unlink()


def assemble(root: Path, phone: str, dslr: str, results: list[dict], splits: dict[str, str]) -> dict[str, int]:
    """Number and link staged patches into the DPED layout; write patches.csv."""
    dirs = {"train": root / "training_data", "test": root / "test_data" / "patches"}
    full = root / "test_data" / "full_size_test_images"
    for d in dirs.values():
        for cam in (phone, dslr):
            _clear_numbered(d / cam)
            (d / cam).mkdir(parents=True, exist_ok=True)
    _clear_numbered(full)
    full.mkdir(parents=True, exist_ok=True)
    counts = Counter()
    rows = io.StringIO()
    writer = csv.DictWriter(rows, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for res in sorted(results, key=lambda r: r["name"]):
        if res["status"] != "ok":
            continue
        split, stage = splits[res["name"]], root / STAGING / res["name"]
        if split == "test":
            _link(stage / "full.jpg", full / f"{res['name']}.jpg")
        for k, p in enumerate(res["patches"]):
            i = counts[split]
            _link(stage / "phone" / f"{k}.jpg", dirs[split] / phone / f"{i}.jpg")
            _link(stage / "dslr" / f"{k}.jpg", dirs[split] / dslr / f"{i}.jpg")
            writer.writerow({"split": split, "index": i, "name": res["name"], **p})
            counts[split] += 1
    write_text_atomic(root / "patches.csv", rows.getvalue())
    return dict(counts)


@dataclass
class PatchSummary:
    photos: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)      # (name, reason)
    empty: list = field(default_factory=list)       # photos with zero accepted patches
    counts: dict = field(default_factory=dict)       # patches per split
    photos_per_split: Counter = field(default_factory=Counter)
    per_photo: list = field(default_factory=list)    # (name, split, windows, accepted, median ncc)
    report: Path | None = None

    @property
    def problems(self) -> int:
        return len(self.failed)

    def lines(self) -> list[str]:
        out = [f"{self.photos} photos ({self.skipped} already done): {self.photos_per_split['train']} train, "
               f"{self.photos_per_split['test']} test, {len(self.failed)} failed, {len(self.empty)} with no patch",
               f"patches: {self.counts.get('train', 0)} train, {self.counts.get('test', 0)} test"]
        if self.per_photo:
            out.append(f"  {'photo':<24} {'split':<5} {'windows':>7} {'accepted':>8} {'median NCC':>10}")
            out += [f"  {n:<24} {sp:<5} {w:>7} {a:>8} {'-' if m is None else f'{m:.3f}':>10}"
                    for n, sp, w, a, m in self.per_photo]
        if self.photos and not self.photos_per_split["test"]:
            out.append("warning: no photo fell in the test split; training needs test patches: "
                       "pass --test-photos N or a larger --test-fraction")
        out += [f"  failed {n}: {r}" for n, r in self.failed]
        out += [f"  no patch from {n}: {r}" for n, r in self.empty]
        if self.report:
            out.append(f"per-photo statistics: {self.report}")
        return out


def cut_patches(aligned: str | Path, out: str | Path, opts: PatchOptions = PatchOptions(), log=print) -> PatchSummary:
    """Cut the DPED dataset of all ``ok`` pairs of ``aligned`` into ``out/<phone>/``."""
    # absolute: pooled worker processes keep the working directory they started in
    aligned, out = Path(aligned).absolute(), Path(out).absolute()
    if opts.layout == "zrr":
        from dpedkit.patches.zrr import cut_zrr, zrr_options
        return cut_zrr(aligned, out, zrr_options(opts), log)
    if opts.layout != "dped":
        raise ValueError(f"unknown layout {opts.layout!r} (dped or zrr)")
    phone, dslr = resolve_cameras(aligned, opts.phone, opts.dslr, ignore=("previews",))
    records = read_records(aligned / MANIFEST)
    if not records:
        raise ValueError(f"no {MANIFEST} in {aligned}: run 'dpedkit align' first")
    if any(r.get("status") == "ok" and "cfa_pattern" in r for r in records.values()):
        raise ValueError(f"{aligned} holds RAW mosaics (aligned from RAW/DNG phone photos): cut them with "
                         "--layout zrr, or align again with --phone-raw rgb for the DPED layout")
    if out.resolve().is_relative_to(aligned.resolve()):
        raise ValueError(f"the output folder {out} must not lie inside the input folder {aligned}")
    root = out / phone
    with exclusive(root, "dpedkit patches"):
        return _cut_all(aligned, root, phone, dslr, records, opts, log)


def _cut_all(aligned: Path, root: Path, phone: str, dslr: str, records: dict, opts: PatchOptions,
             log) -> PatchSummary:
    remove_stale_temps(root)
    params = _params_key(opts)
    jobs = resolve_jobs(opts.jobs)
    summary = PatchSummary()
    names = sorted(n for n, r in records.items() if r.get("status") == "ok")
    cv_threads = cv_threads_per_job(jobs, opts.dask_scheduler)
    results, todo = [], []
    for n in names:
        if not is_plain_name(n):  # a hand-edited manifest must not lead reads or writes out of their folders
            results.append({"name": n, "status": "failed", "reason": "not a plain file name in the manifest"})
            continue
        pp, dp = output_paths(aligned, phone, dslr, n)
        job = _Job(n, pp, dp, root / STAGING / n, params, opts, cv_threads)
        done = _staged(job)
        if done:
            results.append(done)
            summary.skipped += 1
        else:
            todo.append(job)
    log(f"patches: {len(names)} aligned photos in {aligned}; {summary.skipped} already done, {len(todo)} to do "
        f"on {workers_text(jobs, opts.dask_scheduler)}")
    results += list(imap(cut_photo, todo, jobs, label="cutting patches", progress=opts.progress,
                         scheduler=opts.dask_scheduler))
    splits = assign_splits(names, opts.seed, opts.test_fraction, opts.test_photos)
    summary.counts = assemble(root, phone, dslr, results, splits)
    summary.photos = len(names)
    for r in sorted(results, key=lambda r: r["name"]):
        if r["status"] != "ok":
            summary.failed.append((r["name"], r["reason"]))
        else:
            summary.photos_per_split[splits[r["name"]]] += 1
            summary.per_photo.append((r["name"], splits[r["name"]], r["windows"], r["accepted"], r["median_ncc"]))
            if r["accepted"] == 0:
                summary.empty.append((r["name"], r["reason"]))
    report = {"options": {**asdict(opts.search), "threshold": opts.threshold, "seed": opts.seed,
                          "test_fraction": opts.test_fraction, "test_photos": opts.test_photos},
              "patches": summary.counts,
              "photos": [{k: v for k, v in r.items() if k != "patches"} | {"split": splits.get(r["name"])}
                         for r in sorted(results, key=lambda r: r["name"])]}
    summary.report = root / "patches_report.json"
    write_text_atomic(summary.report, json.dumps(report, indent=1))
    return summary
