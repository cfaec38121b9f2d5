"""What running on a cluster costs on one node: align on a Dask LocalCluster vs the local
joblib pool, and data-parallel training on 2 processes vs 1, in the same run.

    python bench/scaling.py [--pairs 8] [--workers 2] [--iters 6] [--workdir bench/out/scaling]

align: N synthetic 2000×1500 phone / 2736×1824 DSLR pairs (a quarter of DPED size), the
same --workers on both engines (joblib's loky pool; a LocalCluster of that many single-thread
worker processes on loopback), cluster start-up excluded. Prints pairs/s and the ratio.
train: batch 8 of 100×100 patches, content loss off, CPU: one process vs two DDP processes
(gloo) of 4 samples each; prints iterations/s and the ratio. On a CPU the two processes
share the same cores, so this measures the cost of DDP (gradient all-reduce, per-process
overheads), not a speed-up; on N GPUs each process has its own device.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_raw(raw: Path, n: int) -> None:
    from dpedkit.imageio import write_image
    from dpedkit.testing.synth import collage, random_homography, render_phone
    rng = np.random.default_rng(0)
    for i in range(n):
        if (raw / "phone" / f"{i}.jpg").exists():
            continue
        dslr = collage((2736, 1824), rng, offset=i)
        H = random_homography((2736, 1824), (2000, 1500), rng, coverage=0.8)
        write_image(raw / "dslr" / f"{i}.jpg", dslr, quality=95)
        write_image(raw / "phone" / f"{i}.jpg", render_phone(dslr, H, (2000, 1500), rng), quality=92)


def time_align(raw: Path, out: Path, jobs: int, scheduler: str | None) -> float:
    from dpedkit.align.stage import AlignRunOptions, align_folder
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = align_folder(raw, out, AlignRunOptions(jobs=jobs, dask_scheduler=scheduler, progress=False),
                           log=lambda *_: None)
    assert not summary.problems, summary.lines()
    return time.perf_counter() - t0


def bench_align(work: Path, pairs: int, workers: int) -> None:
    from distributed import LocalCluster
    raw = work / "raw"
    make_raw(raw, pairs)
    local = time_align(raw, work / "local", workers, None)
    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as c:
        time_align(raw, work / "warmup", workers, c.scheduler_address)   # workers import dpedkit once
        dask = time_align(raw, work / "dask", workers, c.scheduler_address)
    print(f"align, {pairs} pairs of 3 MP, {workers} workers")
    print(f"  joblib (local pool)   {pairs / local:6.2f} pairs/s  ({local:.1f} s)")
    print(f"  Dask LocalCluster     {pairs / dask:6.2f} pairs/s  ({dask:.1f} s)")
    print(f"  Dask / joblib         {local / dask:6.2f}×")


def bench_train(work: Path, iters: int) -> None:
    from dpedkit.testing.synth import sample_images
    from dpedkit.train.launch import train_on_processes
    from dpedkit.train.loop import TrainConfig, train
    from tests.test_train import make_dataset
    data = make_dataset(work / "data", sample_images(), n_train=64, n_test=8)

    def cfg(name, n):
        shutil.rmtree(work / name, ignore_errors=True)
        return TrainConfig(data_dir=str(data), phone="p", dslr="d", out=str(work / name), content_loss="none",
                           iters=n, batch_size=8, eval_every=n, eval_patches=8, device="cpu",
                           keep_checkpoints=0)

    def rate(run_rows):  # iterations/s from the first evaluation to the last (start-up excluded)
        return iters / (float(run_rows[-1]["seconds"]) - float(run_rows[0]["seconds"]))

    one = rate(train(cfg("one", iters), log=lambda *_: None, progress=False))
    two = rate(train_on_processes(cfg("two", iters), 2, quiet=True))
    print(f"train, batch 8 (CPU, content loss off), {iters} iterations")
    print(f"  1 process             {one:6.2f} it/s")
    print(f"  2 DDP processes       {two:6.2f} it/s")
    print(f"  2 / 1                 {two / one:6.2f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "scaling")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    bench_align(a.workdir, a.pairs, a.workers)
    bench_train(a.workdir, a.iters)


if __name__ == "__main__":
    main()
