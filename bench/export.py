"""Exported models beside PyTorch: TFLite fp32 / fp16 / int8 (LiteRT) and ONNX (onnxruntime).

    python bench/export.py [--model models_orig/iphone_orig] [--size 100x100] [--threads 1]
                           [--calibration DIR] [--runs 20]

For the model (default: a fresh generator with the original's random initialisation, seed 0;
``--model``: a run folder, a .pt checkpoint or an official DPED TensorFlow checkpoint), on a
real photo (scikit-image's astronaut, scaled to cover ``--size`` and centre-cropped), each
exported file is run on the CPU and compared with PyTorch's fp32 output on the same input:

- file size (MB);
- max abs: the largest absolute difference from PyTorch's output (RGB in [0, 1]);
- PSNR (dB, data range 1) of the output against PyTorch's;
- latency: the median of ``--runs`` invocations after one warm-up, ``--threads`` threads
  (LiteRT's XNNPACK CPU delegate; onnxruntime's CPU provider; torch.set_num_threads for
  PyTorch itself, ``generate`` fp32).

int8 is calibrated on ``--calibration`` (default: scikit-image's other five photos, never the
one scored), as ``dpedkit export --quantize int8 --calibration DIR`` does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_ms(fn, runs: int) -> float:
    fn()                                    # warm-up (allocation, delegate set-up)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="run folder, .pt or official checkpoint (default: random init)")
    ap.add_argument("--size", default="100x100", help="export and test size HxW (default 100x100)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of every runtime (default 1)")
    ap.add_argument("--calibration", default=None, help="int8 calibration folder (default: the other sample photos)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per runtime (default 20)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from dpedkit.export import parse_size
    from dpedkit.export.onnx import export_onnx
    from dpedkit.export.tflite import calibration_images, export_tflite, nhwc
    from dpedkit.imageio import write_image
    from dpedkit.model.generator import load_generator
    from dpedkit.model.inference import generate
    from dpedkit.model.networks import Generator
    from dpedkit.testing.synth import sample_images

    h, w = parse_size(args.size)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g, what = load_generator(args.model) if args.model else (Generator().eval(), "random-init generator (seed 0)")
    photos = sample_images()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_image(tmp / "photo" / "astronaut.png", photos["astronaut"])
        x = torch.from_numpy(calibration_images(tmp / "photo", (h, w))[0])
        cal_dir = Path(args.calibration) if args.calibration else tmp / "cal"
        if not args.calibration:
            for name, img in photos.items():
                if name != "astronaut":
                    write_image(cal_dir / f"{name}.png", img)
        cal = calibration_images(cal_dir, (h, w))
        with torch.no_grad():
            ref = generate(g.float().eval(), x).numpy()
            t_torch = median_ms(lambda: generate(g, x), args.runs)
        rows = [("PyTorch fp32", 4 * sum(p.numel() for p in g.parameters()) / 1e6, 0.0, float("inf"), t_torch)]

        def score(name, path, out, run):
            err = out - ref
            rows.append((name, path.stat().st_size / 1e6, float(np.abs(err).max()),
                         float(10 * np.log10(1 / np.mean(err.astype(np.float64) ** 2))), median_ms(run, args.runs)))

        from ai_edge_litert.interpreter import Interpreter
        for q in ("none", "fp16", "int8"):
            t = time.perf_counter()
            path = export_tflite(g, tmp / f"m_{q}.tflite", (1, 3, h, w), q, cal if q == "int8" else None)
            conv = time.perf_counter() - t
            it = Interpreter(model_path=str(path), num_threads=args.threads)
            it.allocate_tensors()
            i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
            it.set_tensor(i, nhwc(x))
            it.invoke()
            out = it.get_tensor(o).transpose(0, 3, 1, 2)
            score(f"TFLite {'fp32' if q == 'none' else q} ({conv:.0f} s to export)", path, out, it.invoke)
        try:
            import onnxruntime as ort
            path = export_onnx(g, tmp / "m.onnx")
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = args.threads
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            feed = {"input": x.contiguous().numpy()}
            score("ONNX fp32 (onnxruntime)", path, sess.run(None, feed)[0], lambda: sess.run(None, feed))
        except ImportError:
            print("(onnxruntime not installed: no ONNX row)")

    print(f"{what}, {h}x{w} crop of astronaut, {args.threads} thread(s), int8 calibrated on {len(cal)} images "
          f"({cal_dir if args.calibration else 'the other sample photos'}), CPU: {os.cpu_count()} cores")
    print(f"{'':38s} {'size MB':>8s} {'max abs':>9s} {'PSNR dB':>8s} {'latency ms':>11s}")
    for name, mb, mx, ps, ms in rows:
        print(f"{name:38s} {mb:8.2f} {mx:9.2e} {ps:8.1f} {ms:11.1f}")


if __name__ == "__main__":
    main()
