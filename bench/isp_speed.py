"""CPU training speed of the learned ISPs: one optimisation step (forward, MSE, backward,
Adam) of PyNET per level and of MicroISP, beside a fixed matmul baseline measured in the
same run (ratios survive a loaded machine).

    python bench/isp_speed.py [--side 128] [--batch 1] [--width 32] [--threads 1]

``--side``: mosaic side in px (PyNET needs a multiple of 32, MicroISP at least 160).
"""

from __future__ import annotations

import argparse
import time

import torch

from dpedkit.model.microisp import MicroISP
from dpedkit.model.pynet import PyNET, count_parameters


def step_seconds(model, x, y_of, repeats: int = 2) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        ((out - y_of(out)) ** 2).mean().backward()
        opt.step()
        if i:                                   # the first step warms up
            times.append(time.perf_counter() - t)
    return min(times)


def baseline_seconds() -> float:
    a = torch.randn(512, 512)
    t = time.perf_counter()
    for _ in range(20):
        a @ a
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.rand(a.batch, 4, a.side // 2, a.side // 2)
    print(f"baseline: 20 matmuls 512x512 {baseline_seconds():.3f} s; batch {a.batch}, {a.side} px mosaics, "
          f"{a.threads} thread(s)")
    pynet = PyNET(width=a.width)
    print(f"PyNET width {a.width}: {count_parameters(pynet):,} parameters")
    for level in (5, 4, 3, 2, 1, 0):
        pynet.level = level
        s = step_seconds(pynet, x, torch.rand_like)
        print(f"  level {level}: {1 / s:.2f} it/s ({s:.3f} s/step)")
    if a.side // 2 >= 79:
        m = MicroISP()
        s = step_seconds(m, x, torch.rand_like)
        print(f"MicroISP: {count_parameters(m):,} parameters, {1 / s:.2f} it/s ({s:.3f} s/step)")
    print(f"baseline again: {baseline_seconds():.3f} s")


if __name__ == "__main__":
    main()
