"""The ``dpedkit`` command line: parses options and calls the library.

Exit codes: 0 everything succeeded; 1 some items failed (see the summary and the
manifest), unless ``--allow-failures``; 2 the run could not start (bad options or folders).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dpedkit import __version__

EXIT_ITEMS_FAILED = 1


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _finish(lines: list[str], problems: int, allow_failures: bool) -> None:
    for line in lines:
        click.echo(line)
    if problems and not allow_failures:
        sys.exit(EXIT_ITEMS_FAILED)


jobs_option = click.option("--jobs", "-j", type=int, default=None,
                           help="Parallel workers (default: all cores; 1 runs in this process).")
allow_failures_option = click.option("--allow-failures", is_flag=True,
                                     help="Exit 0 even when some items failed.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
@click.option("--force", is_flag=True, help="Redo pairs an earlier run finished.")
@jobs_option
@allow_failures_option
def align(raw_dir, out_dir, phone, dslr, pairs_csv, pair_by, max_skew, clock_offset, feature_side,
          min_inliers, min_overlap, previews, force, jobs, allow_failures):
    """Pair, align and crop the photos of RAW_DIR into OUT_DIR.

    \b
    RAW_DIR/<phone>/*.jpg, RAW_DIR/<dslr>/*.jpg  →  OUT_DIR/<phone>/<name>.png,
    OUT_DIR/<dslr>/<name>.png and OUT_DIR/manifest.jsonl (one record per pair,
    failures and unpaired photos included). A re-run skips finished pairs.
    """
    from dpedkit.align.core import AlignOptions
    from dpedkit.align.pairing import PairingError
    from dpedkit.align.run import AlignRunOptions, align_folder

    opts = AlignRunOptions(phone=phone, dslr=dslr, pairs_csv=pairs_csv, pair_by=pair_by, max_skew=max_skew,
                           clock_offset=clock_offset, jobs=jobs, previews=previews, force=force,
                           align=AlignOptions(feature_side=feature_side, min_inliers=min_inliers,
                                              min_overlap=min_overlap))
    try:
        summary = align_folder(raw_dir, out_dir, opts, log=_echo)
    except (PairingError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    _finish(summary.lines() + [f"manifest: {out_dir / 'manifest.jsonl'}"], summary.problems, allow_failures)


@main.command()
@click.argument("demo_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"))
@jobs_option
def demo(demo_dir, jobs):
    """Run the pipeline on real photos that ship with scikit-image (no download).

    Builds DEMO_DIR/raw/ (DSLR photos and simulated phone photos with known homographies),
    aligns it into DEMO_DIR/aligned/ and reports the alignment error against the truth.
    """
    from dpedkit.demo import run_demo

    problems = run_demo(demo_dir, jobs=jobs, log=click.echo)
    sys.exit(EXIT_ITEMS_FAILED if problems else 0)


if __name__ == "__main__":
    main()
