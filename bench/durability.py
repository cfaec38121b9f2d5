"""What durable writes cost: a 2,000-file patch layout written as ``dpedkit patches`` writes
it, with fsync (the default) and without (``DPEDKIT_FSYNC=0``), alternately, in one run.

    python bench/durability.py [--files 2000] [--per-photo 50] [--repeats 3] [--dir /tmp]

Each photo's patches are written to a staging folder (one fsync per file, one per folder at
the end of the photo, as the runner does), then hard-linked into the layout (one folder
fsync per split folder). Each mode runs in a fresh process so the module-level switch is
its own. The medians are printed with their ratio; the disk and the machine's load decide
the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def write_layout(root: str, files: int, per_photo: int) -> float:
    import numpy as np

    from dpedkit.fs import sync_folders
    from dpedkit.imageio import write_image
    from dpedkit.patches.common import link_into_place
    from pathlib import Path

    rng = np.random.default_rng(0)
    patch = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
    root = Path(root)
    t0 = time.perf_counter()
    pairs = files // 2
    for photo in range(0, pairs, per_photo):                 # one item of the runner
        stage = root / "staging" / f"p{photo}"
        for k in range(min(per_photo, pairs - photo)):
            write_image(stage / "phone" / f"{k}.jpg", patch)
            write_image(stage / "dslr" / f"{k}.jpg", patch)
        sync_folders()
    for cam in ("phone", "dslr"):
        (root / "training_data" / cam).mkdir(parents=True)
    for photo in range(0, pairs, per_photo):                 # the assembly
        for k in range(min(per_photo, pairs - photo)):
            for cam in ("phone", "dslr"):
                link_into_place(root / "staging" / f"p{photo}" / cam / f"{k}.jpg",
                                root / "training_data" / cam / f"{photo + k}.jpg")
    sync_folders()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--per-photo", type=int, default=50, help="patch pairs per photo (one runner item)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write (default: the system's temp folder)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(write_layout(a.one, a.files, a.per_photo))
        return
    times = {"fsync (default)": [], "DPEDKIT_FSYNC=0": []}
    for _ in range(a.repeats):
        for mode in times:
            with tempfile.TemporaryDirectory(dir=a.dir) as d:
                env = dict(os.environ, DPEDKIT_FSYNC="0" if "=0" in mode else "1")
                out = subprocess.run([sys.executable, __file__, "--one", d, "--files", str(a.files),
                                      "--per-photo", str(a.per_photo)], env=env, capture_output=True, text=True,
                                     check=True)
                times[mode].append(float(out.stdout.strip().splitlines()[-1]))
    print(f"{a.files} files ({a.files // 2} patch pairs, {a.per_photo} per photo), median of {a.repeats}:")
    base = statistics.median(times["DPEDKIT_FSYNC=0"])
    for mode, ts in times.items():
        m = statistics.median(ts)
        print(f"  {mode:<16} {m:6.2f} s  ({m / base:.2f}× the unsynced write, {1e3 * (m - base) / a.files:+.2f} ms/file)")


if __name__ == "__main__":
    main()
