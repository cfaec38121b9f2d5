"""The ``dpedkit`` command line: parses options and calls the library.

Exit codes: 0 everything succeeded; 1 some items failed (see the summary and the
manifest), unless ``--allow-failures``; 2 the run could not start (bad options or folders);
3 the run stopped because its outputs cannot be written (disk full, no permission),
another run holds the output folder, or the Dask cluster cannot be reached or failed;
130 interrupted. Finished work is kept in every case: re-run the same command to resume.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from dpedkit import __version__

EXIT_ITEMS_FAILED = 1
EXIT_STOPPED = 3


class _Group(click.Group):
    """Turns the errors that stop a whole run into a message and an exit code, not a traceback."""

    def invoke(self, ctx):
        from dpedkit.imageio import OutputWriteError
        from dpedkit.lock import LockError
        from dpedkit.parallel import ClusterError
        try:
            return super().invoke(ctx)
        except (OutputWriteError, LockError, ClusterError) as e:
            click.echo(f"error: {e}", err=True)
            click.echo("stopped; finished work is kept: re-run the same command to resume", err=True)
            sys.exit(EXIT_STOPPED)
        except KeyboardInterrupt:
            click.echo("\ninterrupted; finished work is kept: re-run the same command to resume", err=True)
            sys.exit(130)


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _finish(lines: list[str], problems: int, allow_failures: bool) -> None:
    for line in lines:
        click.echo(line)
    if problems and not allow_failures:
        sys.exit(EXIT_ITEMS_FAILED)


jobs_option = click.option("--jobs", "-j", type=int, default=None,
                           help="Parallel workers (default: all cores; 1 runs in this process).")
dask_option = click.option("--dask-scheduler", envvar="DPEDKIT_DASK_SCHEDULER", metavar="ADDRESS",
                           help="Run the per-photo work on this Dask cluster (tcp://host:8786; also "
                                "$DPEDKIT_DASK_SCHEDULER); its workers must see the same paths. "
                                "Needs pip install 'dpedkit[dask]'.")
allow_failures_option = click.option("--allow-failures", is_flag=True,
                                     help="Exit 0 even when some items failed.")
model_argument = click.argument("model", type=click.Path(path_type=Path))
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dpedkit")
def main() -> None:
    """Build paired phone→DSLR photo datasets (DPED) and train the DPED enhancer.

    \b
    raw/ --align--> aligned/ --patches--> dataset/ --train--> runs/<name>/
    """


@main.command()
@click.argument("raw_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--phone", help="Phone camera folder in RAW_DIR (guessed when RAW_DIR has two folders, one named dslr or canon).")
@click.option("--dslr", help="DSLR camera folder in RAW_DIR.")
@click.option("--pairs", "pairs_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with columns phone,dslr (paths relative to the camera folders).")
@click.option("--pair-by", type=click.Choice(["name", "time"]), default="name", show_default=True,
              help="Pair by file stem, or by EXIF capture time.")
@click.option("--max-skew", type=float, default=2.0, show_default=True, help="Seconds, with --pair-by time.")
@click.option("--clock-offset", type=float, default=0.0, show_default=True,
              help="Seconds added to the DSLR's clock, with --pair-by time.")
@click.option("--feature-side", type=int, default=1200, show_default=True,
              help="Longer side (px) of the reduced copies SIFT runs on.")
@click.option("--min-inliers", type=int, default=25, show_default=True)
@click.option("--min-overlap", type=float, default=0.2, show_default=True,
              help="Smallest common crop, as a fraction of the phone photo.")
@click.option("--previews", is_flag=True, help="Write previews/<name>.jpg: a checkerboard of the aligned pair.")
@click.option("--phone-raw", type=click.Choice(["mosaic", "rgb"]), default="mosaic", show_default=True,
              help="Phone RAW/DNG photos: keep the 16-bit Bayer mosaic (for --layout zrr) or render RGB.")
@click.option("--raw-auto-bright", is_flag=True, help="Let LibRaw brighten RGB renderings of RAW files.")
@click.option("--force", is_flag=True, help="Redo pairs an earlier run finished.")
@jobs_option
@dask_option
@allow_failures_option
def align(raw_dir, out_dir, phone, dslr, pairs_csv, pair_by, max_skew, clock_offset, feature_side,
          min_inliers, min_overlap, previews, phone_raw, raw_auto_bright, force, jobs, dask_scheduler, allow_failures):
    """Pair, align and crop the photos of RAW_DIR into OUT_DIR.

    \b
    RAW_DIR/<phone>/*.jpg, RAW_DIR/<dslr>/*.jpg  →  OUT_DIR/<phone>/<name>.png,
    OUT_DIR/<dslr>/<name>.png and OUT_DIR/manifest.jsonl (one record per pair,
    failures and unpaired photos included). A re-run skips finished pairs.
    """
    from dpedkit.align.core import AlignOptions
    from dpedkit.align.pairing import PairingError
    from dpedkit.align.run import AlignRunOptions, align_folder
    from dpedkit.camera_files import RawRendering

    opts = AlignRunOptions(phone_raw=phone_raw, raw=RawRendering(raw_auto_bright=raw_auto_bright),
                           phone=phone, dslr=dslr, pairs_csv=pairs_csv, pair_by=pair_by, max_skew=max_skew,
                           clock_offset=clock_offset, jobs=jobs, dask_scheduler=dask_scheduler, previews=previews, force=force,
                           align=AlignOptions(feature_side=feature_side, min_inliers=min_inliers,
                                              min_overlap=min_overlap))
    try:
        summary = align_folder(raw_dir, out_dir, opts, log=_echo)
    except (PairingError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    _finish(summary.lines() + [f"manifest: {out_dir / 'manifest.jsonl'}"], summary.problems, allow_failures)


@main.command()
@click.argument("aligned_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--phone", help="Phone folder in ALIGNED_DIR (guessed as for align).")
@click.option("--dslr", help="DSLR folder in ALIGNED_DIR.")
@click.option("--layout", type=click.Choice(["dped", "zrr"]), default="dped", show_default=True,
              help="dped: RGB patch pairs; zrr: Zurich RAW-to-RGB / PyNET (Bayer mosaic patches from RAW phone photos).")
@click.option("--raw-values", type=click.Choice(["pynet", "native"]), default="pynet", show_default=True,
              help="With --layout zrr: pynet (black subtracted, white at 1020) or native camera values.")
@click.option("--size", type=int, default=None, help="Patch side (px); default 100, or 448 with --layout zrr.")
@click.option("--threshold", type=float, default=0.9, show_default=True,
              help="Keep a patch pair when its normalised cross-correlation is at least this.")
@click.option("--max-shift", type=int, default=5, show_default=True, help="Largest phone-window shift searched (px).")
@click.option("--max-angle", type=float, default=1.0, show_default=True, help="Largest rotation searched (degrees).")
@click.option("--angle-step", type=float, default=0.5, show_default=True, help="Rotation step (degrees).")
@click.option("--test-fraction", type=float, default=0.1, show_default=True,
              help="Share of photos in the test split (stable: adding photos moves none).")
@click.option("--test-photos", type=int, default=None, help="Exactly N test photos instead of a fraction.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/test split hash.")
@click.option("--quality", type=int, default=95, show_default=True, help="JPEG quality of the patches.")
@jobs_option
@dask_option
@allow_failures_option
def patches(aligned_dir, out_dir, phone, dslr, layout, raw_values, size, threshold, max_shift, max_angle, angle_step, test_fraction,
            test_photos, seed, quality, jobs, dask_scheduler, allow_failures):
    """Cut matched patch pairs from ALIGNED_DIR into the DPED layout in OUT_DIR.

    \b
    OUT_DIR/<phone>/training_data/{<phone>,<dslr>}/<i>.jpg
    OUT_DIR/<phone>/test_data/patches/{<phone>,<dslr>}/<i>.jpg
    OUT_DIR/<phone>/test_data/full_size_test_images/<name>.jpg
    OUT_DIR/<phone>/patches.csv, patches_report.json
    """
    from dpedkit.align.pairing import PairingError
    from dpedkit.patches.run import PatchOptions, cut_patches
    from dpedkit.patches.search import SearchOptions

    size = size or (448 if layout == "zrr" else 100)
    opts = PatchOptions(layout=layout, raw_values=raw_values, search=SearchOptions(size=size, max_shift=max_shift, max_angle=max_angle,
                                             angle_step=angle_step),
                        threshold=threshold, test_fraction=test_fraction, test_photos=test_photos, seed=seed,
                        quality=quality, jobs=jobs, dask_scheduler=dask_scheduler, phone=phone, dslr=dslr)
    try:
        summary = cut_patches(aligned_dir, out_dir, opts, log=_echo)
    except (PairingError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    _finish(summary.lines(), summary.problems, allow_failures)


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--phone", required=True, help="Phone folder name in the DPED layout (e.g. iphone).")
@click.option("--dslr", default="canon", show_default=True, help="DSLR folder name.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/<phone>).")
@click.option("--vgg", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="VGG-19 weights: torchvision .pth or MatConvNet .mat (else $DPEDKIT_VGG, else torch hub's cache).")
@click.option("--content-loss", type=click.Choice(["vgg", "none"]), default="vgg", show_default=True)
@click.option("--iters", type=int, default=20000, show_default=True)
@click.option("--batch-size", type=int, default=50, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--w-content", type=float, default=10.0, show_default=True)
@click.option("--w-color", type=float, default=0.5, show_default=True)
@click.option("--w-texture", type=float, default=1.0, show_default=True)
@click.option("--w-tv", type=float, default=2000.0, show_default=True)
@click.option("--eval-every", type=int, default=1000, show_default=True)
@click.option("--eval-patches", type=int, default=500, show_default=True, help="Test patches per evaluation.")
@click.option("--train-size", type=int, default=None, help="Use at most this many training patches.")
@device_option
@click.option("--no-amp", is_flag=True, help="Train in fp32 on CUDA too.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the training steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--nproc-per-node", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel processes on this machine (one per GPU); the batch size stays the "
                   "global one. Same as: torchrun --nproc-per-node N -m dpedkit train ...")
def train(data_dir, phone, dslr, out, vgg, content_loss, iters, batch_size, lr, w_content, w_color, w_texture, w_tv,
          eval_every, eval_patches, train_size, device, no_amp, compile_, seed, resume, nproc_per_node):
    """Train the DPED enhancer on DATA_DIR (the DPED layout: DATA_DIR[/<phone>]/training_data/...).

    Writes config.json, metrics.csv (losses, test PSNR/SSIM), samples/<iter>.png and
    checkpoints/last.pt (+ iter_<n>.pt) to the run folder every --eval-every iterations.
    """
    from dpedkit.train.checkpoint import CheckpointError
    from dpedkit.train.data import DatasetError
    from dpedkit.train.loop import TrainConfig, TrainError, train as run_training
    from dpedkit.train.vgg import VGGWeightsError

    cfg = TrainConfig(data_dir=str(data_dir), phone=phone, dslr=dslr, out=str(out or Path("runs") / phone),
                      vgg=str(vgg) if vgg else None, content_loss=content_loss, iters=iters, batch_size=batch_size,
                      lr=lr, w_content=w_content, w_color=w_color, w_texture=w_texture, w_tv=w_tv,
                      eval_every=eval_every, eval_patches=eval_patches, train_size=train_size, device=device,
                      amp=not no_amp, compile=compile_, seed=seed, resume=resume)
    try:
        if nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
            from dpedkit.train.distributed import train_on_processes
            rows = train_on_processes(cfg, nproc_per_node)
        else:
            rows = run_training(cfg, log=_echo)
    except (TrainError, DatasetError, VGGWeightsError, CheckpointError) as e:
        raise click.UsageError(str(e)) from None
    if not rows:  # a process of a torchrun run other than rank 0
        return
    click.echo(f"done: iteration {rows[-1]['iteration']}, test PSNR {float(rows[-1]['test_psnr']):.2f} dB; "
               f"run folder {cfg.out}")


@main.command()
@model_argument
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder (names kept; folders keep their sub-paths).")
@device_option
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
              help="auto: fp16 on CUDA (within 1/255 of fp32), fp32 on CPU.")
@click.option("--format", "fmt", type=click.Choice(["jpg", "png"]), default="jpg", show_default=True)
@click.option("--quality", type=int, default=95, show_default=True, help="JPEG quality.")
@click.option("--side-by-side", is_flag=True, help="Also write <name>_before_after.<format>.")
@click.option("--tile", type=int, default=None,
              help="Approximate mode for photos too big for memory: tiles of this side (px), cross-faded.")
@click.option("--overlap", type=int, default=64, show_default=True, help="Tile overlap (px), with --tile.")
@click.option("--force", is_flag=True, help="Redo photos whose output already exists.")
@allow_failures_option
def enhance(model, inputs, out_dir, device, precision, fmt, quality, side_by_side, tile, overlap, force,
            allow_failures):
    """Enhance photos (files or folders) of any size with MODEL.

    MODEL is a run folder or .pt checkpoint of ours, or an official DPED TensorFlow
    checkpoint prefix such as models_orig/iphone_orig (read without TensorFlow).
    Each photo is enhanced whole (exact: the generator normalises over the whole image).
    """
    from dpedkit.enhance.run import EnhanceOptions, enhance_paths
    from dpedkit.train.checkpoint import CheckpointError
    from dpedkit.train.loop import TrainError

    opts = EnhanceOptions(device=device, precision=precision, format=fmt, quality=quality,
                          side_by_side=side_by_side, tile=tile, overlap=overlap, force=force)
    try:
        summary = enhance_paths(model, list(inputs), out_dir, opts, log=_echo)
    except (CheckpointError, TrainError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    _finish(summary.lines(), summary.problems, allow_failures)


@main.command()
@model_argument
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--phone", required=True, help="Phone folder name in the DPED layout (e.g. iphone).")
@click.option("--dslr", default="canon", show_default=True, help="DSLR folder name.")
@click.option("--limit", type=int, default=None, help="Use at most this many test patches.")
@click.option("-o", "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the scores as JSON here (default: evaluate_<phone>.json).")
@device_option
def evaluate(model, data_dir, phone, dslr, limit, json_path, device):
    """PSNR, SSIM and MS-SSIM of MODEL on the test patches of DATA_DIR, beside the identity baseline.

    Conventions: RGB in [0, 1], data range 1; SSIM with an 11x11 Gaussian window (sigma 1.5),
    MS-SSIM with the DPED code's 5 scales and weights; each per batch of 50 patches, averaged.
    """
    import json

    from dpedkit.evaluate import evaluate_model, table
    from dpedkit.imageio import write_text_atomic
    from dpedkit.train.checkpoint import CheckpointError
    from dpedkit.train.data import DatasetError
    from dpedkit.train.loop import TrainError

    try:
        result = evaluate_model(model, data_dir, phone, dslr, device, limit, log=_echo)
    except (CheckpointError, DatasetError, TrainError) as e:
        raise click.UsageError(str(e)) from None
    json_path = json_path or Path(f"evaluate_{phone}.json")
    write_text_atomic(json_path, json.dumps(result, indent=1))
    for line in table(result) + [f"scores: {json_path}"]:
        click.echo(line)


@main.command()
@click.argument("aligned_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dataset_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True)
@click.option("--thumb", type=int, default=240, show_default=True, help="Thumbnail width (px).")
def report(aligned_dir, dataset_dir, run_dir, out, thumb):
    """One self-contained HTML page about ALIGNED_DIR [DATASET_DIR [RUN_DIR]].

    \b
    Every pair's status, matches, reprojection error and patch counts; thumbnails of the
    aligned pair with a checkerboard and a difference image; the patch correlation histogram
    and accepted windows; with a run folder, the loss and PSNR/SSIM curves and samples.
    Opens offline (images embedded, charts inline SVG).
    """
    from dpedkit.report.page import build_report

    try:
        path = build_report(aligned_dir, dataset_dir, run_dir, out, thumb, log=_echo)
    except (FileNotFoundError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    click.echo(f"report: {path}")


@main.command()
@click.argument("demo_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"))
@click.option("--train-iters", type=int, default=150, show_default=True, help="Training iterations (CPU minutes).")
@click.option("--batch-size", type=int, default=8, show_default=True)
@jobs_option
def demo(demo_dir, train_iters, batch_size, jobs):
    """Run the whole pipeline on real photos that ship with scikit-image (no download).

    \b
    DEMO_DIR/raw/       DSLR photos and simulated phone photos (known homographies)
    DEMO_DIR/aligned/   align, with the error against the true homographies
    DEMO_DIR/dataset/   patches (DPED layout)
    DEMO_DIR/runs/demo/ a short CPU training run
    DEMO_DIR/enhanced/  the test photos enhanced, with before/after
    DEMO_DIR/report.html
    Re-running resumes where it stopped.
    """
    from dpedkit.demo import run_demo

    problems = run_demo(demo_dir, jobs=jobs, train_iters=train_iters, batch_size=batch_size, log=click.echo)
    sys.exit(EXIT_ITEMS_FAILED if problems else 0)


if __name__ == "__main__":
    main()
