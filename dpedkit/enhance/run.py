"""``dpedkit enhance``: apply a generator to photos of any size, one whole photo at a time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dpedkit.enhance.inference import EnhanceError, enhance_tiled, enhance_whole, prepare
from dpedkit.enhance.model import load_generator
from dpedkit.camera_files import other_file_status
from dpedkit.imageio import (ImageReadError, encode_image, list_images, make_output_dir, other_files, read_image,
                             write_bytes_atomic)
from dpedkit.summary import RunSummary
from dpedkit.train.loop import resolve_device

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class EnhanceOptions:
    device: str = "auto"            # auto | cpu | cuda
    precision: str = "auto"         # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    format: str = "jpg"             # jpg | png
    quality: int = 95               # JPEG quality
    side_by_side: bool = False      # also write <stem>_before_after.<format>
    tile: int | None = None         # None: whole photo (exact); else approximate tiles of this side
    overlap: int = 64
    force: bool = False             # redo photos whose output exists


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
                  overlap: int = 64) -> np.ndarray:
    """The enhanced photo (uint8 RGB): whole and exact, or tiled and approximate."""
    if tile:
        return enhance_tiled(g, img, device, tile, overlap, dtype)
    return enhance_whole(g, img, device, dtype)


def enhance_paths(model: str | Path, inputs: list[str | Path], out_dir: str | Path,
                  opts: EnhanceOptions = EnhanceOptions(), log=print) -> RunSummary:
    """Enhance every photo of ``inputs`` into ``out_dir``; a failed photo is recorded, not fatal."""
    out_dir = Path(out_dir)
    device = resolve_device(opts.device)
    dtype = resolve_precision(opts.precision, device)
    g, what = load_generator(model)
    g = prepare(g, device, dtype)
    log(f"model: {what}; {device.type}, {str(dtype).replace('torch.', '')}"
        + (f", tiles of {opts.tile} px (approximate)" if opts.tile else ", whole photos"))
    make_output_dir(out_dir)
    # no lock: every output is a pure function of its input, written atomically, so two runs
    # on one folder cannot corrupt it, and a photo folder stays free of our hidden files
    items = collect_inputs(inputs)
    summary = RunSummary(noun="photos", statuses=("ok", "failed"))
    seen: dict[Path, Path] = {}
    megapixels, busy = 0.0, 0.0
    for folder in (Path(i) for i in inputs if Path(i).is_dir()):   # every file is used or reported
        for p, why in other_files(folder):
            summary.add({"status": other_file_status(p), "reason": f"{why} ({p})"})
            log(f"not read: {p}: {why}")
    for src, rel in items:
        dst = output_path(out_dir, rel, opts.format)
        if dst in seen:
            summary.add({"status": "failed", "reason": f"same output name as {seen[dst]} ({src})"})
            continue
        seen[dst] = src
        if dst.exists() and not opts.force:
            summary.skipped += 1
            summary.add({"status": "ok"})
            continue
        try:
            img = read_image(src)
            t0 = time.perf_counter()
            enhanced = enhance_array(g, img, device, dtype, opts.tile, opts.overlap)
            busy += time.perf_counter() - t0
            megapixels += img.shape[0] * img.shape[1] / 1e6
        except (ImageReadError, EnhanceError) as e:
            summary.add({"status": "failed", "reason": f"{e} ({src})"})
            log(f"failed: {src}: {e}")
            continue
        if opts.side_by_side:
            write_bytes_atomic(output_path(out_dir, rel, opts.format, "_before_after"),
                               encode_image(np.concatenate([img, enhanced], axis=1), "." + opts.format, opts.quality))
        write_bytes_atomic(dst, encode_image(enhanced, "." + opts.format, opts.quality))
        summary.add({"status": "ok"})
        log(f"{src} → {dst}")
    if busy:
        log(f"{megapixels:.2f} MP in {busy:.1f} s: {megapixels / busy:.2f} MP/s")
    return summary
