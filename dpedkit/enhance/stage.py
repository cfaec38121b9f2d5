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

from dpedkit.errors import DpedkitError, StoppedError
from dpedkit.raw import RawMosaicError
from dpedkit.fs import write_bytes_atomic
from dpedkit.progress import Progress, callback
from dpedkit.camera_files import other_file_status
from dpedkit.imageio import ImageReadError, encode_image, list_images, other_files, read_image
from dpedkit.layout import MANIFEST, Journal
from dpedkit.model.device import resolve_device
from dpedkit.model.generator import load_model, model_fingerprint
from dpedkit.enhance.planner import BudgetError, parse_size
from dpedkit.enhance.strips import enhance_exact
from dpedkit.enhance.outputs import PhotoMetadata, add_metadata, read_metadata, side_by_side
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


def _progress(log, src: Path, every_s: float = 10.0) -> Progress:
    """The strip mode's progress (:mod:`dpedkit.progress`): its ``update(done, total)`` is the
    callback; off a terminal a line at most every ``every_s`` seconds and one at the end."""
    return callback(f"  {src.name}: pass", log, every_s)


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
    enhancer = _Enhancer(model, opts, out_dir, log)
    summary = RunSummary(noun="photo", statuses=("ok", "failed"),
                         empty_reason="no photos in " + ", ".join(map(str, inputs)))
    items = _collect(inputs, out_dir, opts, summary, log)
    with stage_folder(out_dir, "dpedkit enhance"):
        journal = Journal(out_dir / MANIFEST)
        todo = plan(items, enhancer.params, lambda it: journal.records.get(it.name), lambda it, rec: it.job.outputs,
                    opts.force)
        for rec in todo.done:
            summary.add(rec)
        summary.skipped = len(todo.done)
        try:
            # one process: the model is loaded once and the device is this process's
            for rec in run(todo.todo, enhancer, jobs=1, progress=False):
                journal.append(rec)
                summary.add(rec)
        finally:
            journal.close()
    enhancer.log_speed()
    return summary


def _collect(inputs: list[str | Path], out_dir: Path, opts: EnhanceOptions, summary: RunSummary, log) -> list[Item]:
    """The photos to enhance as runner items; every other file of a folder, and a second photo
    with an output name already taken, go into ``summary`` with the reason."""
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
    return items


class _Enhancer:
    """The model on its device, and the enhancement of one photo into its record."""

    def __init__(self, model: str | Path, opts: EnhanceOptions, out_dir: Path, log):
        self.opts, self.out_dir, self.log = opts, out_dir, log
        self.device = resolve_device(opts.device)
        self.dtype = resolve_precision(opts.precision, self.device)
        self.max_bytes = parse_size(opts.max_memory) if opts.max_memory else None
        g, what, channels = load_model(model)
        self.isp = channels == 4                   # a learned ISP: RAW files in (dpedkit.enhance.raw_isp)
        if self.isp:
            from dpedkit.enhance.raw_isp import training_values
            from dpedkit.model.checkpoint import load_checkpoint
            if opts.tile:
                raise BudgetError("--tile is for the DPED enhancer; a learned ISP renders each RAW file exactly, "
                                  "whole or out of core in strips within --max-memory")
            self.raw_values = training_values(load_checkpoint(model).get("config") or {})
            self.g = g.eval().to(self.device, self.dtype)
        else:
            self.g = prepare(g, self.device, self.dtype)
        self.params = enhance_params(model, opts, self.dtype)
        self.megapixels = self.busy = 0.0
        log(f"model: {what}; {self.device.type}, {str(self.dtype).replace('torch.', '')}"
            + (f", tiles of {opts.tile} px (approximate)" if opts.tile
               else ", exact (whole, or strips beyond the budget)"))

    def __call__(self, photo: _Photo) -> dict:
        rec = {"name": photo.rel.as_posix(), "source": str(photo.src), "status": "failed", "reason": None,
               "params": self.params, "inputs": fingerprints({"photo": photo.src}),
               "outputs": [q.relative_to(self.out_dir).as_posix() for q in photo.outputs]}
        try:
            img, enhanced = self._enhance(photo.src)
        except StoppedError:
            raise                                  # the disk or the folder: every later photo would fail too
        except (ImageReadError, BudgetError, RawMosaicError, DpedkitError) as e:
            rec["reason"] = f"{e} ({photo.src})"
        except Exception as e:                     # one photo's surprise must not stop the others
            rec["reason"] = f"unexpected error: {type(e).__name__}: {e} ({photo.src})"
        if rec["reason"]:
            self.log(f"failed: {photo.src}: {rec['reason']}")
            return rec
        self._write(photo, img, enhanced)
        return dict(rec, status="ok")

    def _enhance(self, src: Path) -> tuple[np.ndarray, np.ndarray]:
        if self.isp:
            return self._render_raw(src)
        o = self.opts
        img = read_image(src)
        t0 = time.perf_counter()
        with _progress(self.log, src) as bar:
            enhanced = enhance_array(self.g, img, self.device, self.dtype, o.tile, o.overlap, self.max_bytes,
                                     o.cache_dir, progress=bar.update, log=bar.say)
        self.busy += time.perf_counter() - t0
        self.megapixels += img.shape[0] * img.shape[1] / 1e6
        return img, enhanced

    def _render_raw(self, src: Path) -> tuple[np.ndarray, np.ndarray]:
        """The quick rendering (the "before") and the learned ISP's rendering of a RAW file."""
        from dpedkit.enhance.raw_isp import network_input, quick_look, render_exact
        t0 = time.perf_counter()
        packed, mosaic = network_input(src, self.raw_values)
        with _progress(self.log, src) as bar:
            out = render_exact(self.g, packed, self.device, self.dtype, self.max_bytes, self.opts.cache_dir,
                               progress=bar.update, log=bar.say)
        self.busy += time.perf_counter() - t0
        self.megapixels += out.shape[0] * out.shape[1] / 1e6
        return quick_look(mosaic), out

    def _write(self, photo: _Photo, img: np.ndarray, enhanced: np.ndarray) -> None:
        o = self.opts
        # EXIF (orientation 1) and ICC profile carried over; a RAW file's are the sensor's: none
        meta = PhotoMetadata() if self.isp else read_metadata(photo.src)
        if o.side_by_side:
            write_bytes_atomic(photo.outputs[1], add_metadata(
                encode_image(side_by_side(img, enhanced), "." + o.format, o.quality), meta))
        write_bytes_atomic(photo.outputs[0], add_metadata(encode_image(enhanced, "." + o.format, o.quality), meta))
        self.log(f"{photo.src} → {photo.outputs[0]}")

    def log_speed(self) -> None:
        if self.busy:
            self.log(f"{self.megapixels:.2f} MP in {self.busy:.1f} s: {self.megapixels / self.busy:.2f} MP/s")
