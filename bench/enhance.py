"""Whole-photo enhancement speed and peak memory: plain PyTorch vs dpedkit, in one run.

    python bench/enhance.py [--megapixels 12] [--device auto] [--model models_orig/iphone_orig]
                            [--max-memory 4G] [--methods "dpedkit fp32,strips fp32"]

Each method runs in a fresh process, so each peak is its own: resident memory (ru_maxrss)
on a CPU, torch.cuda.max_memory_allocated on CUDA.
- plain fp32:   ``Generator.forward`` under inference_mode, NCHW (what a straightforward port does)
- dpedkit fp32: ``generate``: channels_last, in-place normalisation, activations freed early
- dpedkit fast: the same in fp16 on CUDA (``dpedkit enhance``'s default there), bf16 on a CPU
- strips fp32:  exact in strips within ``--max-memory`` (``enhance_strips``, forced even when
                the whole photo would fit), checked against ``dpedkit fp32``'s output when both ran
- onnx fp32:    the exported ONNX model in onnxruntime (CPU), whole photo

CPU seconds (process time) are printed beside wall seconds: on a shared machine they are the
steadier figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

METHODS = ("plain fp32", "dpedkit fp32", "dpedkit fast", "strips fp32", "onnx fp32")


def run_one(method: str, megapixels: float, device: str, model: str | None, max_memory: str = "4G",
            save: str | None = None) -> dict:
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
    torch.manual_seed(0)                      # the same random weights in every method's process
    g = load_generator(model)[0] if model else Generator().eval()
    dtype = torch.float32
    if method == "dpedkit fast":
        dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    g = prepare(g, dev, dtype)
    x = to_tensor(img, dev, dtype)
    extra = {}
    if method == "strips fp32":
        from dpedkit.enhance.planner import parse_size, plan
        from dpedkit.enhance.strips import enhance_strips
        p = plan(h, w, parse_size(max_memory), dev, dtype)
        rows = p.rows if p.mode == "strips" else max(64, h // 4)
        extra = {"rows": rows, "cache": p.cache if p.mode == "strips" else "ram", "budget_gb": parse_size(max_memory) / 2**30}
        del x

        def fn():
            return enhance_strips(g, img, dev, rows, dtype, extra["cache"])
    elif method == "onnx fp32":
        import tempfile

        import onnxruntime as ort

        from dpedkit.export import export_onnx
        path = tempfile.mktemp(suffix=".onnx")
        export_onnx(g.float().to(memory_format=torch.contiguous_format).cpu(), path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        arr = x.float().cpu().contiguous().numpy()
        del x

        def fn():
            return torch.from_numpy(sess.run(None, {"input": arr})[0])
    elif method == "plain fp32":
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
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    if isinstance(out, torch.Tensor):
        out.float().sum().item()  # wait for the result
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    if save:
        from dpedkit.model.inference import to_image
        np.save(save, out if isinstance(out, np.ndarray) else to_image(out))
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"method": method, "device": dev.type, "dtype": str(dtype).replace("torch.", ""),
            "size": f"{w}x{h}", "megapixels": w * h / 1e6, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "peak_gb": peak / 2**30, **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default=None, help="official prefix or checkpoint (default: random weights)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--max-memory", default="4G", help="budget of the strips method (binary units)")
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.megapixels, args.device, args.model, args.max_memory, args.save)))
        return
    import tempfile

    import numpy as np
    results, outputs = {}, {}
    tmp = tempfile.mkdtemp()
    for method in args.methods.split(","):
        outputs[method] = f"{tmp}/{method.replace(' ', '_')}.npy"
        cmd = [sys.executable, __file__, "--one", method, "--megapixels", str(args.megapixels), "--device", args.device,
               "--max-memory", args.max_memory, "--save", outputs[method]]
        if args.model:
            cmd += ["--model", args.model]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{method:13s} failed (exit {p.returncode}; out of memory?) {p.stderr.strip()[-300:]}", flush=True)
            continue
        r = results[method] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{method:13s} {r['device']} {r['dtype']:8s} {r['size']}: {r['seconds']:7.2f} s "
              f"({r['cpu_seconds']:7.1f} CPU s), {r['megapixels'] / r['seconds']:6.3f} MP/s, peak {r['peak_gb']:5.2f} GiB"
              + (f"; strips of {r['rows']} rows, cache in {r['cache']}, budget {r['budget_gb']:.1f} GiB" if "rows" in r else ""),
              flush=True)
    ref = results.get("dpedkit fp32")
    if ref:
        for m in ("strips fp32", "onnx fp32"):
            if m in results:
                diff = np.abs(np.load(outputs[m]).astype(int) - np.load(outputs["dpedkit fp32"])).max()
                r = results[m]
                print(f"{m} / dpedkit fp32: {ref['seconds'] / r['seconds']:.2f}x the speed "
                      f"({ref['cpu_seconds'] / r['cpu_seconds']:.2f}x in CPU time), {r['peak_gb'] / ref['peak_gb']:.2f}x "
                      f"the peak memory; output max difference {diff} (8-bit levels)")
    base = results.get("plain fp32")
    if base:
        for m in ("dpedkit fp32", "dpedkit fast"):
            if m in results:
                r = results[m]
                print(f"{m} / plain fp32: {base['seconds'] / r['seconds']:.2f}x the speed, "
                      f"{r['peak_gb'] / base['peak_gb']:.2f}x the peak memory")


if __name__ == "__main__":
    main()
