"""``dpedkit patches``: cut matched patch pairs from ``aligned/`` into a patch layout — the DPED
layout (:class:`dpedkit.layout.DpedLayout`) or, from RAW phone photos aligned as Bayer
mosaics, the Zurich RAW-to-RGB / PyNET layout (:class:`dpedkit.layout.ZrrLayout`).

Each photo is processed on its own (in parallel) into a staging folder
``<layout root>/.dpedkit/<name>/`` (``layout.STAGING``) with its patches and a ``result.json``; a photo whose
result exists for the same inputs and parameters is not redone. Assembly then numbers the
patches 0..N-1 per split (photos in name order) and hard-links them into the layout, writing
``patches.csv`` and ``patches_report.json`` atomically.

The two layouts differ only in how one aligned pair is read, searched, cut and encoded: a
*pair* class does that (:class:`RgbPair` here, :class:`dpedkit.patches.zrr.MosaicPair` for
mosaics); everything else — window bookkeeping, scoring, staging, resuming, assembly, the
report — is this module's, the same for both.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dpedkit.errors import OptionError
from dpedkit.fs import OutputWriteError, sync_folders, write_text_atomic
from dpedkit.imageio import ImageReadError, read_image, write_image
from dpedkit.layout import (DPED_DSLR, MANIFEST, PREVIEWS, WINDOW_CODES, Cameras, DpedLayout, PatchLayout, aligned_paths,
                            LayoutError, read_records, resolve_cameras)
from dpedkit.parallel import cv_threads_per_job, resolve_jobs
from dpedkit.patches.common import assign_splits, is_plain_name, link_into_place, same_size  # noqa: F401 (assign_splits: re-exported)
from dpedkit.patches.search import SearchOptions, extract_patch_pair, match_windows, ncc
from dpedkit.runner import (Item, RunSummary, absolute_folders, count_text, fingerprints, params_hash, plan, plan_text,
                            run, stage_folder)

CSV_FIELDS = ["split", "index", "name", "x", "y", "dx", "dy", "angle", "ncc", "residual", "model"]


@dataclass
class PatchOptions:
    """Options of ``dpedkit patches``; each field is one command-line option (:mod:`dpedkit.options`)."""
    search: SearchOptions = field(default_factory=SearchOptions)
    threshold: float = field(default=0.9, metadata={"min": -1, "max": 1,
        "help": "Keep a patch pair when its normalised cross-correlation is at least this."})
    score_smooth: float = field(default=1.5, metadata={"min": 0,
        "help": "The NCC compared with --threshold is of both patches' luminance smoothed with a Gaussian of this "
                "sigma (px): the phone's noise, denoising and sharpening are not misalignment (0: unsmoothed, "
                "as DPED)."})
    test_fraction: float = field(default=0.1, metadata={"min": 0, "max": 1, "max_open": True,
        "help": "Share of photos in the test split (stable: adding photos moves none)."})
    test_photos: int | None = field(default=None, metadata={"min": 0,
        "help": "Exactly N test photos (the N lowest split hashes) instead of a fraction."})
    seed: int = field(default=0, metadata={"min": 0, "help": "Seed of the train/test split hash."})
    quality: int = field(default=95, metadata={"min": 1, "max": 100, "help": "JPEG quality of the patches."})
    jobs: int | None = field(default=None, metadata={"min": 1,
        "short": "-j", "help": "Parallel workers (default: all cores; 1 runs in this process)."})
    dask_scheduler: str | None = field(default=None, metadata={
        "envvar": "DPEDKIT_DASK_SCHEDULER", "metavar": "ADDRESS",
        "help": "Cut on this Dask cluster (tcp://host:8786; also $DPEDKIT_DASK_SCHEDULER); its workers must "
                "see the same paths. Needs pip install 'dpedkit[dask]'."})
    progress: bool = field(default=True, metadata={"cli": False})
    phone: str | None = field(default=None, metadata={
        "help": "Phone folder in ALIGNED_DIR (default: from its dataset.json, else guessed as for align)."})
    dslr: str | None = field(default=None, metadata={"help": "DSLR folder in ALIGNED_DIR (default: as --phone)."})
    dped_dslr: str = field(default=DPED_DSLR, metadata={
        "help": "Name of the DSLR folder in the DPED layout (the original code and dataset use canon)."})
    layout: str = field(default="dped", metadata={
        "choices": ["dped", "zrr"],
        "help": "dped (phone/DSLR RGB patches) or zrr (Zurich RAW-to-RGB / PyNET: Bayer mosaic patches from "
                "RAW phone photos aligned with --phone-raw mosaic; --size defaults to 448)."})
    raw_values: str = field(default="zurich", metadata={
        "choices": ["zurich", "normalized", "native"],
        "help": "With --layout zrr: zurich (the published dataset's: raw values with the black level, 10-bit; "
                "deeper sensors scaled to 10 bits), normalized (black level subtracted, white level at 1020) or "
                "native (the camera's raw values)."})
    zrr_phone: str = field(default="huawei", metadata={
        "help": "With --layout zrr: prefix of the phone folders, <name>_raw and <name>_full_resolution (the "
                "original PyNET code reads huawei_*); the real camera name goes into dataset.json."})


@dataclass(frozen=True)
class _Job:
    name: str
    phone_path: Path
    dslr_path: Path
    stage: Path
    params: str
    opts: PatchOptions
    cv_threads: int
    record: dict | None = None      # the pair's manifest record (the mosaic's levels)


def _input_paths(job: _Job) -> dict[str, Path]:
    return {"phone": job.phone_path, "dslr": job.dslr_path}


class RgbPair:
    """One aligned pair of the DPED layout: RGB phone and DSLR images of the same size.

    The search moves (and rotates) the phone window against the DSLR grid window
    (:func:`dpedkit.patches.search.match_windows`); both patches are JPEG. A *pair* class
    (this one, :class:`dpedkit.patches.zrr.MosaicPair`) holds what differs between layouts:
    ``windows(search)`` → the :class:`~dpedkit.patches.search.WindowMatch` per grid window;
    ``cut(window, S)`` → ``(dslr_patch, phone_for_scoring, phone_as_written)``;
    ``write_phone(path, patch, quality)``; ``full()`` → the whole phone image as written;
    ``result()`` → extra fields of result.json. Class attributes and static methods hold what
    differs for the whole dataset (its layout, input check, params, extra files)."""
    layout = DpedLayout
    noun = "photo"           # what the aligned phone file is, in messages
    read_errors: tuple = (ImageReadError,)

    def __init__(self, job: _Job):
        self.phone, self.dslr = read_image(job.phone_path), read_image(job.dslr_path)
        self.hw = self.phone.shape[:2]      # rows, columns
        same_size(self.hw, self.dslr)

    def windows(self, o: SearchOptions) -> list:
        return match_windows(self.dslr, self.phone, o)

    def cut(self, w, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d, p = extract_patch_pair(self.dslr, self.phone, w, size)
        return d, p, p

    @staticmethod
    def write_phone(path: Path, patch: np.ndarray, quality: int) -> None:
        write_image(path, patch, quality)

    def full(self) -> np.ndarray:
        return self.phone

    def result(self) -> dict:
        return {}

    @staticmethod
    def root(out: Path, phone: str) -> Path:
        return out / phone

    @classmethod
    def new_layout(cls, out: Path, phone: str, opts: PatchOptions) -> PatchLayout:
        return cls.layout(cls.root(out, phone), phone, opts.dped_dslr)

    @staticmethod
    def check(aligned: Path, ok_records: dict, opts: PatchOptions) -> None:
        if any("cfa_pattern" in r for r in ok_records.values()):
            raise OptionError(f"{aligned} holds RAW mosaics (aligned from RAW/DNG phone photos): cut them with "
                             "--layout zrr, or align again with --phone-raw rgb for the DPED layout")

    @staticmethod
    def params(opts: PatchOptions) -> dict:
        return {}

    @staticmethod
    def finish(layout, opts: PatchOptions, results: list[dict]) -> None:
        pass


def pair_kind(layout: str) -> type:
    """The pair class of a layout name (``dped`` or ``zrr``)."""
    if layout == "zrr":
        from dpedkit.patches.zrr import MosaicPair
        return MosaicPair
    if layout != "dped":
        raise OptionError(f"unknown layout {layout!r} (dped or zrr)")
    return RgbPair


def _params_key(o: PatchOptions) -> str:
    return params_hash({"search": asdict(o.search), "threshold": o.threshold, "score_smooth": o.score_smooth,
                        "quality": o.quality,
                        **pair_kind(o.layout).params(o)})


def _staged_outputs(job: _Job, res: dict) -> list[Path]:
    ext = pair_kind(job.opts.layout).layout.ext
    n = len(res.get("patches", []))
    return [job.stage / f"full.{ext('phone')}"] + [job.stage / cam / f"{k}.{ext(cam)}" for cam in ("phone", "dslr")
                                                 for k in range(n)]


def _staged_result(job: _Job) -> dict | None:
    try:
        res = json.loads((job.stage / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) else None


def _rounded(v: float | None, digits: int) -> float | None:
    return None if v is None else round(float(v), digits)


def _cut_windows(pair, windows: list, job: _Job, res: dict) -> list[float]:
    """Score every ``ok`` window on the written pixels, stage the accepted ones' patches and
    record each window's code, NCC and residual in ``res``; returns the scored windows' NCCs."""
    o, ext = job.opts, pair_kind(job.opts.layout).layout.ext
    scores, patches, codes, window_ncc, window_residual = [], [], [], [], []
    for w in windows:
        res["windows"] += 1
        codes.append(WINDOW_CODES.get(w.status, "?"))
        window_ncc.append(None)
        window_residual.append(None)
        if w.status != "ok":
            res[w.status] = res.get(w.status, 0) + 1
            continue
        d, p_scored, p = pair.cut(w, o.search.size)
        w.ncc = ncc(d, p_scored, o.search.min_std, o.score_smooth)  # scored on the written pixels (a mosaic: its rendering)
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
        window_residual[-1] = _rounded(w.residual, 3)
        k = len(patches)
        pair.write_phone(job.stage / "phone" / f"{k}.{ext('phone')}", p, o.quality)
        write_image(job.stage / "dslr" / f"{k}.jpg", d, o.quality)
        patches.append({"x": w.x, "y": w.y, "dx": round(w.dx, 4), "dy": round(w.dy, 4),
                        "angle": round(w.angle, 4), "ncc": round(w.ncc, 6),
                        "residual": _rounded(w.residual, 3), "model": w.model})
    res.update(patches=patches, accepted=len(patches), window_map="".join(codes), window_ncc=window_ncc,
               window_residual=window_residual)
    return scores


def cut_photo(job: _Job) -> dict:
    """Search one aligned pair and stage its accepted patches; returns the photo's result."""
    cv2.setNumThreads(job.cv_threads)
    t0 = time.perf_counter()
    kind = pair_kind(job.opts.layout)
    ext = kind.layout.ext
    res = {"name": job.name, "status": "failed", "reason": None, "params": job.params, "inputs": fingerprints(_input_paths(job)),
           "windows": 0, "accepted": 0, **{k: 0 for k in WINDOW_CODES if k != "ok"}, "median_ncc": None,
           "median_accepted_ncc": None, "patches": []}
    try:
        pair = kind(job)
        o = job.opts
        S = o.search.size
        shutil.rmtree(job.stage, ignore_errors=True)
        windows = pair.windows(o.search)
        if windows:
            xs, ys = sorted({w.x for w in windows}), sorted({w.y for w in windows})
            res["grid"] = {"x": xs[0], "y": ys[0], "cols": len(xs), "rows": len(ys), "size": S}
        scores = _cut_windows(pair, windows, job, res)
        pair.write_phone(job.stage / f"full.{ext('phone')}", pair.full(), o.quality)
        acc = [q["ncc"] for q in res["patches"]]
        res.update(status="ok", **pair.result(),
                   median_ncc=round(float(np.median(scores)), 4) if scores else None,
                   median_accepted_ncc=round(float(np.median(acc)), 4) if acc else None)
        if not windows:
            res["reason"] = (f"the aligned {kind.noun} ({pair.hw[1]}x{pair.hw[0]}) is smaller "
                             f"than one window (--size {S} plus the --max-shift/--max-angle margin)")
        elif not res["patches"]:
            res["reason"] = "no window reached the correlation threshold" if scores else "no textured window"
    except kind.read_errors as e:
        res["reason"] = f"unreadable aligned {kind.noun}: {e}"
    except OutputWriteError:
        raise  # disk full or no permission: stop the run
    except Exception as e:
        res["reason"] = f"unexpected error: {type(e).__name__}: {e}"
    res["elapsed_s"] = round(time.perf_counter() - t0, 3)
    write_text_atomic(job.stage / "result.json", json.dumps(res))
    return res


def assemble(layout: PatchLayout, results: list[dict], splits: dict[str, str]) -> dict[str, int]:
    """Number the staged patches 0..N-1 per split (photos in name order), link them into the
    layout (the full-size phone image of each test photo too) and write patches.csv; returns
    the patch count per split."""
    full = layout.full_size_dir
    for d in [layout.patch_dir(split, cam) for split in ("train", "test") for cam in ("phone", "dslr")] + [full]:
        if d.is_dir():      # a previous assembly's files: the numbering may have changed
            for p in d.iterdir():
                if p.suffix in (".png", ".jpg") and (p.stem.isdigit() or d == full):
                    p.unlink()
        d.mkdir(parents=True, exist_ok=True)
    ext = layout.ext
    counts = Counter()
    rows = io.StringIO()
    writer = csv.DictWriter(rows, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for res in sorted(results, key=lambda r: r["name"]):
        if res["status"] != "ok":
            continue
        split, stage = splits[res["name"]], layout.staging / res["name"]
        if split == "test":
            link_into_place(stage / f"full.{ext('phone')}", full / f"{res['name']}.{ext('phone')}")
        for k, p in enumerate(res["patches"]):
            i = counts[split]
            for cam in ("phone", "dslr"):
                link_into_place(stage / cam / f"{k}.{ext(cam)}", layout.patch(split, cam, i))
            writer.writerow({"split": split, "index": i, "name": res["name"], **p})
            counts[split] += 1
    write_text_atomic(layout.patches_csv, rows.getvalue())
    return dict(counts)


@dataclass
class PatchSummary(RunSummary):
    """The run summary of ``patches`` (one item per aligned photo: ``ok`` or ``failed``),
    with the patches per split, the photos with no patch and a per-photo table."""
    noun: str = "photo"
    statuses: tuple[str, ...] = ("ok", "failed")
    empty_reason: str = "no aligned pair with status ok (run 'dpedkit align' first, or see its manifest)"
    no_patch: list = field(default_factory=list)     # (name, reason): photos with zero accepted patches
    patches: dict = field(default_factory=dict)      # patches per split
    photos_per_split: Counter = field(default_factory=Counter)
    per_photo: list = field(default_factory=list)    # (name, split, windows, accepted, median ncc)
    report: Path | None = None

    def lines(self) -> list[str]:
        out = [f"{count_text(self.total, self.noun)} ({self.skipped} already done): "
               f"{self.photos_per_split['train']} train, {self.photos_per_split['test']} test, "
               f"{self.counts['failed']} failed, {len(self.no_patch)} with no patch",
               f"patches: {self.patches.get('train', 0)} train, {self.patches.get('test', 0)} test"]
        if self.per_photo:
            out.append(f"  {'photo':<24} {'split':<5} {'windows':>7} {'accepted':>8} {'median NCC':>10}")
            out += [f"  {n:<24} {sp:<5} {w:>7} {a:>8} {'-' if m is None else f'{m:.3f}':>10}"
                    for n, sp, w, a, m in self.per_photo]
        if self.total and not self.photos_per_split["test"]:
            out.append("warning: no photo fell in the test split; training needs test patches: "
                       "pass --test-photos N or a larger --test-fraction")
        out += self.failure_lines()
        out += [f"  no patch from {n}: {r}" for n, r in self.no_patch]
        if self.report:
            out.append(f"per-photo statistics: {self.report}")
        return out + self.empty_lines()


def cut_patches(aligned: str | Path, out: str | Path, opts: PatchOptions = PatchOptions(), log=print) -> PatchSummary:
    """Cut the patch dataset of all ``ok`` pairs of ``aligned`` into ``out`` in ``opts.layout``.

    DPED layout (``out/<phone>/``): patches are ``opts.search.size`` px squares at the same
    pixel position of the aligned pair (the phone one shifted and rotated by the search).
    ZRR layout (``out/``): the phone mosaic window stays on the RGGB grid and the DSLR window
    moves (:mod:`dpedkit.patches.zrr`). The DSLR folder is named ``opts.dped_dslr``
    (``canon``); the real camera names go into the layout root's ``dataset.json``."""
    kind = pair_kind(opts.layout)
    aligned, out = absolute_folders(aligned, out)
    phone, dslr = resolve_cameras(aligned, opts.phone, opts.dslr, ignore=(PREVIEWS,))
    records = read_records(aligned / MANIFEST)
    if not records:
        raise LayoutError(f"no {MANIFEST} in {aligned}: run 'dpedkit align' first")
    ok = {n: r for n, r in records.items() if r.get("status") == "ok"}
    kind.check(aligned, ok, opts)
    layout = kind.new_layout(out, phone, opts)
    if layout.patch_dir("train", "phone") == layout.patch_dir("train", "dslr"):
        raise OptionError(f"the DSLR folder name '{opts.dped_dslr}' is the phone's folder in the {opts.layout} "
                         "layout: pass another --dped-dslr")
    with stage_folder(layout.root, "dpedkit patches"):
        Cameras(phone, dslr, opts.dped_dslr).write(layout.root)
        return _cut_all(aligned, layout, dslr, ok, opts, log)


def _cut_all(aligned: Path, layout: PatchLayout, dslr: str, records: dict, opts: PatchOptions,
             log) -> PatchSummary:
    kind = pair_kind(opts.layout)
    params = _params_key(opts)
    summary = PatchSummary()
    names = sorted(records)
    cv_threads = cv_threads_per_job(resolve_jobs(opts.jobs), opts.dask_scheduler)
    results, items = [], []
    for n in names:
        if not is_plain_name(n):  # a hand-edited manifest must not lead reads or writes out of their folders
            results.append({"name": n, "status": "failed", "reason": "not a plain file name in the manifest"})
            continue
        pp, dp = aligned_paths(aligned, layout.phone, dslr, n)
        job = _Job(n, pp, dp, layout.staging / n, params, opts, cv_threads, records[n])
        items.append(Item(n, job, _input_paths(job)))
    todo = plan(items, params, lambda it: _staged_result(it.job), lambda it, res: _staged_outputs(it.job, res))
    results += todo.done
    summary.skipped = len(todo.done)
    log(plan_text("patches", f"{len(names)} aligned {kind.noun}s in {aligned}", todo, opts.jobs, opts.dask_scheduler))
    results += list(run(todo.todo, cut_photo, opts.jobs, opts.dask_scheduler, "cutting patches", opts.progress))
    splits = assign_splits(names, opts.seed, opts.test_fraction, opts.test_photos)
    summary.patches = assemble(layout, results, splits)
    sync_folders()                    # the layout's links are durable before patches.csv and the report say so
    for r in sorted(results, key=lambda r: r["name"]):
        summary.add(r)
        if r["status"] == "ok":
            summary.photos_per_split[splits[r["name"]]] += 1
            summary.per_photo.append((r["name"], splits[r["name"]], r["windows"], r["accepted"], r["median_ncc"]))
            if r["accepted"] == 0:
                summary.no_patch.append((r["name"], r["reason"]))
    kind.finish(layout, opts, results)
    report = {"options": {**asdict(opts.search), "threshold": opts.threshold, "score_smooth": opts.score_smooth,
                          "seed": opts.seed,
                          "test_fraction": opts.test_fraction, "test_photos": opts.test_photos, **kind.params(opts)},
              "patches": summary.patches,
              "photos": [{k: v for k, v in r.items() if k != "patches"} | {"split": splits.get(r["name"])}
                         for r in sorted(results, key=lambda r: r["name"])]}
    summary.report = layout.report
    write_text_atomic(summary.report, json.dumps(report, indent=1))
    return summary
