"""The ``dpedkit`` command line: parses options and calls the library.

Every command's options are generated from its options dataclass (:mod:`dpedkit.options`),
so each default and help text is written once, in the dataclass field.

Exit codes (:mod:`dpedkit.runner`): 0 everything succeeded; 1 some items failed (see the
summary and the manifest), unless ``--allow-failures``; 2 the run could not start (bad
options or folders); 3 the run stopped because its outputs cannot be written (disk full, no
permission), another run holds the output folder, or the Dask cluster cannot be reached or
failed; 130 interrupted. Finished work is kept in every case: re-run the same command to resume.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import click

from dpedkit import __version__
from dpedkit.options import click_options, default_of, from_options


_COMMANDS: dict[str, tuple[str, Callable[[], click.Command]]] = {}


def _lazy_command(name: str, short_help: str):
    """Register a command built on first use: its options come from dataclasses whose modules
    import torch and OpenCV, which ``dpedkit align --help`` should not wait for."""
    def register(build: Callable[[], click.Command]) -> Callable[[], click.Command]:
        _COMMANDS[name] = (short_help, build)
        return build
    return register


class _Group(click.Group):
    """Builds commands lazily, and turns the errors that stop a whole run into a message and an
    exit code, not a traceback."""

    def list_commands(self, ctx):
        return list(_COMMANDS)

    def get_command(self, ctx, name):
        if name not in self.commands and name in _COMMANDS:
            self.add_command(_COMMANDS[name][1](), name)
        return self.commands.get(name)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (help_, _) in _COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        from dpedkit.errors import EXIT_INTERRUPTED, DpedkitError, StoppedError
        try:
            return super().invoke(ctx)
        except DpedkitError as e:       # the one place a dpedkit error becomes a message and an exit code
            if isinstance(e, StoppedError):
                click.echo(f"error: {e}", err=True)
                click.echo("stopped; finished work is kept: re-run the same command to resume", err=True)
            elif e.exit_code >= 128:    # stopped by a signal: the message says how to resume
                click.echo(f"\n{e}", err=True)
            else:
                click.echo(f"Error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("\ninterrupted; finished work is kept: re-run the same command to resume", err=True)
            sys.exit(EXIT_INTERRUPTED)


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _finish(lines: list[str], problems: int, allow_failures: bool) -> None:
    from dpedkit.runner import exit_code
    for line in lines:
        click.echo(line)
    code = exit_code(problems, allow_failures)
    if code:
        sys.exit(code)


def _example(*lines: str) -> str:
    """A command's epilog: one real example, shown at the end of its --help."""
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in lines)


allow_failures_option = click.option("--allow-failures", is_flag=True,
                                     help="Exit 0 even when some items failed.")
model_argument = click.argument("model", type=click.Path(path_type=Path))
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dpedkit")
def main() -> None:
    """Build paired phone→DSLR photo datasets (DPED) and train the DPED enhancer.

    \b
    raw/ --align--> aligned/ --patches--> dataset/ --train--> runs/<name>/
    """


@_lazy_command('align', 'Pair, align and crop the photos of RAW_DIR into OUT_DIR.')
def _align_command() -> click.Command:
    from dpedkit.align.stage import AlignRunOptions

    @click.command(epilog=_example("dpedkit align raw/ aligned/ --previews -j 4"))
    @click.argument("raw_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
    @click_options(AlignRunOptions)
    @allow_failures_option
    def align(raw_dir, out_dir, allow_failures, **options):
        """Pair, align and crop the photos of RAW_DIR into OUT_DIR.

        \b
        RAW_DIR/<phone>/*.jpg, RAW_DIR/<dslr>/*.jpg  →  OUT_DIR/<phone>/<name>.png,
        OUT_DIR/<dslr>/<name>.png, OUT_DIR/manifest.jsonl (one record per pair,
        failures and unpaired photos included) and OUT_DIR/dataset.json (the camera
        names). A re-run skips finished pairs.
        """
        from dpedkit.align.stage import align_folder

        opts = from_options(AlignRunOptions, options)
        summary = align_folder(raw_dir, out_dir, opts, log=_echo)
        _finish(summary.lines() + [f"manifest: {out_dir / 'manifest.jsonl'}"], summary.problems, allow_failures)
    return align


@_lazy_command('patches', 'Cut matched patch pairs from ALIGNED_DIR into the DPED layout in OUT_DIR.')
def _patches_command() -> click.Command:
    from dpedkit.patches.stage import PatchOptions

    @click.command(epilog=_example("dpedkit patches aligned/ dataset/ --test-photos 10"))
    @click.argument("aligned_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
    @click_options(PatchOptions, overrides={"size": {"default": None, "help": "Patch side (px); default 100, "
                                                                            "448 with --layout zrr."}})
    @allow_failures_option
    def patches(aligned_dir, out_dir, allow_failures, **options):
        """Cut matched patch pairs from ALIGNED_DIR into the DPED layout in OUT_DIR.

        \b
        OUT_DIR/<phone>/training_data/{<phone>,canon}/<i>.jpg
        OUT_DIR/<phone>/test_data/patches/{<phone>,canon}/<i>.jpg
        OUT_DIR/<phone>/test_data/full_size_test_images/<name>.jpg
        OUT_DIR/<phone>/patches.csv, patches_report.json, dataset.json

        \b
        With --layout zrr (RAW phone photos aligned as mosaics; Zurich RAW-to-RGB / PyNET):
        OUT_DIR/{train,test}/huawei_raw/<i>.png (16-bit mosaic, R at (0,0)),
        OUT_DIR/{train,test}/canon/<i>.jpg, OUT_DIR/test/huawei_full_resolution/<name>.png
        (PyNET's folder names; --zrr-phone NAME writes NAME_raw, NAME_full_resolution),
        OUT_DIR/raw.json, patches.csv, patches_report.json
        """
        from dpedkit.patches.search import SearchOptions
        from dpedkit.patches.stage import cut_patches
        from dpedkit.patches.zrr import ZRR_SIZE

        if options.get("search__size") is None:
            options["search__size"] = ZRR_SIZE if options.get("layout") == "zrr" else SearchOptions().size
        opts = from_options(PatchOptions, options)
        summary = cut_patches(aligned_dir, out_dir, opts, log=_echo)
        _finish(summary.lines(), summary.problems, allow_failures)
    return patches


def _train_config(data_dir: Path | None, config_path: Path | None, options: dict):
    """The :class:`TrainConfig` of a ``dpedkit train`` command line: the recorded one of
    ``--config`` with what this command line gives, or one from the options, the camera (or
    mosaic) folders and the model found in the dataset."""
    from click.core import ParameterSource

    from dpedkit.layout import dataset_cameras
    from dpedkit.train.config import DPED_ONLY, ISP_MODELS, TrainConfig, config_from_json, detect_model
    from dpedkit.train.raw_data import zrr_folders

    ctx = click.get_current_context()
    if config_path:
        # only what this command line says overrides the recorded recipe, not click's defaults
        given = {k: v for k, v in options.items()
                 if ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
        if data_dir is not None:
            given["data_dir"] = str(data_dir)
        return config_from_json(config_path, **{k: str(v) if isinstance(v, Path) else v for k, v in given.items()})
    if data_dir is None:
        raise click.UsageError("give DATA_DIR, or --config RUN/config.json")
    model = options["model"] if options["model"] != "auto" else detect_model(data_dir)
    if model in ISP_MODELS:
        given = [k for k in DPED_ONLY if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"{', '.join('--' + k.replace('_', '-') for k in given)}: DPED options; "
                                   f"--model {model} takes its batch sizes, learning rate, losses and "
                                   "length from its recipe (--recipe, --stage-steps)")
        folders = zrr_folders(data_dir, options.pop("phone"), options.pop("dslr"))
        phone, dslr, name = folders.raw, folders.dslr, model
    else:
        _, phone, dslr = dataset_cameras(data_dir, options.pop("phone"), options.pop("dslr"))
        name = phone
    out = options.pop("out") or str(Path("runs") / name)
    return from_options(TrainConfig, options, data_dir=str(data_dir), phone=phone, dslr=dslr, out=str(out),
                        model=model)


@_lazy_command('train', 'Train the DPED enhancer, or a learned ISP (PyNET, MicroISP) on a RAW-to-RGB dataset.')
def _train_command() -> click.Command:
    from dpedkit.train.loop import TrainConfig

    @click.command(epilog=_example("dpedkit train dataset/ --out runs/iphone --iters 20000",
                                   "dpedkit train raw_dataset/ --model pynet --out runs/pynet",
                                   "dpedkit train --config runs/iphone/config.json --iters 40000"))
    @click.argument("data_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  default=None, help="Re-run the recipe recorded in a run's config.json; options given on this "
                                     "command line override it (DATA_DIR and --phone then optional).")
    @click_options(TrainConfig, skip=("data_dir",),
                   overrides={"phone": {"default": None}, "dslr": {"default": None}, "out": {"default": None}})
    @click.option("--nproc-per-node", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Data-parallel processes on this machine (one per GPU); the batch size stays the "
                       "global one. Same as: torchrun --nproc-per-node N -m dpedkit train ...")
    def train(data_dir, config_path, nproc_per_node, **options):
        """Train the DPED enhancer on DATA_DIR (the DPED layout: DATA_DIR[/<phone>]/training_data/...),
        or a learned ISP on a RAW-to-RGB dataset (DATA_DIR/{train,test}/..., built by dpedkit
        patches --layout zrr): --model pynet (the published level-by-level schedule) or microisp.

        Writes config.json, metrics.csv (losses, test PSNR/SSIM/MS-SSIM), samples/<iter>.png and
        checkpoints/ (last.pt, iter_<n>.pt, best.pt, generator.pt) to the run folder every
        --eval-every iterations. Re-running the same command resumes; Ctrl-C or SIGTERM saves
        last.pt after the current iteration.
        """
        from dpedkit.train.loop import train as run_training

        cfg = _train_config(data_dir, config_path, options)
        if nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
            from dpedkit.train.launch import train_on_processes
            rows = train_on_processes(cfg, nproc_per_node)
        else:
            rows = run_training(cfg, log=_echo)
        if not rows:  # a process of a torchrun run other than rank 0
            return
        click.echo(f"done: iteration {rows[-1]['iteration']}, test PSNR {float(rows[-1]['test_psnr']):.2f} dB; "
                   f"run folder {cfg.out}")
    return train


@_lazy_command('enhance', 'Enhance photos (files or folders) of any size with MODEL.')
def _enhance_command() -> click.Command:
    from dpedkit.enhance.stage import EnhanceOptions

    @click.command(epilog=_example("dpedkit enhance runs/iphone photos/ -o enhanced/ --side-by-side --max-memory 4G"))
    @model_argument
    @click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
    @click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                  help="Output folder (names kept; folders keep their sub-paths).")
    @click_options(EnhanceOptions)
    @allow_failures_option
    def enhance(model, inputs, out_dir, allow_failures, **options):
        """Enhance photos (files or folders) of any size with MODEL.

        MODEL is a run folder or .pt checkpoint of ours, or an official DPED TensorFlow
        checkpoint prefix such as models_orig/iphone_orig (read without TensorFlow).
        Each photo is enhanced exactly (the generator normalises over the whole image): whole
        when it fits --max-memory, else in strips that reproduce the whole-image result.
        A learned ISP run (PyNET, MicroISP) renders RAW/DNG files, exactly too: whole, or
        out of core in strips within --max-memory.
        Outputs keep the input's EXIF (orientation 1) and ICC profile.
        A re-run skips photos done with the same model weights and options.
        """
        from dpedkit.enhance.stage import enhance_paths

        opts = from_options(EnhanceOptions, options)
        summary = enhance_paths(model, list(inputs), out_dir, opts, log=_echo)
        _finish(summary.lines(), summary.problems, allow_failures)
    return enhance


@_lazy_command('evaluate', 'PSNR, SSIM and MS-SSIM of MODEL on the test patches of DATA_DIR, beside the identity baseline.')
def _evaluate_command() -> click.Command:
    from dpedkit.evaluate import EvaluateOptions

    @click.command(epilog=_example("dpedkit evaluate runs/iphone dataset/ --phone iphone"))
    @model_argument
    @click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click_options(EvaluateOptions)
    @click.option("-o", "--json", "json_path", type=click.Path(path_type=Path), default=None,
                  help="Write the scores as JSON to this file, or into this folder (default: into the run folder, "
                       "evaluate_<phone>.json; for an official model ./evaluate_<phone>_<name>.json).")
    def evaluate(model, data_dir, json_path, **options):
        """PSNR, SSIM and MS-SSIM of MODEL on the test patches of DATA_DIR, beside the identity baseline.

        Conventions: RGB in [0, 1], data range 1; SSIM with an 11x11 Gaussian window (sigma 1.5),
        MS-SSIM with the DPED code's 5 scales and weights; each per batch of 50 patches, averaged.
        """
        import json

        from dpedkit.evaluate import default_json_path, evaluate_model, table
        from dpedkit.fs import write_text_atomic

        opts = from_options(EvaluateOptions, options)
        result = evaluate_model(model, data_dir, opts.phone, opts.dslr, opts.device, opts.limit, log=_echo)
        json_path = default_json_path(model, result["phone"], json_path)
        write_text_atomic(json_path, json.dumps(result, indent=1))
        for line in table(result) + [f"scores: {json_path}"]:
            click.echo(line)
    return evaluate


@_lazy_command('export', "Export MODEL's generator to OUT as ONNX (any size) or TFLite (fixed size, fp32/fp16/int8).")
def _export_command() -> click.Command:
    from dpedkit.export import ExportError, ExportOptions, export_format

    def out_format(ctx, param, value):
        try:
            export_format(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
        return value

    @click.command(epilog=_example("dpedkit export models_orig/iphone_orig iphone.onnx",
                                   "dpedkit export runs/iphone iphone.tflite --input-size 768x1024",
                                   "dpedkit export runs/iphone iphone_int8.tflite --quantize int8 "
                                   "--calibration dataset/iphone/training_data/iphone"))
    @model_argument
    @click.argument("out", type=click.Path(dir_okay=False, path_type=Path), callback=out_format)
    @click_options(ExportOptions)
    def export(model, out, **options):
        """Export MODEL's generator to OUT; OUT's suffix chooses the format.

        MODEL: a run folder or .pt checkpoint, or an official DPED TensorFlow checkpoint prefix.

        \b
        .onnx    input (1, 3, H, W) float32 RGB in [0, 1], any H and W, to an output of the
                 same shape; instance normalisation over the whole image, as in enhance.
                 Needs pip install 'dpedkit[onnx]'.
        .tflite  a fixed --input-size; input (1, H, W, 3) NHWC float32 RGB in [0, 1] to the
                 same shape, --quantize none, fp16 or int8 (int8 calibrated on --calibration).
                 Needs pip install 'dpedkit[tflite]'.
        """
        from dpedkit.export import check_options, export_model
        opts = from_options(ExportOptions, options)
        try:
            check_options(out, opts)          # before the model is read
        except ExportError as e:
            raise click.UsageError(str(e)) from None
        export_model(model, out, opts, log=_echo)
    return export


@_lazy_command('report', 'A report folder about ALIGNED_DIR [DATASET_DIR [RUN_DIR]] that opens offline.')
def _report_command() -> click.Command:
    from dpedkit.report.site import build_site, site_folder

    @click.command(epilog=_example("dpedkit report aligned/ dataset/iphone runs/iphone -o report/"))
    @click.argument("aligned_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.argument("dataset_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("report"), show_default=True,
                  help="Report folder (index.html, pages/, pairs/, img/); '-o DIR/index.html' means DIR, "
                       "any other .html path is an error (the report is a folder).")
    @click.option("--thumb", type=click.IntRange(min=32), default=default_of(build_site, "thumb"),
                  show_default=True, help="Thumbnail width (px).")
    @click.option("--enhanced", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                  help="Folder of 'dpedkit enhance' outputs to show (before/after photos).")
    @click.option("--evaluate", "evaluations", multiple=True,
                  type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="evaluate JSON files to show (the run folder's evaluate_*.json are found by themselves).")
    def report(aligned_dir, dataset_dir, run_dir, out, thumb, enhanced, evaluations):
        """A report about ALIGNED_DIR [DATASET_DIR [RUN_DIR]]: a folder that opens offline.

        \b
        index.html: counts, the patch correlation histogram, training curves (PSNR with the
        identity baseline, SSIM/MS-SSIM, loss terms), evaluate's scores, enhanced photos, and
        the pairs table (paginated; each name links to the pair's page). pairs/<id>.html: the
        aligned pair, a checkerboard, a difference image and the map of patch windows (click an
        image to zoom).
        """
        path = build_site(aligned_dir, dataset_dir, run_dir, site_folder(out), thumb, enhanced, list(evaluations),
                          log=_echo)
        click.echo(f"report: {path}")
    return report


@_lazy_command('demo', 'Run the whole pipeline on real photos that ship with scikit-image (no download).')
def _demo_command() -> click.Command:
    from dpedkit.demo import run_demo

    @click.command(epilog=_example("dpedkit demo demo/"))
    @click.argument("demo_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"))
    @click.option("--train-iters", type=click.IntRange(min=1), default=default_of(run_demo, "train_iters"), show_default=True,
                  help="Training iterations (CPU minutes).")
    @click.option("--batch-size", type=click.IntRange(min=1), default=default_of(run_demo, "batch_size"), show_default=True,
                  help="Patches per training iteration.")
    @click.option("--test-patches", type=click.IntRange(min=1), default=None,
                  help="Score training and evaluate on at most this many test patches (default: all; fewer is faster).")
    @click.option("--jobs", "-j", type=int, default=None, help="Parallel workers (default: all cores).")
    def demo(demo_dir, train_iters, batch_size, test_patches, jobs):
        """Run the whole pipeline on real photos that ship with scikit-image (no download).

        \b
        DEMO_DIR/raw/       DSLR photos and simulated phone photos (known homographies)
        DEMO_DIR/aligned/   align, with the error against the true homographies
        DEMO_DIR/dataset/   patches (DPED layout)
        DEMO_DIR/runs/demo/ a short CPU training run
        DEMO_DIR/enhanced/  the test photos enhanced, with before/after
        DEMO_DIR/report/    the report: open DEMO_DIR/report/index.html
        Re-running resumes where it stopped.
        """
        # Ctrl-C in training: DemoInterrupted says how to resume with the same options (the group prints it)
        problems = run_demo(demo_dir, jobs=jobs, train_iters=train_iters, batch_size=batch_size,
                            test_patches=test_patches, log=click.echo)
        from dpedkit.runner import exit_code
        sys.exit(exit_code(problems))
    return demo


if __name__ == "__main__":
    main()
