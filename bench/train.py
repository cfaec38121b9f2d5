"""Training speed: iterations/s at batch 50 on 100×100 patches, optimised path vs plain fp32
eager PyTorch, in one run; and the data loader's samples/s alone.

    python bench/train.py [--iters 3] [--device auto]

The optimised path is what `dpedkit train` uses: on CUDA bf16 autocast, channels_last,
fused Adam, the training set resident on the GPU (a batch is an index), no host sync in the
loop; on a CPU it is the same code as eager fp32, so the ratio is ~1 there.
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
    from dpedkit.synth import collage

    rng = np.random.default_rng(0)
    big = collage((1200, 800), rng)
    for split, count in (("training_data", n), ("test_data/patches", 50)):
        for i in range(count):
            y, x = rng.integers(0, 700), rng.integers(0, 1100)
            d = big[y:y + 100, x:x + 100]
            write_image(root / "p" / split / "p" / f"{i}.jpg", (d * 0.8).astype(np.uint8))
            write_image(root / "p" / split / "d" / f"{i}.jpg", d)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    from dpedkit.train.loop import Trainer, TrainConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    make_dataset(tmp)
    rates = {}
    for name, amp in (("fp32 eager", False), ("optimised", True)):
        cfg = TrainConfig(data_dir=str(tmp), phone="p", dslr="d", out=str(tmp / name), content_loss="none",
                          batch_size=50, eval_patches=50, device=args.device, amp=amp)
        t = Trainer(cfg, log=lambda *_: None)
        if not amp and t.cuda:  # plain eager: fp32, contiguous NCHW, unfused Adam
            for m in (t.G, t.D):
                m.to(memory_format=torch.contiguous_format)
            t.opt_g = torch.optim.Adam(t.G.parameters(), lr=cfg.lr)
            t.opt_d = torch.optim.Adam(t.D.parameters(), lr=cfg.lr)
            t.cuda = False  # the batch path without channels_last
        t.step()  # warm-up
        sync(t.device)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            t.step()
        sync(t.device)
        rates[name] = args.iters / (time.perf_counter() - t0)
        print(f"{name:11s} {rates[name]:8.3f} it/s  ({rates[name] * 50:.1f} samples/s) on {t.device}", flush=True)
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < 2.0:
            t._batch()
            n += 1
        sync(t.device)
        loader = n * 50 / (time.perf_counter() - t0)
        print(f"{'':11s} data loader alone: {loader:,.0f} samples/s = {loader / (rates[name] * 50):,.0f}x what training consumes")
    print(f"optimised / fp32 eager: {rates['optimised'] / rates['fp32 eager']:.2f}x")
    if rates["optimised"] > 0:
        print(f"20,000 iterations at this rate: {20000 / rates['optimised'] / 60:.1f} min")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
