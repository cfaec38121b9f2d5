"""``dpedkit demo``: the whole pipeline on real photos that ship with scikit-image.

Its training run is short and on the CPU, so its recipe differs from the paper's where
:data:`RECIPE_NOTES` says (printed by the demo, stated in README.md).
"""

from __future__ import annotations

import inspect
import json
import shlex
from pathlib import Path

import cv2
import numpy as np

from dpedkit.align.geometry import corner_error
from dpedkit.fs import write_text_atomic
from dpedkit.imageio import write_image
from dpedkit.testing.synth import sample_images, synthetic_pair
from dpedkit.train.loop import Interrupted

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


# The demo's training recipe, where it differs from the paper's (docs/faithful.md): printed by
# the demo and stated in README.md. No VGG-19 weights offline (no content loss) and 50 CPU
# iterations instead of 20,000 on a GPU. From the paper's random initialisation the colour,
# texture and TV losses alone learnt the colour cast but destroyed the structure (enhanced
# SSIM 0.57 against 0.83 for the phone patches as they are); started near the identity, the
# TV loss then smoothed the detail away between iterations 10 and 20 (SSIM 0.88 → 0.74; 52×52
# crops of the demo's patches, 24 test crops, identity SSIM 0.80 and 16.3 dB), as nothing holds
# the detail against it without the content loss; without TV it held and grew (SSIM 0.90 →
# 0.91, PSNR 23.5 → 24.7 dB from iteration 10 to 40).
DEMO_TV_WEIGHT = 0.0
RECIPE_NOTES = (
    "the generator starts near the identity (the paper: random, truncated normal σ 0.01), so the photo's "
    "structure is there from iteration 0 and the losses learn the correction",
    f"total-variation weight {DEMO_TV_WEIGHT:g} (the paper: 2000; without the content loss nothing holds the "
    "detail against its smoothing)",
)


def run_demo(root: str | Path, jobs: int | None = None, train_iters: int = 50, batch_size: int = 8,
             test_patches: int | None = None, log=print) -> int:
    """Build the sample raw/ folder under ``root`` and run align → patches → train → enhance →
    evaluate → report on it; returns the number of items that failed. Every stage resumes, so a
    second call finishes an interrupted demo without redoing work (an unchanged model and test
    set are not re-scored). ``test_patches`` limits the test patches that training and evaluate
    score (default: all of them, up to 200). Ctrl-C during training raises
    :class:`DemoInterrupted`, whose message is the command that resumes with the same options."""
    root = Path(root)
    try:
        return _run_demo(root, jobs, train_iters, batch_size, test_patches, log)
    except Interrupted as e:     # training saved its iteration: say how to resume *this* demo
        raise DemoInterrupted(e.signum, f"interrupted; finished work is kept. To resume: "
                                        f"{demo_command(root, jobs, train_iters, batch_size, test_patches)}") from None


def demo_command(root: str | Path, jobs: int | None = None, train_iters: int = 50, batch_size: int = 8,
                 test_patches: int | None = None) -> str:
    """The ``dpedkit demo`` command line with these options (defaults left out)."""
    defaults = inspect.signature(run_demo).parameters
    opts = [("--train-iters", train_iters), ("--batch-size", batch_size), ("--test-patches", test_patches),
            ("--jobs", jobs)]
    parts = ["dpedkit", "demo", shlex.quote(str(root))]
    for flag, value in opts:
        name = flag[2:].replace("-", "_")
        if value is not None and value != defaults[name].default:
            parts += [flag, str(value)]
    return " ".join(parts)


class DemoInterrupted(Interrupted):
    """The demo stopped on a signal after saving its training state; ``exit_code`` is 128 +
    signal and the message is the command that resumes with the same options."""


def _run_demo(root: Path, jobs, train_iters, batch_size, test_patches, log) -> int:
    """:func:`run_demo`'s stages (one after the other, each a few lines)."""
    from dpedkit.align.stage import AlignRunOptions, align_folder
    from dpedkit.enhance.stage import EnhanceOptions, enhance_paths
    from dpedkit.layout import MANIFEST, DpedLayout, dataset_cameras, read_records
    from dpedkit.patches.stage import PatchOptions, cut_patches
    from dpedkit.patches.search import SearchOptions
    from dpedkit.report.site import build_site

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

    log("\n== 3/6 train (a short CPU run: the paper trains 20,000 iterations of batch 50 on a GPU)")
    _, phone, dslr = dataset_cameras(dataset)     # as patches recorded them in dataset/<phone>/dataset.json
    train_demo(dataset, phone, dslr, run, train_iters, batch_size, test_patches, log)

    log("\n== 4/6 enhance the full-size test photos")
    esum = enhance_paths(run, [DpedLayout(dataset / phone, phone).full_size_dir], root / "enhanced",
                         EnhanceOptions(side_by_side=True), log=log)
    for line in esum.lines():
        log(line)

    log("\n== 5/6 evaluate on the test patches")
    evaluate_demo(run, dataset, phone, test_patches, log)
    stale = root / "evaluate.json"      # an older demo's copy of the run's evaluate JSON: one file, one table row
    if stale.is_file():
        stale.unlink()
        log(f"removed {stale} (an older demo's copy of the scores above)")

    log("\n== 6/6 report")
    report = build_site(aligned, dataset, run, root / "report", enhanced=root / "enhanced", log=log)
    log(f"\ndone. raw photos {raw}/, aligned pairs {aligned}/, dataset {dataset}/, run {run}/, "
        f"enhanced photos {root / 'enhanced'}/\nopen {report} in a browser")
    return summary.problems + psum.problems + esum.problems


def train_demo(dataset: Path, phone: str, dslr: str, run: Path, train_iters: int, batch_size: int,
               test_patches: int | None, log) -> list[dict]:
    """The demo's training run (the recipe of :data:`RECIPE_NOTES`); returns its metric rows.

    A re-run with another ``batch_size`` or ``test_patches`` continues the run (override: the
    change is recorded in its config_changes.jsonl) instead of refusing it as train would; a
    run already at ``train_iters`` is not started (the hint names the demo's option)."""
    from dpedkit.model.vgg import find_vgg_weights
    from dpedkit.train.loop import TrainConfig, train

    vgg = find_vgg_weights(None)
    if vgg is None:
        log("no VGG-19 weights found ($DPEDKIT_VGG, torch hub cache): training without the content loss")
    last = run / "checkpoints" / "last.pt"
    resume = last.exists()
    cfg = TrainConfig(data_dir=str(dataset), phone=phone, dslr=dslr, out=str(run), iters=train_iters,
                      batch_size=batch_size, eval_every=max(train_iters // 5, 1), eval_patches=test_patches or 200,
                      content_loss="vgg" if vgg else "none", vgg=str(vgg) if vgg else None,
                      w_tv=DEMO_TV_WEIGHT, start="identity", resume=resume, override=resume, keep_checkpoints=0)
    log("the demo's recipe differs from the paper's (docs/faithful.md): " + "; ".join(RECIPE_NOTES))
    done = _trained_iterations(last)
    rows = _metric_rows(run)
    if done is not None and done >= train_iters and rows:
        log(f"{run} is already at iteration {done} of {train_iters}: nothing to train "
            f"(raise --train-iters to train further)")
    else:
        rows = train(cfg, log=log)
    log(f"test PSNR {float(rows[0]['test_psnr']):.2f} dB, SSIM {float(rows[0]['test_ssim']):.4f} at iteration 0 → "
        f"{float(rows[-1]['test_psnr']):.2f} dB, SSIM {float(rows[-1]['test_ssim']):.4f} at iteration "
        f"{rows[-1]['iteration']}")
    return rows


def _trained_iterations(last: Path) -> int | None:
    """The iteration ``last.pt`` holds, or None without one."""
    if not last.is_file():
        return None
    from dpedkit.model.checkpoint import load_checkpoint
    return int(load_checkpoint(last).get("iteration", 0))


def _metric_rows(run: Path) -> list[dict]:
    import csv
    if not (run / "metrics.csv").is_file():
        return []
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def evaluate_demo(run: Path, dataset: Path, phone: str, test_patches: int | None, log) -> dict:
    """Score the run's model on the test patches into ``run/evaluate_<phone>.json`` (the file
    ``dpedkit evaluate`` writes, which the report finds by itself), unless that file already
    holds the scores of this model on this test set (:func:`evaluation_fingerprint`)."""
    from dpedkit.evaluate import default_json_path, evaluate_model, table

    path = default_json_path(run, phone)
    key = evaluation_fingerprint(run, dataset, phone, test_patches)
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and old.get("fingerprint") == key:
        result = old
        log(f"the model and the test patches are unchanged since {path}: its scores are kept")
    else:
        result = {**evaluate_model(run, dataset, limit=test_patches, log=log), "fingerprint": key}
        write_text_atomic(path, json.dumps(result, indent=1))
        log(f"wrote {path}")
    for line in table(result):
        log(line)
    return result


def evaluation_fingerprint(run: Path, dataset: Path, phone: str, test_patches: int | None) -> str:
    """A hash of what decides evaluate's scores: the model file's and every test patch's
    fingerprint (:func:`dpedkit.fs.file_fingerprint`: size, mtime, first 64 KiB) and the limit."""
    from dpedkit.model.generator import model_files
    from dpedkit.runner import fingerprints, params_hash

    test = sorted(p for p in (dataset / phone / "test_data").rglob("*") if p.is_file())
    files = {str(p): p for p in model_files(run) + test}
    return params_hash({"files": fingerprints(files), "limit": test_patches})
