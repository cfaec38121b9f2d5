"""Whole-photo enhancement speed and peak memory: plain PyTorch vs dpedkit, in one run.

    python bench/enhance.py [--megapixels 12] [--device auto] [--model models_orig/iphone_orig]

Each method runs in a fresh process, so each peak is its own: resident memory (ru_maxrss)
on a CPU, torch.cuda.max_memory_allocated on CUDA.
- plain fp32:   ``Generator.forward`` under inference_mode, NCHW (what a straightforward port does)
- dpedkit fp32: ``generate``: channels_last, in-place normalisation, activations freed early
- dpedkit fast: the same in fp16 on CUDA (``dpedkit enhance``'s default there), bf16 on a CPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

METHODS = ("plain fp32", "dpedkit fp32", "dpedkit fast")


def run_one(method: str, megapixels: float, device: str, model: str | None) -> dict:
    import resource

    import numpy as np
    import torch

    from dpedkit.model.inference import generate, prepare, to_tensor
    from dpedkit.model.generator import load_generator
    from dpedkit.model.device import resolve_device
    from dpedkit.model.networks import Generator

    dev = resolve_device(device)
    h = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    w = h * 4 // 3
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    g = load_generator(model)[0] if model else Generator().eval()
    dtype = torch.float32
    if method == "dpedkit fast":
        dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    g = prepare(g, dev, dtype)
    x = to_tensor(img, dev, dtype)
    if method == "plain fp32":
        g = g.to(memory_format=torch.contiguous_format)
        x = x.contiguous()

        def fn():
            with torch.inference_mode():
                return g(x)
    else:
        def fn():
            return generate(g, x)
    if dev.type == "cuda":
        fn()  # warm-up (kernel selection)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = fn()
    out.float().sum().item()  # wait for the result
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"method": method, "device": dev.type, "dtype": str(dtype).replace("torch.", ""),
            "size": f"{w}x{h}", "megapixels": w * h / 1e6, "seconds": seconds, "peak_gb": peak / 2**30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default=None, help="official prefix or checkpoint (default: random weights)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.megapixels, args.device, args.model)))
        return
    results = {}
    for method in args.methods.split(","):
        cmd = [sys.executable, __file__, "--one", method, "--megapixels", str(args.megapixels), "--device", args.device]
        if args.model:
            cmd += ["--model", args.model]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{method:13s} failed (exit {p.returncode}; out of memory?) {p.stderr.strip()[-300:]}", flush=True)
            continue
        r = results[method] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{method:13s} {r['device']} {r['dtype']:8s} {r['size']}: {r['seconds']:7.2f} s, "
              f"{r['megapixels'] / r['seconds']:6.3f} MP/s, peak {r['peak_gb']:5.2f} GiB", flush=True)
    base = results.get("plain fp32")
    if base:
        for m in ("dpedkit fp32", "dpedkit fast"):
            if m in results:
                r = results[m]
                print(f"{m} / plain fp32: {base['seconds'] / r['seconds']:.2f}x the speed, "
                      f"{r['peak_gb'] / base['peak_gb']:.2f}x the peak memory")


if __name__ == "__main__":
    main()
