"""``dpedkit demo``: the whole pipeline on real photos that ship with scikit-image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from dpedkit.align.geometry import corner_error
from dpedkit.imageio import write_image, write_text_atomic
from dpedkit.synth import sample_images, synthetic_pair

TRUTH = "truth.json"


def make_raw(raw: str | Path, upscale: float = 2.0, phone_scale: float = 0.6, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``raw/phone/<name>.jpg`` and ``raw/dslr/<name>.jpg`` pairs and ``raw/truth.json``
    (the true DSLR→phone homographies). The DSLR photos are scikit-image's sample images
    enlarged by ``upscale``; the phone photos are simulated (see :mod:`dpedkit.synth`)."""
    raw = Path(raw)
    rng = np.random.default_rng(seed)
    truth = {}
    for name, img in sample_images().items():
        dslr = cv2.resize(img, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
        phone, H = synthetic_pair(dslr, phone_scale, rng)
        write_image(raw / "dslr" / f"{name}.jpg", dslr, quality=95)
        write_image(raw / "phone" / f"{name}.jpg", phone, quality=92)
        truth[name] = H
    write_text_atomic(raw / TRUTH, json.dumps({k: v.tolist() for k, v in truth.items()}, indent=1))
    return truth


def alignment_errors(raw: str | Path, manifest: dict[str, dict]) -> dict[str, float]:
    """Mean corner error (phone px) of each aligned pair against ``raw/truth.json``."""
    truth = json.loads((Path(raw) / TRUTH).read_text())
    out = {}
    for name, H in truth.items():
        rec = manifest.get(name)
        if rec and rec["status"] == "ok":
            out[name] = corner_error(np.array(rec["homography"]), np.array(H), tuple(rec["phone_size"]))
    return out


def run_demo(root: str | Path, jobs: int | None = None, log=print) -> int:
    """Build the sample raw/ folder under ``root`` and run the pipeline; returns the number
    of items that failed."""
    from dpedkit.align.run import AlignRunOptions, align_folder
    from dpedkit.manifest import read_records

    root = Path(root)
    raw, aligned = root / "raw", root / "aligned"
    if not (raw / TRUTH).exists():
        make_raw(raw)
        log(f"wrote sample photos to {raw}")
    summary = align_folder(raw, aligned, AlignRunOptions(jobs=jobs, previews=True), log=log)
    for line in summary.lines():
        log(line)
    errors = alignment_errors(raw, read_records(aligned / "manifest.jsonl"))
    log("alignment error against the known homographies (mean corner error, phone px):")
    for name, err in sorted(errors.items()):
        log(f"  {name:<22} {err:.3f}")
    log(f"aligned pairs and checkerboard previews: {aligned}")
    from dpedkit.patches.run import PatchOptions, cut_patches
    from dpedkit.patches.search import SearchOptions
    # small photos: a smaller search keeps enough windows; two of six photos go to test
    popts = PatchOptions(search=SearchOptions(size=100, max_shift=4), test_photos=2, jobs=jobs)
    psum = cut_patches(aligned, root / "dataset", popts, log=log)
    for line in psum.lines():
        log(line)
    return summary.problems + psum.problems
