"""``dpedkit enhance``: apply a generator to photos of any size, exactly, within a memory budget.

A resumable stage (:mod:`dpedkit.runner`): ``OUT/manifest.jsonl`` records each photo with
the fingerprints of its input and of the model's weights, so a re-run redoes exactly the
photos whose input, model or options changed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dpedkit.fs import write_bytes_atomic
from dpedkit.camera_files import other_file_status
from dpedkit.imageio import ImageReadError, encode_image, list_images, other_files, read_image
from dpedkit.layout import MANIFEST, Journal
from dpedkit.model.device import resolve_device
from dpedkit.model.generator import load_generator, model_fingerprint
from dpedkit.enhance.planner import BudgetError, parse_size
from dpedkit.enhance.strips import enhance_exact
from dpedkit.enhance.outputs import add_metadata, read_metadata, side_by_side
from dpedkit.model.inference import enhance_tiled, prepare
from dpedkit.runner import Item, RunSummary, fingerprints, params_hash, plan, run, stage_folder

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class EnhanceOptions:
    """Options of ``dpedkit enhance``; each field is one command-line option (:mod:`dpedkit.options`)."""
    device: str = field(default="auto", metadata={
        "help": "auto: CUDA when available, else the CPU.", "choices": ["auto", "cpu", "cuda"]})
    precision: str = field(default="auto", metadata={
        "help": "auto: fp16 on CUDA (within 1/255 of fp32), fp32 on CPU.", "choices": ["auto", "fp32", "fp16", "bf16"]})
    format: str = field(default="jpg", metadata={"help": "Output image format.", "choices": ["jpg", "png"]})
    quality: int = field(default=95, metadata={"help": "JPEG quality.", "min": 1, "max": 100})
    side_by_side: bool = field(default=False, metadata={"help": "Also write <name>_before_after.<format>."})
    tile: int | None = field(default=None, metadata={
        "help": "Approximate mode for photos too big for memory: tiles of this side (px), cross-faded.", "min": 16})
    overlap: int = field(default=64, metadata={"help": "Tile overlap (px), with --tile.", "min": 0})
    force: bool = field(default=False, metadata={
        "help": "Redo photos an earlier run finished with the same model and options."})
    max_memory: str | None = field(default=None, metadata={"help": (
        "Memory budget for exact enhancement, e.g. 4G (binary units): whole photos when they fit, else exact "
        "in strips (default: 3/4 of the free memory).")})
    cache_dir: str | None = field(default=None, metadata={"help": (
        "Folder for the strip mode's activation cache when it does not fit the budget (default: the system's "
        "temporary folder; 256 bytes per pixel, deleted as it is closed).")})


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # fp16 on CUDA: within 1/255 of fp32 on the official models (activations peak near 150,
        # far below fp16's range); bf16 is off by up to 2/255
        return torch.float16 if device.type == "cuda" else torch.float32
    return PRECISIONS[name]


def collect_inputs(inputs: list[str | Path]) -> list[tuple[Path, Path]]:
    """(photo, output path relative to the output folder) for files and folders of photos."""
    out = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += [(p, p.relative_to(item).with_suffix("")) for p in list_images(item)]
        else:
            out.append((item, Path(item.stem)))
    return out


def output_path(out_dir: Path, rel: Path, fmt: str, suffix: str = "") -> Path:
    return out_dir / rel.parent / f"{rel.name}{suffix}.{fmt}"


def enhance_array(g, img: np.ndarray, device: torch.device, dtype: torch.dtype, tile: int | None = None,
                  overlap: int = 64, max_bytes: int | None = None, cache_dir: str | None = None,
                  progress=None, log=None) -> np.ndarray:
    """The enhanced photo (uint8 RGB): exact (whole, or in strips within ``max_bytes``), or
    with ``tile`` approximate tiles."""
    if tile:
        return enhance_tiled(g, img, device, tile, overlap, dtype)
    return enhance_exact(g, img, device, dtype, max_bytes, cache_dir, progress, log)


def _progress(log, src: Path, every_s: float = 10.0):
    """A progress callback for the strip mode: a line at most every ``every_s`` seconds."""
    last = [time.monotonic()]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or done == total:
            last[0] = now
            log(f"  {src.name}: pass {done}/{total}")
    return report


def enhance_params(model: str | Path, opts: EnhanceOptions, dtype: torch.dtype) -> str:
    """Hash of what changes an enhanced photo: the model's weights (fingerprint of its files)
    and every option that changes its pixels; a changed model or option redoes the photo.
    (``side_by_side`` only adds a file: a missing one is redone by the output check;
    ``max_memory`` picks whole or strips, which give the same pixels — within float rounding,
    at most one 8-bit level, rarely.)"""
    return params_hash({"model": model_fingerprint(model), "dtype": str(dtype), "format": opts.format,
                        "quality": opts.quality, "tile": opts.tile,
                        "overlap": opts.overlap if opts.tile else None})


@dataclass(frozen=True)
class _Photo:
    src: Path
    rel: Path
    outputs: tuple[Path, ...]       # the enhanced photo first, then the before/after one


def enhance_paths(model: str | Path, inputs: list[str | Path], out_dir: str | Path,
                  opts: EnhanceOptions = EnhanceOptions(), log=print) -> RunSummary:
    """Enhance every photo of ``inputs`` (files, or folders of photos) into ``out_dir``.

    Output names keep the input's (folders keep their sub-paths) with ``opts.format``'s
    suffix; ``out_dir/manifest.jsonl`` holds one record per photo (its input fingerprint, the
    model and options hash), so a re-run skips photos done with the same model and options
    and redoes the rest. A failed photo is recorded, not fatal."""
    out_dir = Path(out_dir).absolute()
    device = resolve_device(opts.device)
    dtype = resolve_precision(opts.precision, device)
    max_bytes = parse_size(opts.max_memory) if opts.max_memory else None
    g, what = load_generator(model)
    g = prepare(g, device, dtype)
    params = enhance_params(model, opts, dtype)
    log(f"model: {what}; {device.type}, {str(dtype).replace('torch.', '')}"
        + (f", tiles of {opts.tile} px (approximate)" if opts.tile
           else ", exact (whole, or strips beyond the budget)"))
    summary = RunSummary(noun="photo", statuses=("ok", "failed"),
                         empty_reason="no photos in " + ", ".join(map(str, inputs)))
    items, seen = [], {}
    for folder in (Path(i) for i in inputs if Path(i).is_dir()):   # every file is used or reported
        for p, why in other_files(folder):
            summary.add({"status": other_file_status(p), "reason": f"{why} ({p})"})
            log(f"not read: {p}: {why}")
    for src, rel in collect_inputs(inputs):
        dst = output_path(out_dir, rel, opts.format)
        if dst in seen:
            summary.add({"status": "failed", "reason": f"same output name as {seen[dst]} ({src})"})
            continue
        seen[dst] = src
        outputs = (dst,) + ((output_path(out_dir, rel, opts.format, "_before_after"),) if opts.side_by_side else ())
        items.append(Item(rel.as_posix(), _Photo(Path(src), rel, outputs), {"photo": Path(src)}))
    speed = {"megapixels": 0.0, "busy": 0.0}

    def enhance_one(photo: _Photo) -> dict:
        rec = {"name": photo.rel.as_posix(), "source": str(photo.src), "status": "failed", "reason": None,
               "params": params, "inputs": fingerprints({"photo": photo.src}),
               "outputs": [q.relative_to(out_dir).as_posix() for q in photo.outputs]}
        try:
            img = read_image(photo.src)
            t0 = time.perf_counter()
            enhanced = enhance_array(g, img, device, dtype, opts.tile, opts.overlap, max_bytes, opts.cache_dir,
                                     progress=_progress(log, photo.src), log=log)
            speed["busy"] += time.perf_counter() - t0
            speed["megapixels"] += img.shape[0] * img.shape[1] / 1e6
        except (ImageReadError, BudgetError) as e:
            rec["reason"] = f"{e} ({photo.src})"
            log(f"failed: {photo.src}: {e}")
            return rec
        meta = read_metadata(photo.src)        # EXIF (orientation 1) and ICC profile carried over
        if opts.side_by_side:
            write_bytes_atomic(photo.outputs[1], add_metadata(
                encode_image(side_by_side(img, enhanced), "." + opts.format, opts.quality), meta))
        write_bytes_atomic(photo.outputs[0], add_metadata(encode_image(enhanced, "." + opts.format, opts.quality), meta))
        log(f"{photo.src} → {photo.outputs[0]}")
        return dict(rec, status="ok")

    with stage_folder(out_dir, "dpedkit enhance"):
        journal = Journal(out_dir / MANIFEST)
        todo = plan(items, params, lambda it: journal.records.get(it.name), lambda it, rec: it.job.outputs,
                    opts.force)
        for rec in todo.done:
            summary.add(rec)
        summary.skipped = len(todo.done)
        try:
            # one process: the model is loaded once and the device is this process's
            for rec in run(todo.todo, enhance_one, jobs=1, progress=False):
                journal.append(rec)
                summary.add(rec)
        finally:
            journal.close()
    if speed["busy"]:
        log(f"{speed['megapixels']:.2f} MP in {speed['busy']:.1f} s: {speed['megapixels'] / speed['busy']:.2f} MP/s")
    return summary
