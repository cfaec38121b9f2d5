"""The patch scorer (testing only): the true misalignment of the patch pairs ``dpedkit
patches`` accepted, against a simulated shoot's dense truth (:mod:`dpedkit.testing.shoots`).

------
:func:`score_against_truth` takes ``dpedkit align``'s output folder, ``dpedkit patches``'s output
and the truth, and measures for every accepted patch the true misalignment of its two
windows in phone px (both windows' pixels mapped to DSLR source coordinates: the DSLR
window through :func:`dpedkit.align.geometry.aligned_to_dslr`, the phone window through
the ground-truth map). :func:`score_windows` scores every grid window with zero offset
(what the aligner alone leaves), rejected ones included.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpedkit.align.geometry import aligned_to_dslr
from dpedkit.layout import MANIFEST, PATCHES_CSV, PATCHES_REPORT, WINDOW_CODES, read_records
from dpedkit.patches.window import patch_affine
from dpedkit.testing.shoots import Truth

# ----------------------------------------------------------------------------- scorer

@dataclass
class WindowScore:
    """The true misalignment of one patch pair (or candidate window).

    ``mean_px``/``max_px``: over the window's valid pixels, the distance between where the
    DSLR window's pixel and the phone window's pixel come from, in phone px (``nan`` when no
    pixel is valid). ``invalid``: share of pixels whose scene point the DSLR does not see
    (occluded, outside); ``moving``/``edge``: share touching the moving object / a depth edge.
    ``status``: ``accepted`` or the rejection reason of ``patches_report.json``."""

    name: str
    x: int
    y: int
    dx: float
    dy: float
    angle: float
    status: str = "accepted"
    split: str | None = None
    index: int | None = None
    ncc: float | None = None
    mean_px: float = float("nan")
    max_px: float = float("nan")
    invalid: float = 0.0
    moving: float = 0.0
    edge: float = 0.0


def _bilinear(img: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact bilinear interpolation of ``img`` ``(h, w, ...)`` at ``(N, 2)`` points (float64;
    cv2.remap quantises the weights to 1/32 px). Returns values, the four neighbours'
    flat indices ``(N, 4)`` and an inside-the-image mask; outside points read the border."""
    h, w = img.shape[:2]
    x, y = pts[:, 0], pts[:, 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    x0 = np.clip(np.floor(x), 0, w - 2).astype(np.int64)
    y0 = np.clip(np.floor(y), 0, h - 2).astype(np.int64)
    fx, fy = np.clip(x - x0, 0, 1), np.clip(y - y0, 0, 1)
    idx = np.stack([y0 * w + x0, y0 * w + x0 + 1, (y0 + 1) * w + x0, (y0 + 1) * w + x0 + 1], 1)
    flat = img.reshape(h * w, -1)
    wts = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    vals = (flat[idx].astype(np.float64) * wts[..., None]).sum(1)
    return vals, idx, inside


def _window_pixels(size: int) -> np.ndarray:
    i, j = np.mgrid[:size, :size]
    return np.stack([j.ravel(), i.ravel()], 1).astype(np.float64)   # (j, i) = (x, y) in the patch


def _truth_at(truth: Truth, phone_src: np.ndarray):
    """GT DSLR position, local Jacobian (DSLR px per phone px) and masks at phone points."""
    xy, idx, inside = _bilinear(truth.dslr_xy, phone_src)
    h, w = truth.valid.shape
    flat = lambda m: m.reshape(-1)[idx]   # noqa: E731
    valid = inside & flat(truth.valid).all(1)
    moving = flat(truth.moving).any(1)
    edge = flat(truth.depth_edge).any(1)
    c = truth.dslr_xy.reshape(h * w, 2)[idx].astype(np.float64)     # (N, 4 neighbours, 2)
    # differences over each point's bilinear cell: the map's Jacobian there
    Jx = 0.5 * ((c[:, 1] - c[:, 0]) + (c[:, 3] - c[:, 2]))
    Jy = 0.5 * ((c[:, 2] - c[:, 0]) + (c[:, 3] - c[:, 1]))
    return xy, np.stack([Jx, Jy], -1), valid, moving, edge     # J[:, :, 0] = d(DSLR)/dx, [:, :, 1] = d/dy


def window_error(record: dict, truth: Truth, x: int, y: int, dx: float, dy: float, angle: float,
                 size: int) -> dict:
    """Per-pixel true misalignment of the patch pair the search describes.

    The DSLR window is ``aligned[y:y+S, x:x+S]``: pixel ``(j, i)`` sits at aligned
    ``(x+j, y+i)``, whose DSLR source position is ``aligned_to_dslr(record, ·)`` (the
    aligner's own model, whatever it is). The phone window's pixel ``(j, i)`` was sampled
    at ``patch_affine(x, y, dx, dy, angle, S) · (j, i, 1)`` in aligned coordinates, i.e. at
    that plus the crop's offset in the phone source, whose true DSLR position the truth
    map gives. Their difference (DSLR px) is converted to phone px by the inverse of the
    map's local Jacobian (median over the window's clean pixels, so a depth edge does not
    spoil it). Returns ``err`` (``S*S`` phone px, row-major), and the ``valid``, ``moving``
    and ``edge`` masks.
    """
    jp = _window_pixels(size)
    dslr_src = aligned_to_dslr(record, jp + (x, y))
    A = patch_affine(x, y, dx, dy, angle, size)
    phone_src = jp @ A[:, :2].T + A[:, 2] + np.asarray(record["crop"][:2], float)
    gt, J, valid, moving, edge = _truth_at(truth, phone_src)
    clean = valid & ~edge & ~moving
    Jm = np.median(J[clean if clean.any() else slice(None)], axis=0)
    err = np.linalg.solve(Jm, (gt - dslr_src).T).T
    return {"err": np.linalg.norm(err, axis=1), "vec": err, "valid": valid, "moving": moving, "edge": edge,
            "phone_src": phone_src, "dslr_src": dslr_src}


def _score(name, rec, truth, x, y, dx, dy, angle, size, **kw) -> WindowScore:
    e = window_error(rec, truth, x, y, dx, dy, angle, size)
    v = e["valid"]
    s = WindowScore(name, x, y, dx, dy, angle, invalid=float(1 - v.mean()), moving=float(e["moving"].mean()),
                    edge=float(e["edge"].mean()), **kw)
    if v.any():
        s.mean_px, s.max_px = float(e["err"][v].mean()), float(e["err"][v].max())
    return s


def true_offsets(record: dict, truth: Truth, x: int, y: int, size: int, iters: int = 4) -> tuple[float, float, float]:
    """The ``(dx, dy, angle)`` a perfect search would report for the DSLR window at ``(x, y)``:
    the rigid motion of the phone window that best fits the truth (least squares over the
    window's valid pixels, Gauss–Newton from zero)."""
    jp = _window_pixels(size)
    h = (size - 1) / 2
    dx = dy = angle = 0.0
    for _ in range(iters):
        e = window_error(record, truth, x, y, dx, dy, angle, size)
        v = e["valid"] if e["valid"].any() else slice(None)
        target = e["phone_src"] - e["vec"] - np.asarray(record["crop"][:2], float)   # where each pixel should sample
        src, dst = jp[v] - h, target[v]
        ms, md = src.mean(0), dst.mean(0)
        M = (src - ms).T @ (dst - md)
        theta = np.arctan2(M[0, 1] - M[1, 0], M[0, 0] + M[1, 1])
        R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        angle = float(np.rad2deg(theta))
        dx, dy = (md - R @ ms - (x + h, y + h)).tolist()
    return float(dx), float(dy), angle


def patches_root(dataset: str | Path) -> Path:
    """The folder holding ``patches.csv``: ``dataset`` itself or its one camera subfolder
    (``dpedkit patches aligned/ dataset/`` writes ``dataset/<phone>/patches.csv``)."""
    dataset = Path(dataset)
    if (dataset / PATCHES_CSV).is_file():
        return dataset
    found = sorted(p.parent for p in dataset.glob(f"*/{PATCHES_CSV}"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one patches.csv in {dataset} or one of its subfolders, found {len(found)}")
    return found[0]


def _load_truth(truth, name: str) -> Truth:
    if isinstance(truth, (str, Path)):
        return Truth.load(Path(truth) / f"{name}.npz")
    return truth[name]


def _inputs(aligned, dataset):
    records = read_records(Path(aligned) / MANIFEST)
    root = patches_root(dataset)
    report = json.loads((root / PATCHES_REPORT).read_text())
    with open(root / PATCHES_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    return records, root, report, rows


def score_against_truth(aligned: str | Path, dataset: str | Path, truth, names=None) -> list[WindowScore]:
    """Score every accepted patch of ``dataset`` (``patches.csv``) against ``truth`` (a folder
    of ``<name>.npz`` or a mapping name → :class:`Truth`); pairs without a truth (or not in
    ``names``) are skipped."""
    records, root, report, rows = _inputs(aligned, dataset)
    size = int(report["options"]["size"])
    out, cache = [], {}
    for r in rows:
        name = r["name"]
        if names is not None and name not in names:
            continue
        if name not in cache:
            try:
                cache[name] = _load_truth(truth, name)
            except (KeyError, FileNotFoundError):
                cache[name] = None
        if cache[name] is None:
            continue
        out.append(_score(name, records[name], cache[name], int(r["x"]), int(r["y"]), float(r["dx"]), float(r["dy"]),
                          float(r["angle"]), size, split=r["split"], index=int(r["index"]), ncc=float(r["ncc"])))
    return out


def score_windows(aligned: str | Path, dataset: str | Path, truth, names=None) -> list[WindowScore]:
    """Every grid window of every scored photo, with its status from ``patches_report.json``
    and the error of the window taken **without** the search's offset (what the aligner
    alone leaves): tells whether a rejection lost a good window or saved a bad one."""
    reason = {c: s for s, c in WINDOW_CODES.items()}
    reason["a"] = "accepted"
    records, root, report, _ = _inputs(aligned, dataset)
    out = []
    for ph in report["photos"]:
        name = ph["name"]
        if ph.get("status") != "ok" or "grid" not in ph or (names is not None and name not in names):
            continue
        try:
            tr = _load_truth(truth, name)
        except (KeyError, FileNotFoundError):
            continue
        g, codes = ph["grid"], ph.get("window_map", "")
        k = 0
        for row in range(g["rows"]):
            for col in range(g["cols"]):
                x, y = g["x"] + col * g["size"], g["y"] + row * g["size"]
                code = codes[k] if k < len(codes) else "?"
                out.append(_score(name, records[name], tr, x, y, 0.0, 0.0, 0.0, g["size"],
                                  status=reason.get(code, code)))
                k += 1
    return out


def summarize(patches: list[WindowScore], windows: list[WindowScore] | None = None) -> dict:
    """Figures of one case: windows, accepted, yield (accepted / textured windows), the
    per-patch mean error's median / p95 / max (phone px), shares over 1 and 2 px, the
    windows touched by the moving object (all / accepted), rejections by reason and how
    many rejected windows the aligner alone had already matched to < 0.5 px."""
    e = np.array([p.mean_px for p in patches if np.isfinite(p.mean_px)])
    s = {"accepted": len(patches),
         "median_px": float(np.median(e)) if e.size else float("nan"),
         "p95_px": float(np.percentile(e, 95)) if e.size else float("nan"),
         "max_px": float(e.max()) if e.size else float("nan"),
         "over_1px": float((e > 1).mean()) if e.size else float("nan"),
         "over_2px": float((e > 2).mean()) if e.size else float("nan"),
         "worst_pixel_px": float(np.nanmax([p.max_px for p in patches])) if e.size else float("nan"),
         "invalid_share": float(np.mean([p.invalid for p in patches])) if patches else float("nan"),
         "moving_accepted": sum(p.moving > 0 for p in patches),
         "rotated_share": float(np.mean([p.angle != 0 for p in patches])) if patches else float("nan")}
    if windows is not None:
        textured = [w for w in windows if w.status != "flat"]
        rejected = [w for w in windows if w.status != "accepted"]
        reasons: dict[str, int] = {}
        for w in rejected:
            reasons[w.status] = reasons.get(w.status, 0) + 1
        s.update(windows=len(windows), textured=len(textured), rejected=reasons,
                 # rejected windows that were right without any search offset (aligner error < 0.5 px, all pixels
                 # valid, no depth edge or moving object): yield lost to the search's gate, not to the scene
                 rejected_but_aligned=sum(w.mean_px < 0.5 and w.invalid == 0 and w.edge == 0 and w.moving == 0
                                          for w in rejected),
                 yield_=len(patches) / len(textured) if textured else float("nan"),
                 moving_windows=sum(w.moving > 0 for w in windows),
                 aligner_p95_px=float(np.nanpercentile([w.mean_px for w in windows], 95)) if windows else float("nan"))
    return s

