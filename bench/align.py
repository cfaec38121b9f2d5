"""Alignment speed at DPED size: the whole ``dpedkit align --jobs 1`` command vs a naive
full-resolution aligner vs the I/O floor, all measured in the same run.

    python bench/align.py [--pairs 2] [--repeat 1] [--workdir bench/out/align] [--profile]
                          [--methods io,dpedkit,naive] [--before OTHER_CHECKOUT]

The pairs: a ~20 MP "DSLR" collage and a ~12 MP phone rendering of it through a known
homography (both JPEG) in ``WORKDIR/raw/{phone,dslr}/``. Each method runs as one fresh
process over all the pairs, timed from outside by wall clock (start-up and imports included,
as a user sees them), and reported per pair:

  dpedkit  ``python -m dpedkit align --jobs 1 --force RAW OUT``: pairing, reading, reduced SIFT +
           MAGSAC, grid refinement and residual field, warp, both PNGs, the manifest
  naive    read both JPEGs, SIFT at full resolution, brute-force kNN + ratio test,
           cv2.findHomography(RANSAC), warpPerspective of the full DSLR, both PNGs
  io       the floor: decode both JPEGs, write two phone-size PNGs (cv2.imencode, compression
           level 1, OpenCV's default filter strategy: what dpedkit wrote when the target was set)

Mean corner error (phone px) against the known homography is read from dpedkit's manifest and
from the naive aligner's output. ``--repeat N`` runs the three methods N times, interleaved,
and keeps each method's fastest run (a loaded machine slows runs, never speeds them up).
``--profile`` also runs the dpedkit command once under cProfile and prints the top entries;
``--before /path/to/other/checkout`` times that checkout's dpedkit too (``before``), e.g. main.
"""

from __future__ import annotations

import argparse
import json
import os
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
    """``n`` pairs under ``workdir/raw`` and their true homographies (DSLR px → phone px)."""
    from dpedkit.imageio import write_image
    from dpedkit.testing.synth import collage, random_homography, render_phone

    if all((workdir / "truth" / f"pair{i}.json").exists() for i in range(n)):
        return
    rng = np.random.default_rng(0)
    for cam in ("raw/phone", "raw/dslr", "truth"):
        (workdir / cam).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        truth = workdir / "truth" / f"pair{i}.json"
        dslr = collage(DSLR, rng, offset=i)
        H = random_homography(DSLR, PHONE, rng, coverage=0.8)
        phone = render_phone(dslr, H, PHONE, rng, jpeg_quality=None)
        write_image(workdir / "raw" / "dslr" / f"pair{i}.jpg", dslr, quality=95)
        write_image(workdir / "raw" / "phone" / f"pair{i}.jpg", phone, quality=92)
        truth.write_text(json.dumps(np.asarray(H).tolist()))


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, enc = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    path.write_bytes(enc.tobytes())


def _decode(path: Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def naive_pair(phone: np.ndarray, dslr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution SIFT, brute-force kNN + ratio test, RANSAC: returns H and the warp."""
    sift = cv2.SIFT_create()
    kp1, d1 = sift.detectAndCompute(cv2.cvtColor(phone, cv2.COLOR_RGB2GRAY), None)
    kp2, d2 = sift.detectAndCompute(cv2.cvtColor(dslr, cv2.COLOR_RGB2GRAY), None)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d2, d1, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    src = np.float32([kp2[m.queryIdx].pt for m in good])
    dst = np.float32([kp1[m.trainIdx].pt for m in good])
    H, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    return H, cv2.warpPerspective(dslr, H, phone.shape[1::-1], flags=cv2.INTER_LINEAR)


def worker(method: str, workdir: Path, n: int) -> None:
    """One of the baselines over all pairs, in this process; prints their homographies."""
    out = workdir / method
    out.mkdir(parents=True, exist_ok=True)
    Hs = []
    for i in range(n):
        phone = _decode(workdir / "raw" / "phone" / f"pair{i}.jpg")
        dslr = _decode(workdir / "raw" / "dslr" / f"pair{i}.jpg")
        if method == "naive":
            H, b = naive_pair(phone, dslr)
            Hs.append(H.tolist())
        else:   # io: two images of the phone's size
            b = cv2.resize(dslr, phone.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        _write_png(out / f"pair{i}_phone.png", phone)
        _write_png(out / f"pair{i}_dslr.png", b)
    print(json.dumps(Hs))


def timed(cmd: list[str], cwd: Path, pythonpath: str | None = None) -> tuple[float, float, str]:
    """Wall seconds of the child process, its CPU seconds (user + system, all threads) and its stdout."""
    env = dict(os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # cwd: the workdir, so that ``-m dpedkit`` imports the dpedkit of PYTHONPATH (or the installed
    # one), never a checkout that happens to be the current directory
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return dt, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, r.stdout


def corner_errors(workdir: Path, method: str, n: int, stdout: str) -> list[float]:
    from dpedkit.align.geometry import corner_error
    truth = [np.array(json.loads((workdir / "truth" / f"pair{i}.json").read_text())) for i in range(n)]
    if method == "naive":
        Hs = [np.array(h) for h in json.loads(stdout.strip().splitlines()[-1])]
    else:
        recs = {r["name"]: r for r in map(json.loads, (workdir / method / "manifest.jsonl").read_text().splitlines())}
        Hs = [np.array(recs[f"pair{i}"]["homography"]) if recs[f"pair{i}"]["status"] == "ok" else None
              for i in range(n)]
    return [float("nan") if H is None else corner_error(H, T, PHONE) for H, T in zip(Hs, truth)]


def command(method: str, workdir: Path, n: int) -> list[str]:
    if method in ("dpedkit", "before"):
        return [sys.executable, "-m", "dpedkit", "align", "--jobs", "1", "--force",
                str(workdir / "raw"), str(workdir / method)]
    return [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--pairs", str(n), "--workdir", str(workdir)]


def profile(workdir: Path, top: int = 25) -> None:
    """The dpedkit command under cProfile: the entries with the most cumulative time."""
    import pstats
    prof = workdir / "align.prof"
    cmd = command("dpedkit", workdir, 0)
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), *cmd[1:]], check=True, capture_output=True,
                   cwd=workdir)
    pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(top)
    pstats.Stats(str(prof)).sort_stats("tottime").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/align"))
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--methods", default="io,dpedkit,naive", help="comma-separated subset (ratios need all three)")
    ap.add_argument("--before", metavar="CHECKOUT", help="also time the dpedkit of this checkout (its PYTHONPATH), "
                    "as 'before', in the same run")
    ap.add_argument("--worker", choices=["naive", "io"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    workdir = args.workdir.resolve()
    if args.worker:
        return worker(args.worker, workdir, args.pairs)
    make_pairs(workdir, args.pairs)
    best: dict[str, tuple[float, float, list[float]]] = {}
    methods = args.methods.split(",") + (["before"] if args.before else [])
    for rep in range(args.repeat):
        for method in methods:
            dt, cpu, out = timed(command(method, workdir, args.pairs), workdir, args.before if method == "before" else None)
            err = [] if method == "io" else corner_errors(workdir, method, args.pairs, out)
            print(f"run {rep} {method:8s} {dt / args.pairs:6.2f} s per pair (CPU {cpu / args.pairs:5.2f} s)"
                  + (f"  corner error {np.mean(err):.3f} px" if err else ""), flush=True)
            if method not in best or dt < best[method][0]:
                best[method] = (dt, cpu, err)
    n = args.pairs
    where = timed([sys.executable, "-c", "import dpedkit; print(dpedkit.__file__)"], workdir)[2].strip()
    print(f"\ndpedkit from {Path(where).parent}; phone {PHONE[0]}x{PHONE[1]}, DSLR {DSLR[0]}x{DSLR[1]} "
          f"JPEG, {n} pairs, fastest of {args.repeat}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'':8s} {'s/pair':>7s} {'CPU s':>7s} {'err px':>7s}")
    for m, (dt, cpu, err) in best.items():
        print(f"{m:8s} {dt / n:7.2f} {cpu / n:7.2f} {np.mean(err) if err else float('nan'):7.3f}")
    if {"dpedkit", "naive"} <= best.keys():
        print(f"naive / dpedkit, whole pair:     {best['naive'][0] / best['dpedkit'][0]:.2f}x  (target >= 5)")
    if {"dpedkit", "io"} <= best.keys():
        print(f"dpedkit / I/O floor, whole pair: {best['dpedkit'][0] / best['io'][0]:.2f}x  (target <= 3)")
    for key, name in (("naive", "naive / before, whole pair:      {:.2f}x"), ("io", "before / I/O floor, whole pair:  {:.2f}x")):
        if {"before", key} <= best.keys():
            a, b = best[key][0], best["before"][0]
            print(name.format(a / b if key == "naive" else b / a))
    if args.profile:
        profile(workdir)


if __name__ == "__main__":
    main()
