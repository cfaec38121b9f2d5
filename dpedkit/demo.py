"""``dpedkit demo``: the whole pipeline on real photos that ship with scikit-image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from dpedkit.align.geometry import corner_error
from dpedkit.fs import write_text_atomic
from dpedkit.imageio import write_image
from dpedkit.testing.synth import sample_images, synthetic_pair

TRUTH = "truth.json"
# the simulated phone: warmer, darker mid-tones, strong vignetting and more noise than the
# DSLR, about 17 dB PSNR from it: the gap a real phone/DSLR pair has in the DPED data
PHONE_LOOK = dict(gains=(1.15, 1.0, 0.75), gamma=1.35, vignette=0.4, noise=4.0)


def make_raw(raw: str | Path, upscale: float = 2.0, phone_scale: float = 0.6, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``raw/phone/<name>.jpg`` and ``raw/dslr/<name>.jpg`` pairs and ``raw/truth.json``
    (the true DSLR→phone homographies). The DSLR photos are scikit-image's sample images
    enlarged by ``upscale``; the phone photos are simulated (see :mod:`dpedkit.testing.synth`)."""
    raw = Path(raw)
    rng = np.random.default_rng(seed)
    truth = {}
    for name, img in sample_images().items():
        dslr = cv2.resize(img, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
        phone, H = synthetic_pair(dslr, phone_scale, rng, **PHONE_LOOK)
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


def run_demo(root: str | Path, jobs: int | None = None, train_iters: int = 150, batch_size: int = 8,
             test_patches: int | None = None, log=print) -> int:
    """Build the sample raw/ folder under ``root`` and run align → patches → train → enhance →
    evaluate → report on it; returns the number of items that failed. Every stage resumes, so a
    second call finishes an interrupted demo without redoing work. ``test_patches`` limits the
    test patches that training and evaluate score (default: all of them, up to 200)."""
    from dpedkit.align.stage import AlignRunOptions, align_folder
    from dpedkit.enhance.stage import EnhanceOptions, enhance_paths
    from dpedkit.evaluate import evaluate_model, table
    from dpedkit.layout import MANIFEST, DpedLayout, dataset_cameras, read_records
    from dpedkit.patches.stage import PatchOptions, cut_patches
    from dpedkit.patches.search import SearchOptions
    from dpedkit.report.site import build_site
    from dpedkit.train.loop import TrainConfig, train
    from dpedkit.model.vgg import find_vgg_weights

    root = Path(root)
    raw, aligned, dataset, run = root / "raw", root / "aligned", root / "dataset", root / "runs" / "demo"
    if not (raw / TRUTH).exists():
        make_raw(raw)
        log(f"wrote sample photos to {raw}")
    log("\n== 1/6 align")
    summary = align_folder(raw, aligned, AlignRunOptions(jobs=jobs, previews=True), log=log)
    for line in summary.lines():
        log(line)
    errors = alignment_errors(raw, read_records(aligned / MANIFEST))
    log("alignment error against the known homographies (mean corner error, phone px):")
    for name, err in sorted(errors.items()):
        log(f"  {name:<22} {err:.3f}")

    log("\n== 2/6 patches")
    # small photos: a smaller search keeps enough windows; two of six photos go to test
    popts = PatchOptions(search=SearchOptions(size=100, max_shift=4), test_photos=2, jobs=jobs)
    psum = cut_patches(aligned, dataset, popts, log=log)
    for line in psum.lines():
        log(line)

    log("\n== 3/6 train (a short CPU run: the paper trains 20,000 iterations of batch 50)")
    vgg = find_vgg_weights(None)
    if vgg is None:
        log("no VGG-19 weights found ($DPEDKIT_VGG, torch hub cache): training without the content loss")
    _, phone, dslr = dataset_cameras(dataset)     # as patches recorded them in dataset/<phone>/dataset.json
    # a re-run with another --batch-size or --test-patches continues the demo's run (override:
    # the change is recorded in its config_changes.jsonl) instead of refusing it as train would
    resume = (run / "checkpoints" / "last.pt").exists()
    cfg = TrainConfig(data_dir=str(dataset), phone=phone, dslr=dslr, out=str(run), iters=train_iters,
                      batch_size=batch_size, eval_every=max(train_iters // 5, 1), eval_patches=test_patches or 200,
                      content_loss="vgg" if vgg else "none", vgg=str(vgg) if vgg else None,
                      resume=resume, override=resume, keep_checkpoints=0)
    rows = train(cfg, log=log)
    log(f"test PSNR {float(rows[0]['test_psnr']):.2f} dB at iteration 0 → {float(rows[-1]['test_psnr']):.2f} dB "
        f"at iteration {rows[-1]['iteration']}")

    log("\n== 4/6 enhance the full-size test photos")
    esum = enhance_paths(run, [DpedLayout(dataset / phone, phone).full_size_dir], root / "enhanced",
                         EnhanceOptions(side_by_side=True), log=log)
    for line in esum.lines():
        log(line)

    log("\n== 5/6 evaluate on the test patches")
    result = evaluate_model(run, dataset, limit=test_patches, log=log)
    write_text_atomic(root / "evaluate.json", json.dumps(result, indent=1))
    for line in table(result):
        log(line)

    log("\n== 6/6 report")
    report = build_site(aligned, dataset, run, root / "report", enhanced=root / "enhanced",
                        evaluations=[root / "evaluate.json"], log=log)
    log(f"\ndone. raw photos {raw}/, aligned pairs {aligned}/, dataset {dataset}/, run {run}/, "
        f"enhanced photos {root / 'enhanced'}/\nopen {report} in a browser")
    return summary.problems + psum.problems + esum.problems
