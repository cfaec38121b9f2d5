"""dpedkit on real photos with a published ground truth: planar scenes and their homographies.

    python bench/real_photos.py DATA_DIR [--sequences graf,boat,...] [--targets 2,3,4,5,6]
                                [--out bench/out/real_photos] [--jobs 2]

DATA_DIR holds one folder per sequence, in the layout of the Oxford "Affine Covariant
Regions" sequences (Mikolajczyk et al. 2005: bark, bikes, boat, graf, leuven, trees, ubc,
wall; https://www.robots.ox.ac.uk/~vgg/research/affine/, one ``<sequence>.tar.gz`` each,
unpacked) or of HPatches sequences (https://github.com/hpatches/hpatches-dataset)::

    DATA_DIR/graf/img1.ppm … img6.ppm  H1to2p … H1to6p      (Oxford; .ppm, .pgm or .png)
    DATA_DIR/v_wall/1.ppm … 6.ppm      H_1_2 … H_1_6         (HPatches)

A homography file is 3 rows of 3 numbers mapping image-1 pixels to image-N pixels (0-based
pixel centres: that convention fits these files best; the 1-based reading is up to 0.8 px
worse on the zoom sequences). This script fetches nothing.

Each pair (1, N) becomes one shoot: the phone photo is image N, the DSLR photo image 1, so the
published ``H1toN`` is the true DSLR→phone homography (the direction dpedkit estimates) and
the phone frame lies inside the DSLR's on the zoom sequences. Both configurations of
``bench/fidelity.py`` (its ``CONFIGS``: dpedkit's defaults and the DPED-style baseline, one
homography and an exhaustive ±5 px search with NCC > 0.9) run the real CLI (``align`` then
``patches``) on the shoots, and the accepted patches are scored by :mod:`dpedkit.testing.scoring`'s
scorer against a dense truth built from the homography. A homography is the truth only on
its plane: these scenes are planar (or shot from a fixed centre), save for small relief.

Per pair and configuration: the model's corner error (mean over the aligned crop's four
corners of the distance between the model's and the published homography's positions, phone
px: the residual field counts) and its median over the crop, the accepted windows (of the textured ones), and the share of
accepted patches whose mean true misalignment exceeds 1 px; a refused pair shows its reason.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from fidelity import CONFIGS, run_config  # noqa: E402  (bench/fidelity.py: the same configurations)

from dpedkit.align.geometry import aligned_to_dslr, apply_h  # noqa: E402
from dpedkit.testing.scoring import score_against_truth, score_windows, summarize  # noqa: E402
from dpedkit.testing.shoots import Truth  # noqa: E402
from dpedkit.imageio import read_image, write_image  # noqa: E402

SUFFIXES = (".ppm", ".pgm", ".png", ".jpg")


def find_pair(folder: Path, n: int) -> tuple[Path, Path, Path] | None:
    """Image 1, image ``n`` and the homography file 1→n of a sequence folder, or ``None``."""
    for img, hom in (("img{}", f"H1to{n}p"), ("{}", f"H_1_{n}")):
        files = [next((folder / (img.format(k) + s) for s in SUFFIXES if (folder / (img.format(k) + s)).is_file()), None)
                 for k in (1, n)]
        if all(files) and (folder / hom).is_file():
            return files[0], files[1], folder / hom
    return None


def make_shoots(data: Path, sequences: list[str], targets: list[int], out: Path) -> dict[str, np.ndarray]:
    """``out/raw/{phone,dslr}/<seq>-<n>.png`` and each shoot's true DSLR→phone homography."""
    truth = {}
    for cam in ("phone", "dslr"):
        shutil.rmtree(out / "raw" / cam, ignore_errors=True)
        (out / "raw" / cam).mkdir(parents=True)
    for seq in sequences:
        for n in targets:
            found = find_pair(data / seq, n)
            if found is None:
                continue
            one, other, hom = found
            name = f"{seq}-{n}"
            write_image(out / "raw" / "dslr" / f"{name}.png", read_image(one))
            write_image(out / "raw" / "phone" / f"{name}.png", read_image(other))
            truth[name] = np.loadtxt(hom).reshape(3, 3)
    return truth


def dense_truth(H: np.ndarray, phone_size: tuple[int, int], dslr_size: tuple[int, int]) -> Truth:
    """The scorer's per-phone-pixel truth of a planar scene: DSLR position ``H⁻¹(q)``."""
    w, h = phone_size
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    xy = apply_h(np.linalg.inv(H), np.c_[gx.ravel(), gy.ravel()]).reshape(h, w, 2)
    valid = (xy[..., 0] >= 0) & (xy[..., 0] <= dslr_size[0] - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= dslr_size[1] - 1)
    none = np.zeros((h, w), bool)
    return Truth(xy.astype(np.float32), valid, none, none.copy(), {"phone_homography": H.tolist()})


def model_errors(record: dict, H: np.ndarray) -> tuple[float, float]:
    """|H(model(q)) − q| (phone px; the model is the record's homography and residual field,
    :func:`aligned_to_dslr`): its mean over the crop's four corners, and its median over a
    30 × 30 lattice of the crop (the corners show extrapolation, the median the interior)."""
    x, y, w, h = record["crop"]
    c = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
    gx, gy = np.meshgrid(np.linspace(0, w - 1, 30), np.linspace(0, h - 1, 30))
    err = lambda q: np.linalg.norm(apply_h(H, aligned_to_dslr(record, q)) - (q + (x, y)), axis=1)  # noqa: E731
    return float(err(c).mean()), float(np.median(err(np.c_[gx.ravel(), gy.ravel()])))


def score(out: Path, config: str, args: dict, truth_H: dict, jobs: int) -> list[dict]:
    # a refused pair is a result here, not a failure of the run
    args = {stage: [*a, "--allow-failures"] for stage, a in args.items()}
    aligned, dataset = run_config(out, config, args, jobs)
    records = {r["name"]: r for r in map(json.loads, (aligned / "manifest.jsonl").read_text().splitlines())}
    truths = {name: dense_truth(H, tuple(records[name]["phone_size"]), tuple(records[name]["dslr_size"]))
              for name, H in truth_H.items() if records.get(name, {}).get("status") == "ok"}
    patches = score_against_truth(aligned, dataset, truths) if truths else []
    windows = score_windows(aligned, dataset, truths) if truths else []
    rows = []
    for name, H in truth_H.items():
        rec = records.get(name, {})
        row = {"pair": name, "config": config, "status": rec.get("status"), "reason": rec.get("reason")}
        if name in truths:
            s = summarize([p for p in patches if p.name == name], [w for w in windows if w.name == name])
            corner, median = model_errors(rec, H)
            row.update(corner_px=corner, median_px=median, accepted=s["accepted"], textured=s.get("textured"),
                       over_1px=s["over_1px"], p95_px=s["p95_px"], max_px=s["max_px"], rejected=s.get("rejected"))
        rows.append(row)
    return rows


def _f(v, fmt):
    return "–" if v is None or v != v else format(v, fmt)


def table(rows: list[dict], configs: list[str]) -> str:
    head = "| pair (phone = img N, DSLR = img 1) | " + " | ".join(
        f"{c}: corner / median px | {c}: accepted | {c}: > 1 px" for c in configs) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(configs))]
    by = {(r["pair"], r["config"]): r for r in rows}
    for pair in dict.fromkeys(r["pair"] for r in rows):
        cells = []
        for c in configs:
            r = by[(pair, c)]
            if r["status"] != "ok":   # the reason's first clause
                cells += [f"refused: {(r['reason'] or r['status']).split(' (')[0].split('. ')[0]}", "–", "–"]
            else:
                cells += [f"{r['corner_px']:.2f} / {r['median_px']:.2f}", f"{r['accepted']} / {r['textured']}", _f(r["over_1px"], ".1%")]
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def totals(rows: list[dict], configs: list[str]) -> str:
    out = []
    for c in configs:
        ok = [r for r in rows if r["config"] == c and r["status"] == "ok"]
        acc = sum(r["accepted"] for r in ok)
        bad = sum(round(r["over_1px"] * r["accepted"]) for r in ok if r["accepted"])
        med = (lambda k: _f(float(np.median([r[k] for r in ok])) if ok else None, ".2f"))  # noqa: E731
        out.append(f"{c}: {len(ok)} of {sum(r['config'] == c for r in rows)} pairs aligned, median over pairs of the "
                   f"corner error {med('corner_px')} px and of the crop's median error {med('median_px')} px, "
                   f"{acc} patches "
                   f"accepted, {bad} ({_f(bad / acc if acc else None, '.1%')}) > 1 px off")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="folder of sequence folders (see above)")
    ap.add_argument("--sequences", help="comma-separated subset of DATA's folders (default: all)")
    ap.add_argument("--targets", default="2,3,4,5,6", help="the images N paired with image 1")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "real_photos", help="work and result folder")
    ap.add_argument("--jobs", type=int, default=2, help="processes for align and patches")
    a = ap.parse_args(argv)
    seqs = a.sequences.split(",") if a.sequences else sorted(p.name for p in a.data.iterdir() if p.is_dir())
    t0 = time.perf_counter()
    out = a.out.absolute()
    truth_H = make_shoots(a.data, seqs, [int(n) for n in a.targets.split(",")], out)
    if not truth_H:
        sys.exit(f"no sequence with img1 + imgN + H1toNp (or 1 + N + H_1_N) under {a.data}")
    rows = []
    for config, args in CONFIGS.items():
        rows += score(out, config, args, truth_H, a.jobs)
    md = table(rows, list(CONFIGS))
    summary = totals(rows, list(CONFIGS))
    print(md + "\n\n" + summary)
    (out / "real_photos.md").write_text(md + "\n\n" + summary + "\n")
    (out / "real_photos.json").write_text(json.dumps({"configs": CONFIGS, "rows": rows}, indent=1))
    print(f"\n{len(truth_H)} pairs, {time.perf_counter() - t0:.0f} s; {out / 'real_photos.md'}")


if __name__ == "__main__":
    main()
