"""``dpedkit patches --layout zrr``: RAW-to-RGB patch pairs in the Zurich RAW-to-RGB / PyNET layout.

Input: an ``aligned/`` folder whose phone images are 16-bit Bayer mosaic crops (``dpedkit
align`` on RAW/DNG phone photos) with records carrying ``cfa_pattern``, ``black_level`` and
``white_level``. Output (``S`` = ``--size``, 448 by default as in the Zurich dataset)::

    OUT/train/<phone>_raw/<i>.png            1-channel 16-bit mosaic, S×S, R at (0,0), B at (1,1)
    OUT/train/canon/<i>.jpg                  S×S RGB, the same scene at the mosaic's resolution (``--dped-dslr``)
    OUT/test/<phone>_raw/<i>.png, OUT/test/canon/<i>.jpg
    OUT/test/<phone>_full_resolution/<name>.png   whole aligned test mosaics (RGGB phase, same values)
    OUT/raw.json        pattern, value convention and levels;   OUT/patches.csv, OUT/patches_report.json

Geometry. The phone window is never resampled: it sits on a grid of ``S`` steps whose origin
has the parity that puts R at (0,0) (:func:`dpedkit.raw.rggb_offset`), and is cut from the
mosaic as is. The local refinement (shift ± ``max_shift`` px, rotation ± ``max_angle``) moves
and rotates the **DSLR** window instead, searched on the quick rendering of the mosaic
(:func:`dpedkit.raw.quick_rgb`) with :mod:`dpedkit.patches.search` (roles swapped: the
mosaic rendering is the fixed image). A pair is kept when the correlation of the rendering
of the written mosaic patch with the written DSLR patch reaches ``threshold``.

Values. ``raw_values="pynet"`` (default): black level subtracted per colour-filter position,
scaled so the white level is 1020 (PyNET divides by 4·255), clipped to 0–1020.
``"native"``: the camera's raw values, unchanged; raw.json then lists each photo's levels.
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

from dpedkit.fs import OutputWriteError, write_bytes_atomic, write_text_atomic
from dpedkit.imageio import ImageReadError, read_image, write_image
from dpedkit.layout import (DPED_DSLR, MANIFEST, PREVIEWS, WINDOW_CODES, Cameras, ZrrLayout, aligned_paths,
                            read_records, resolve_cameras)
from dpedkit.parallel import cv_threads_per_job, resolve_jobs
from dpedkit.patches.search import SearchOptions, extract_phone_patch, grid_positions, match_windows, ncc
from dpedkit.patches.common import _link, assign_splits, is_plain_name
from dpedkit.raw import (PYNET_MAX, Mosaic, RawMosaicError, encode_mosaic, pattern_at, quick_rgb, rggb_offset,
                         to_pynet_values)
from dpedkit.runner import Item, absolute_folders, fingerprints, params_hash, plan, plan_text, run, stage_folder

ZRR_SIZE = 448
RAW_VALUES = ("pynet", "native")
CSV_FIELDS = ["split", "index", "name", "x", "y", "dx", "dy", "angle", "ncc"]


@dataclass
class ZrrOptions:
    """Options of the ZRR layout (library use); the command line sets them through
    :class:`dpedkit.patches.stage.PatchOptions` with ``layout="zrr"`` (:func:`zrr_options`)."""
    search: SearchOptions = field(default_factory=lambda: SearchOptions(size=ZRR_SIZE))
    threshold: float = 0.9
    raw_values: str = field(default="pynet", metadata={
        "choices": ["pynet", "native"],
        "help": "Mosaic values: pynet (black subtracted, white at 1020, as PyNET expects) or native (camera units)."})
    test_fraction: float = 0.1
    test_photos: int | None = None
    seed: int = 0
    quality: int = 95
    jobs: int | None = None
    dask_scheduler: str | None = None
    progress: bool = True
    phone: str | None = None
    dslr: str | None = None
    dped_dslr: str = DPED_DSLR          # the DSLR folder name in the layout (PyNET's loader: canon)


def zrr_options(o) -> ZrrOptions:
    """The ZRR options of a :class:`dpedkit.patches.stage.PatchOptions` (same meanings)."""
    return ZrrOptions(search=o.search, threshold=o.threshold, raw_values=o.raw_values, test_fraction=o.test_fraction,
                      test_photos=o.test_photos, seed=o.seed, quality=o.quality, jobs=o.jobs,
                      dask_scheduler=o.dask_scheduler, progress=o.progress, phone=o.phone, dslr=o.dslr,
                      dped_dslr=o.dped_dslr)


def read_mosaic_png(path: Path, rec: dict) -> Mosaic:
    """An aligned mosaic (16-bit 1-channel PNG) with the levels of its manifest record."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ImageReadError("not a PNG OpenCV can decode")
    if data.ndim != 2 or data.dtype != np.uint16:
        raise ImageReadError(f"not a 1-channel 16-bit mosaic (shape {data.shape}, {data.dtype}): "
                             "align this folder from RAW/DNG phone photos")
    if data.shape[0] % 2 or data.shape[1] % 2:
        raise ImageReadError("the aligned mosaic has an odd size: it was not cropped at even offsets")
    return Mosaic.from_record(data, rec)


def mosaic_values(m: Mosaic, x: int, y: int, w: int, h: int, raw_values: str) -> np.ndarray:
    """The mosaic crop at column ``x``, row ``y`` in the chosen value convention (uint16)."""
    crop = m.data[y:y + h, x:x + w]
    if raw_values == "native":
        return crop.copy()
    return to_pynet_values(crop, m.black, m.white, (x % 2, y % 2))


def zrr_windows(m: Mosaic, dslr: np.ndarray, o: SearchOptions):
    """Search every grid window of the mosaic against the aligned DSLR image.

    Returns ``(rendering, windows)``: the quick rendering the search ran on, and for each
    grid window ``(X, Y, match)`` with ``(X, Y)`` its top-left in mosaic pixels (R at
    ``(X, Y)``, B at ``(X+1, Y+1)``) and ``match`` the
    :class:`~dpedkit.patches.search.WindowMatch` whose ``dx, dy, angle`` place the DSLR patch
    (cut it with :func:`dslr_patch`)."""
    if o.size % 2:
        raise ValueError(f"the patch size must be even for a Bayer mosaic (got {o.size})")
    rendering = quick_rgb(m)
    h, w = m.data.shape
    ox, oy = rggb_offset(m.pattern)
    pos = grid_positions(w, h, o)
    if not pos:
        return rendering, []
    # shift both images so the search's grid lands on R sites of the mosaic
    sx, sy = (ox - pos[0][0]) % 2, (oy - pos[0][1]) % 2
    found = match_windows(rendering[sy:, sx:], dslr[sy:, sx:], o)
    out = []
    for win in found:
        X, Y = win.x + sx, win.y + sy
        if pattern_at(m.pattern, X, Y) != "RGGB":
            raise AssertionError(f"window at ({X}, {Y}) is off the RGGB phase")
        win.x, win.y = X, Y     # the search ran on shifted copies; its offsets are relative, so they carry over
        out.append((X, Y, win))
    return rendering, out


def dslr_patch(dslr: np.ndarray, X: int, Y: int, win, size: int) -> np.ndarray:
    """The DSLR patch the search placed for the mosaic window at ``(X, Y)``: centred at the
    window's centre plus ``(dx, dy)``, rotated by ``angle`` (search module's convention)."""
    return extract_phone_patch(dslr, X, Y, win.dx, win.dy, win.angle, size)


@dataclass(frozen=True)
class _Job:
    name: str
    phone_path: Path
    dslr_path: Path
    record: dict
    stage: Path
    params: str
    opts: ZrrOptions
    cv_threads: int


def _input_paths(job: _Job) -> dict[str, Path]:
    return {"phone": job.phone_path, "dslr": job.dslr_path}


def cut_photo(job: _Job) -> dict:
    """Search one aligned mosaic/DSLR pair and stage its accepted patches; returns its result."""
    cv2.setNumThreads(job.cv_threads)
    t0 = time.perf_counter()
    o = job.opts
    res = {"name": job.name, "status": "failed", "reason": None, "params": job.params, "inputs": fingerprints(_input_paths(job)),
           "windows": 0, "accepted": 0, "flat": 0, "outside": 0, "low_ncc": 0, "median_ncc": None,
           "median_accepted_ncc": None, "patches": []}
    try:
        m = read_mosaic_png(job.phone_path, job.record)
        dslr = read_image(job.dslr_path)
        if dslr.shape[:2] != m.data.shape:
            raise ImageReadError(f"the aligned images differ in size ({m.data.shape[1]}x{m.data.shape[0]} vs "
                                 f"{dslr.shape[1]}x{dslr.shape[0]})")
        S = o.search.size
        shutil.rmtree(job.stage, ignore_errors=True)
        rendering, windows = zrr_windows(m, dslr, o.search)
        codes, window_ncc, scores, patches = [], [], [], []
        for X, Y, win in windows:
            res["windows"] += 1
            codes.append(WINDOW_CODES.get(win.status, "?"))
            window_ncc.append(None)
            if win.status != "ok":
                res[win.status] = res.get(win.status, 0) + 1
                continue
            d = dslr_patch(dslr, X, Y, win, S)
            score = ncc(rendering[Y:Y + S, X:X + S], d, o.search.min_std)   # the written mosaic's rendering
            if np.isnan(score):
                res["flat"] += 1
                codes[-1] = WINDOW_CODES["flat"]
                continue
            scores.append(score)
            window_ncc[-1] = round(float(score), 4)
            if score < o.threshold:
                res["low_ncc"] += 1
                codes[-1] = WINDOW_CODES["low_ncc"]
                continue
            k = len(patches)
            write_bytes_atomic(job.stage / "raw" / f"{k}.png", encode_mosaic(mosaic_values(m, X, Y, S, S, o.raw_values)))
            write_image(job.stage / "dslr" / f"{k}.jpg", d, o.quality)
            patches.append({"x": X, "y": Y, "dx": round(win.dx, 4), "dy": round(win.dy, 4),
                            "angle": round(win.angle, 4), "ncc": round(score, 6)})
        # the whole mosaic at the RGGB phase, whole 2×2 cells
        ox, oy = rggb_offset(m.pattern)
        h, w = m.data.shape
        full = mosaic_values(m, ox, oy, (w - ox) // 2 * 2, (h - oy) // 2 * 2, o.raw_values)
        write_bytes_atomic(job.stage / "full.png", encode_mosaic(full))
        acc = [q["ncc"] for q in patches]
        res.update(status="ok", accepted=len(patches), patches=patches, window_map="".join(codes),
                   window_ncc=window_ncc, levels=m.record(),
                   median_ncc=round(float(np.median(scores)), 4) if scores else None,
                   median_accepted_ncc=round(float(np.median(acc)), 4) if acc else None)
        if not windows:
            res["reason"] = (f"the aligned mosaic ({m.data.shape[1]}x{m.data.shape[0]}) is smaller than one window "
                             f"(--size {S} plus the --max-shift/--max-angle margin)")
        elif not patches:
            res["reason"] = "no window reached the correlation threshold" if scores else "no textured window"
    except (ImageReadError, RawMosaicError, KeyError) as e:
        res["reason"] = f"unreadable aligned mosaic: {e}" if not isinstance(e, KeyError) else \
            f"the manifest record lacks {e}: align this folder again from RAW/DNG phone photos"
    except OutputWriteError:
        raise
    except Exception as e:
        res["reason"] = f"unexpected error: {type(e).__name__}: {e}"
    res["elapsed_s"] = round(time.perf_counter() - t0, 3)
    write_text_atomic(job.stage / "result.json", json.dumps(res))
    return res


def _params_key(o: ZrrOptions) -> str:
    return params_hash({"layout": "zrr", "search": asdict(o.search), "threshold": o.threshold, "quality": o.quality,
                        "raw_values": o.raw_values})


def _staged_result(job: _Job) -> dict | None:
    try:
        res = json.loads((job.stage / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) else None


def _staged_outputs(job: _Job, res: dict) -> list[Path]:
    n = len(res.get("patches", []))
    return [job.stage / "full.png"] + [job.stage / d / f"{k}.{e}" for d, e in (("raw", "png"), ("dslr", "jpg"))
                                       for k in range(n)]


def assemble(layout: ZrrLayout, results: list[dict], splits: dict[str, str]) -> dict[str, int]:
    """Number the staged patches 0..N-1 per split (photos in name order), link them into the
    layout and write patches.csv; returns the patch count per split."""
    dirs = [layout.patch_dir(split, cam) for split in ("train", "test") for cam in ("phone", "dslr")]
    full = layout.full_size_dir
    for d in dirs + [full]:
        if d.is_dir():
            for p in d.iterdir():
                if p.suffix in (".png", ".jpg") and (p.stem.isdigit() or d == full):
                    p.unlink()
        d.mkdir(parents=True, exist_ok=True)
    counts = Counter()
    rows = io.StringIO()
    writer = csv.DictWriter(rows, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for res in sorted(results, key=lambda r: r["name"]):
        if res["status"] != "ok":
            continue
        split, stage = splits[res["name"]], layout.staging / res["name"]
        if split == "test":
            _link(stage / "full.png", full / f"{res['name']}.png")
        for k, p in enumerate(res["patches"]):
            i = counts[split]
            _link(stage / "raw" / f"{k}.png", layout.patch(split, "phone", i))
            _link(stage / "dslr" / f"{k}.jpg", layout.patch(split, "dslr", i))
            writer.writerow({"split": split, "index": i, "name": res["name"], **p})
            counts[split] += 1
    write_text_atomic(layout.patches_csv, rows.getvalue())
    return dict(counts)


def raw_json(layout: ZrrLayout, o: ZrrOptions, results: list[dict]) -> dict:
    """What raw.json states: the layout, the unpacking and the value convention."""
    ok = [r for r in results if r["status"] == "ok"]
    rel = lambda p: p.relative_to(layout.root).as_posix().replace("train/", "{train,test}/")  # noqa: E731
    d = {"layout": "zrr", "phone": layout.phone, "dslr": layout.dslr, "size": o.search.size,
         "folders": {"raw": rel(layout.patch("train", "phone", 0)).replace("/0.png", "/<i>.png"),
                     "dslr": rel(layout.patch("train", "dslr", 0)).replace("/0.jpg", "/<i>.jpg"),
                     "full_resolution": rel(layout.full_size_dir) + "/<name>.png"},
         "cfa_pattern": "RGGB",
         "unpack": "R = raw[0::2, 0::2], Gb = raw[0::2, 1::2], Gr = raw[1::2, 0::2], B = raw[1::2, 1::2]",
         "orientation": "sensor (the RAW file's orientation flag is not applied)",
         "dslr_scale": 1, "raw_values": o.raw_values,
         "source_patterns": {r["name"]: r["levels"]["cfa_pattern"] for r in ok}}
    if o.raw_values == "pynet":
        d.update(black_level=0, white_level=PYNET_MAX, value_range=[0, PYNET_MAX],
                 convention="round((raw - black) / (white - black) * 1020) per colour-filter position, clipped to "
                            "0..1020; PyNET's loader divides by 4*255 = 1020")
    else:
        d.update(convention="the camera's raw values; subtract black_level (per 2x2 position of the source "
                            "pattern, see levels) and divide by white_level - black_level",
                 levels={r["name"]: r["levels"] for r in ok})
    return d


@dataclass
class ZrrSummary:
    photos: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)
    empty: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    photos_per_split: Counter = field(default_factory=Counter)
    report: Path | None = None

    @property
    def problems(self) -> int:
        return len(self.failed)

    def lines(self) -> list[str]:
        out = [f"{self.photos} photos ({self.skipped} already done): {self.photos_per_split['train']} train, "
               f"{self.photos_per_split['test']} test, {len(self.failed)} failed, {len(self.empty)} with no patch",
               f"RAW-to-RGB patches: {self.counts.get('train', 0)} train, {self.counts.get('test', 0)} test"]
        if self.photos and not self.photos_per_split["test"]:
            out.append("warning: no photo fell in the test split: pass --test-photos N or a larger --test-fraction")
        out += [f"  failed {n}: {r}" for n, r in self.failed]
        out += [f"  no patch from {n}: {r}" for n, r in self.empty]
        if self.report:
            out.append(f"per-photo statistics: {self.report}")
        return out


def cut_zrr(aligned: str | Path, out: str | Path, opts: ZrrOptions = ZrrOptions(), log=print) -> ZrrSummary:
    """Cut the RAW-to-RGB dataset of all ``ok`` mosaic pairs of ``aligned`` into ``out``
    (:class:`dpedkit.layout.ZrrLayout`)."""
    if opts.raw_values not in RAW_VALUES:
        raise ValueError(f"raw_values must be one of {', '.join(RAW_VALUES)}")
    if opts.search.size % 2:
        raise ValueError(f"--size must be even for a Bayer mosaic (got {opts.search.size})")
    aligned, out = absolute_folders(aligned, out)
    phone, dslr = resolve_cameras(aligned, opts.phone, opts.dslr, ignore=(PREVIEWS,))
    records = read_records(aligned / MANIFEST)
    if not records:
        raise ValueError(f"no {MANIFEST} in {aligned}: run 'dpedkit align' first")
    ok = {n: r for n, r in records.items() if r.get("status") == "ok"}
    if ok and not any("cfa_pattern" in r for r in ok.values()):
        raise ValueError(f"{aligned} holds RGB phone images, not RAW mosaics: align RAW/DNG phone photos (with "
                         "--phone-raw mosaic) for --layout zrr, or use the default DPED layout")
    if opts.dped_dslr == f"{phone}_raw":
        raise ValueError(f"the DSLR folder name '{opts.dped_dslr}' is the mosaics' folder: pass another --dped-dslr")
    layout = ZrrLayout(out, phone, opts.dped_dslr)
    with stage_folder(layout.root, "dpedkit patches"):
        Cameras(phone, dslr, opts.dped_dslr).write(layout.root)
        return _cut_all(aligned, layout, dslr, ok, opts, log)


def _cut_all(aligned: Path, layout: ZrrLayout, dslr: str, records: dict, opts: ZrrOptions, log) -> ZrrSummary:
    params = _params_key(opts)
    cv_threads = cv_threads_per_job(resolve_jobs(opts.jobs), opts.dask_scheduler)
    summary = ZrrSummary()
    names = sorted(records)
    results, items = [], []
    for n in names:
        if not is_plain_name(n):  # a hand-edited manifest must not lead reads or writes out of their folders
            results.append({"name": n, "status": "failed", "reason": "not a plain file name in the manifest"})
            continue
        pp, dp = aligned_paths(aligned, layout.phone, dslr, n)
        job = _Job(n, pp, dp, records[n], layout.staging / n, params, opts, cv_threads)
        items.append(Item(n, job, _input_paths(job)))
    todo = plan(items, params, lambda it: _staged_result(it.job), lambda it, res: _staged_outputs(it.job, res))
    results += todo.done
    summary.skipped = len(todo.done)
    log(plan_text("patches (zrr)", f"{len(names)} aligned mosaics in {aligned}", todo, opts.jobs, opts.dask_scheduler))
    results += list(run(todo.todo, cut_photo, opts.jobs, opts.dask_scheduler, "cutting RAW patches", opts.progress))
    splits = assign_splits(names, opts.seed, opts.test_fraction, opts.test_photos)
    summary.counts = assemble(layout, results, splits)
    summary.photos = len(names)
    for r in sorted(results, key=lambda r: r["name"]):
        if r["status"] != "ok":
            summary.failed.append((r["name"], r["reason"]))
        else:
            summary.photos_per_split[splits[r["name"]]] += 1
            if r["accepted"] == 0:
                summary.empty.append((r["name"], r["reason"]))
    write_text_atomic(layout.raw_json, json.dumps(raw_json(layout, opts, results), indent=1))
    report = {"options": {**asdict(opts.search), "threshold": opts.threshold, "seed": opts.seed,
                          "raw_values": opts.raw_values, "test_fraction": opts.test_fraction,
                          "test_photos": opts.test_photos},
              "patches": summary.counts,
              "photos": [{k: v for k, v in r.items() if k != "patches"} | {"split": splits.get(r["name"])}
                         for r in sorted(results, key=lambda r: r["name"])]}
    summary.report = layout.report
    write_text_atomic(summary.report, json.dumps(report, indent=1))
    return summary
