"""Learned-ISP rendering (``dpedkit enhance RUN raw/*.dng``): whole image vs exact out-of-core
strips, seconds and peak memory, each in a fresh process.

    python bench/isp_enhance.py [--model pynet|microisp] [--width 32] [--megapixels 1]
                                [--max-memory 1G] [--threads 2]

Random weights (norm scales and PReLU slopes spread), a random packed mosaic of
``--megapixels`` (mosaic pixels; the packed input is a quarter of that). ``whole``: the
forward on the whole image (``raw_isp.render``); ``strips``: ``raw_isp.render_exact`` within
``--max-memory`` (out of core when the whole image does not fit it). Peak: the process's
resident high-water mark (VmHWM) during the rendering; max diff: the two uint8 outputs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ONE = """
import json, sys, time
import numpy as np, torch
from dpedkit.enhance.planner import parse_size, resident_bytes
from dpedkit.enhance.raw_isp import render, render_exact
from dpedkit.model.microisp import MicroISP
from dpedkit.model.pynet import PyNET
model, width, side, budget, method, threads, out = sys.argv[1:8]
torch.set_num_threads(int(threads))
torch.manual_seed(0)
net = (PyNET(level=0, width=int(width)) if model == "pynet" else MicroISP(init_std=0.3)).eval()
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, torch.nn.InstanceNorm2d):
            m.weight.normal_(1, 0.3), m.bias.normal_(0, 0.3)
        elif isinstance(m, torch.nn.PReLU):
            m.weight.uniform_(-0.3, 0.3)
packed = np.random.default_rng(0).random((4, int(side), int(side)), dtype=np.float32)
render(net, packed[:, :96, :96], torch.device("cpu"), torch.float32)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base, logs, t0 = resident_bytes(), [], time.perf_counter()
if method == "whole":
    img = render(net, packed, torch.device("cpu"), torch.float32)
else:
    img = render_exact(net, packed, torch.device("cpu"), torch.float32, parse_size(budget), log=logs.append)
s = time.perf_counter() - t0
with open("/proc/self/status") as f:
    peak = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
np.save(out, img)
print(json.dumps({"s": s, "peak_mb": peak / 2**20, "base_mb": base / 2**20, "log": logs}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pynet", choices=["pynet", "microisp"])
    ap.add_argument("--width", type=int, default=32, help="PyNET's channel width (32: the published network)")
    ap.add_argument("--megapixels", type=float, default=1.0, help="mosaic megapixels")
    ap.add_argument("--max-memory", default="1G", help="budget of the strips method (binary units)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    side = max(96, int((a.megapixels * 1e6) ** 0.5 / 2) // 16 * 16)
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for method in ("whole", "strips"):
            out = Path(tmp) / f"{method}.npy"
            p = subprocess.run([sys.executable, "-c", ONE, a.model, str(a.width), str(side), a.max_memory, method,
                                str(a.threads), str(out)], capture_output=True, text=True, cwd=root)
            if p.returncode:
                sys.exit(p.stderr[-2000:])
            res[method] = json.loads(p.stdout.strip().splitlines()[-1])
        import numpy as np
        diff = int(np.abs(np.load(Path(tmp) / "whole.npy").astype(int) - np.load(Path(tmp) / "strips.npy")).max())
    mp = (2 * side) ** 2 / 1e6
    print(f"{a.model}{f' width {a.width}' if a.model == 'pynet' else ''}, {mp:.2f} MP mosaic, {a.threads} threads, "
          f"budget {a.max_memory}")
    for method, r in res.items():
        print(f"  {method:6s} {r['s']:7.1f} s  peak {r['peak_mb']:7.0f} MiB (process before: {r['base_mb']:.0f} MiB)"
              + (f"  {r['log'][0]}" if r["log"] else ""))
    print(f"  max |diff| of the 8-bit outputs: {diff}")


if __name__ == "__main__":
    main()
