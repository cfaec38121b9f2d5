"""Alignment speed at DPED size: dpedkit vs a naive full-resolution baseline vs the I/O floor.

    python bench/align.py [--pairs 2] [--workdir bench/out/align]

Per pair, each method runs in a fresh process (so peak memory is per worker):
  dpedkit  read both JPEGs, align (reduced SIFT + MAGSAC + grid refinement), warp, write both PNGs
  naive    read both JPEGs, SIFT at full resolution, brute-force kNN + ratio test,
           cv2.findHomography(RANSAC), warpPerspective of the full DSLR, write both PNGs
  io       read both JPEGs, write both PNGs (the outputs of the dpedkit run)
Prints seconds, mean corner error against the known homography and peak RSS, then ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

PHONE = (4000, 3000)      # ~12 MP
DSLR = (5472, 3648)       # ~20 MP


def make_pairs(workdir: Path, n: int) -> None:
    from dpedkit.imageio import write_image
    from dpedkit.testing.synth import collage, random_homography, render_phone

    rng = np.random.default_rng(0)
    for i in range(n):
        if (workdir / f"{i}.json").exists():
            continue
        dslr = collage(DSLR, rng, offset=i)
        H = random_homography(DSLR, PHONE, rng, coverage=0.8)
        phone = render_phone(dslr, H, PHONE, rng, jpeg_quality=None)
        write_image(workdir / f"{i}_dslr.jpg", dslr, quality=95)
        write_image(workdir / f"{i}_phone.jpg", phone, quality=92)
        (workdir / f"{i}.json").write_text(json.dumps(np.asarray(H).tolist()))


def run_one(method: str, workdir: Path, i: int) -> dict:
    from dpedkit.align.core import align_images
    from dpedkit.align.geometry import corner_error
    from dpedkit.imageio import read_image, write_image

    H_true = np.array(json.loads((workdir / f"{i}.json").read_text()))
    out = workdir / method
    t0 = time.perf_counter()
    phone = read_image(workdir / f"{i}_phone.jpg")
    dslr = read_image(workdir / f"{i}_dslr.jpg")
    t_read = time.perf_counter() - t0
    err = None
    t1 = time.perf_counter()
    if method == "dpedkit":
        res = align_images(phone, dslr)
        a, b, H = res.phone, res.dslr, res.homography
    elif method == "naive":
        sift = cv2.SIFT_create()
        kp1, d1 = sift.detectAndCompute(cv2.cvtColor(phone, cv2.COLOR_RGB2GRAY), None)
        kp2, d2 = sift.detectAndCompute(cv2.cvtColor(dslr, cv2.COLOR_RGB2GRAY), None)
        knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d2, d1, k=2)
        good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
        src = np.float32([kp2[m.queryIdx].pt for m in good])
        dst = np.float32([kp1[m.trainIdx].pt for m in good])
        H, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
        a, b = phone, cv2.warpPerspective(dslr, H, PHONE, flags=cv2.INTER_LINEAR)
    else:  # io: write images of the size dpedkit writes
        a, b, H = phone, cv2.resize(dslr, PHONE, interpolation=cv2.INTER_NEAREST), None
    t_align = time.perf_counter() - t1
    t2 = time.perf_counter()
    write_image(out / f"{i}_phone.png", a)
    write_image(out / f"{i}_dslr.png", b)
    t_write = time.perf_counter() - t2
    if H is not None:
        err = corner_error(H, H_true, PHONE)
    return {"method": method, "pair": i, "total_s": time.perf_counter() - t0, "read_s": t_read,
            "align_s": t_align, "write_s": t_write, "corner_err_px": err,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/align"))
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "PAIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(run_one(args.one[0], args.workdir, int(args.one[1]))))
        return
    make_pairs(args.workdir, args.pairs)
    rows = []
    for i in range(args.pairs):
        for method in ("io", "dpedkit", "naive"):
            r = subprocess.run([sys.executable, __file__, "--one", method, str(i), "--workdir", str(args.workdir)],
                               capture_output=True, text=True, check=True)
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            x = rows[-1]
            err = "" if x["corner_err_px"] is None else f"  corner error {x['corner_err_px']:.3f} px"
            print(f"pair {i} {method:8s} total {x['total_s']:6.2f} s (read {x['read_s']:.2f}, align {x['align_s']:.2f}, "
                  f"write {x['write_s']:.2f})  peak RSS {x['peak_rss_mb']:.0f} MB{err}", flush=True)
    mean = {m: {k: np.mean([r[k] for r in rows if r["method"] == m and r[k] is not None] or [np.nan])
                for k in ("total_s", "align_s", "corner_err_px", "peak_rss_mb")} for m in ("io", "dpedkit", "naive")}
    print(f"\nphone {PHONE[0]}x{PHONE[1]}, DSLR {DSLR[0]}x{DSLR[1]}, {args.pairs} pairs, cv2 threads {cv2.getNumThreads()}")
    print(f"{'':8s} {'total s':>8s} {'align s':>8s} {'err px':>7s} {'RSS MB':>7s}")
    for m, v in mean.items():
        print(f"{m:8s} {v['total_s']:8.2f} {v['align_s']:8.2f} {v['corner_err_px']:7.3f} {v['peak_rss_mb']:7.0f}")
    print(f"naive / dpedkit, alignment work: {mean['naive']['align_s'] / mean['dpedkit']['align_s']:.1f}x")
    print(f"naive / dpedkit, whole pair:     {mean['naive']['total_s'] / mean['dpedkit']['total_s']:.1f}x")
    print(f"dpedkit / I/O floor, whole pair: {mean['dpedkit']['total_s'] / mean['io']['total_s']:.2f}x")


if __name__ == "__main__":
    main()
