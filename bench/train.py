"""Training speed: iterations/s at batch 50 on 100×100 patches, optimised path vs plain fp32
eager PyTorch, in one run; and the data loader's samples/s alone. With ``--isp``, the
learned ISPs instead: steps/s of every PyNET level and of MicroISP through dpedkit's trainer
(``IspTrainer.step``: patches streamed from disk, decoded, the step), at each stage's
published batch size unless ``--isp-batch`` is given.

    python bench/train.py [--iters 3] [--device auto] [--compile] [--content-loss none|vgg --vgg PATH]
    python bench/train.py --isp [--isp-side 448] [--isp-batch 1] [--pynet-width 32] [--iters 2]

The optimised path is what `dpedkit train` uses by default: on CUDA bf16 autocast,
channels_last, fused Adam, the training set resident on the GPU (a batch is an index), no
host sync in the loop (plus torch.compile with --compile). The plain path is fp32, NCHW,
unfused Adam, eager. On a CPU both default to the same code, so the ratio is ~1 there.
Targets on one H100: ≥ 2× plain fp32 eager; the paper's 20,000 iterations of batch 50 in
under 15 minutes (with the content loss, --content-loss vgg).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_dataset(root: Path, n: int = 200) -> None:
    from dpedkit.imageio import write_image
    from dpedkit.testing.synth import collage

    rng = np.random.default_rng(0)
    big = collage((1200, 800), rng)
    for split, count in (("training_data", n), ("test_data/patches", 50)):
        for i in range(count):
            y, x = rng.integers(0, 700), rng.integers(0, 1100)
            d = big[y:y + 100, x:x + 100]
            write_image(root / "p" / split / "p" / f"{i}.jpg", (d * 0.8).astype(np.uint8))
            write_image(root / "p" / split / "d" / f"{i}.jpg", d)


def make_zrr(root: Path, side: int, n: int) -> None:
    """A RAW-to-RGB layout of ``n`` random ``side`` px patch pairs per split (speed does not
    depend on the content)."""
    import cv2
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for folder in ("huawei_raw", "canon"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / split / "huawei_raw" / f"{i}.png"), rng.integers(0, 1021, (side, side), np.uint16))
            cv2.imwrite(str(root / split / "canon" / f"{i}.jpg"), rng.integers(0, 256, (side, side, 3), np.uint8))


def bench_isp(args) -> None:
    from dataclasses import replace

    from dpedkit.train.isp_trainer import IspTrainer
    from dpedkit.train.loop import TrainConfig
    from dpedkit.train.recipes import RECIPES, Recipe

    tmp = Path(tempfile.mkdtemp())
    n = max(2 * (args.isp_batch or 50), 4)
    make_zrr(tmp, args.isp_side, n)
    for name in ("pynet", "microisp"):
        if name == "microisp" and args.isp_side < 160:
            print(f"microisp: skipped (it takes mosaics of at least 160 px, not {args.isp_side})")
            continue
        base = RECIPES[name]
        stages = tuple(replace(s, batch_size=args.isp_batch or s.batch_size) for s in base.stages)
        kwargs = {"width": args.pynet_width} if name == "pynet" else {}
        cfg = TrainConfig(data_dir=str(tmp), phone="huawei_raw", dslr="canon", out=str(tmp / name), model=name,
                          stage_steps=args.iters + 1, content_loss=args.content_loss, vgg=args.vgg,
                          device=args.device, eval_patches=1)
        t = IspTrainer(cfg, log=lambda *_: None, recipe=Recipe(f"{name} (bench)", base.model, stages, kwargs))
        print(f"{name} ({'width ' + str(args.pynet_width) + ', ' if name == 'pynet' else ''}"
              f"{sum(p.numel() for p in t.net.parameters()):,} parameters), {args.isp_side} px mosaics on "
              f"{t.device} [{t.precision}], content loss {args.content_loss}:", flush=True)
        for s in stages:
            t.step()                                   # warm-up: a new stage's loader and Adam
            sync(t.device)
            t0 = time.perf_counter()
            for _ in range(args.iters):
                t.step()
            sync(t.device)
            rate = args.iters / (time.perf_counter() - t0)
            print(f"  level {s.level}, batch {s.batch_size}: {rate:.3f} steps/s ({rate * s.batch_size:.2f} patches/s)",
                  flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    from dpedkit.train.loop import Trainer, TrainConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=50, help="50 is the paper's; smaller for a quick CPU look")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the optimised path")
    ap.add_argument("--content-loss", default="none", choices=["none", "vgg"])
    ap.add_argument("--vgg", default=None, help="VGG-19 weights for --content-loss vgg")
    ap.add_argument("--isp", action="store_true", help="time the learned ISPs (PyNET per level, MicroISP) instead")
    ap.add_argument("--isp-side", type=int, default=448, help="mosaic patch side in px (PyNET's: 448)")
    ap.add_argument("--isp-batch", type=int, default=None, help="batch of every stage (default: the recipe's)")
    ap.add_argument("--pynet-width", type=int, default=32, help="PyNET's base channels (published: 32)")
    args = ap.parse_args()
    if args.isp:
        return bench_isp(args)
    tmp = Path(tempfile.mkdtemp())
    make_dataset(tmp)
    paths = {"fp32 eager": dict(precision="fp32", channels_last=False, fused_adam=False, compile=False),
             "optimised": dict(precision="auto", channels_last=None, fused_adam=None, compile=args.compile)}
    rates = {}
    for name, switches in paths.items():
        cfg = TrainConfig(data_dir=str(tmp), phone="p", dslr="d", out=str(tmp / name.replace(" ", "_")),
                          content_loss=args.content_loss, vgg=args.vgg, batch_size=args.batch_size, eval_patches=50,
                          device=args.device, **switches)
        t = Trainer(cfg, log=lambda *_: None)
        for _ in range(2 if args.compile else 1):  # warm-up (compilation)
            t.step()
        sync(t.device)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            t.step()
        sync(t.device)
        rates[name] = args.iters / (time.perf_counter() - t0)
        what = f"{t.precision}{', channels_last' if t.channels_last else ''}" \
               f"{', fused Adam' if t.opt_g.defaults.get('fused') else ''}{', compiled' if cfg.compile else ''}"
        print(f"{name:11s} {rates[name]:8.3f} it/s  ({rates[name] * args.batch_size:.1f} samples/s) on {t.device} [{what}]",
              flush=True)
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < 2.0:
            t._batch(swaps=True)
            n += 1
        sync(t.device)
        loader = n * args.batch_size / (time.perf_counter() - t0)
        print(f"{'':11s} data loader alone: {loader:,.0f} samples/s = "
              f"{loader / (rates[name] * args.batch_size):,.0f}x what training consumes")
    print(f"optimised / fp32 eager: {rates['optimised'] / rates['fp32 eager']:.2f}x")
    print(f"20,000 iterations of batch {args.batch_size} at the optimised rate: "
          f"{20000 / rates['optimised'] / 60:.1f} min")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
