"""``dpedkit report``: one self-contained HTML page about an aligned folder, its dataset and a run.

Every image is embedded (JPEG data URIs) and every chart is inline SVG, so the page opens
offline from anywhere and can be mailed as one file. Numbers come straight from
``manifest.jsonl``, ``patches_report.json`` and ``metrics.csv``.
"""

from __future__ import annotations

import base64
import csv
import json
from html import escape
from pathlib import Path

import cv2
import numpy as np

from dpedkit.imageops import checkerboard
from dpedkit.layout import MANIFEST, aligned_paths as output_paths, read_records, resolve_cameras
from dpedkit.fs import write_text_atomic
from dpedkit.imageio import ImageReadError, encode_image, read_image
from dpedkit.report import svg

CSS = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:first-child,th:first-child,td.reason{text-align:left}tr.failed td,tr.unpaired td{background:#fde8e8}
.card{display:inline-block;vertical-align:top;margin:0 12px 18px 0}.card img,.card svg{display:block;margin-top:3px}
.pair{margin:14px 0;border-top:1px solid #ddd;padding-top:8px}.pair h3{margin:4px 0;font-size:15px}
.note{color:#666;font-size:13px}.bad{color:#b00}"""


def data_uri(img: np.ndarray, width: int, quality: int = 82) -> str:
    """A JPEG data URI of ``img`` (RGB uint8) resized to ``width`` pixels wide."""
    h, w = img.shape[:2]
    if w > width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return "data:image/jpeg;base64," + base64.b64encode(encode_image(img, ".jpg", quality)).decode()


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|luminance difference| after matching each image's mean and contrast: edges that do
    not cancel show misalignment, whatever the colour rendition of the two cameras."""
    la, lb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (a, b))
    la, lb = ((x - x.mean()) / (x.std() + 1e-6) for x in (la, lb))
    d = np.clip(np.abs(la - lb) * 64, 0, 255).astype(np.uint8)
    return cv2.cvtColor(d, cv2.COLOR_GRAY2RGB)


def _patches_report(dataset: Path | None) -> dict:
    if dataset is None:
        return {}
    for p in (dataset / "patches_report.json", *sorted(dataset.glob("*/patches_report.json"))):
        if p.is_file():
            return json.loads(p.read_text())
    raise FileNotFoundError(f"no patches_report.json in {dataset} or its sub-folders (run 'dpedkit patches')")


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.csv in {run} (a 'dpedkit train' run folder)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def pairs_table(records: dict[str, dict], photos: dict[str, dict]) -> str:
    head = ("pair", "status", "matches", "inliers", "RMSE (px)", "crop (px)", "split", "windows", "accepted",
            "median NCC", "reason")
    rows = []
    for name, r in sorted(records.items()):
        p = photos.get(name, {})
        crop = r.get("crop")
        cells = [name, r.get("status", ""), _num(r.get("matches"), "d"), _num(r.get("inliers"), "d"),
                 _num(r.get("reprojection_rmse"), ".3f"), f"{crop[2]}×{crop[3]}" if crop else "",
                 p.get("split") or "", _num(p.get("windows"), "d"), _num(p.get("accepted"), "d"),
                 _num(p.get("median_ncc"), ".3f"), r.get("reason") or p.get("reason") or ""]
        tds = "".join(f'<td class="reason">{escape(str(c))}</td>' if i == len(cells) - 1 else f"<td>{escape(str(c))}</td>"
                      for i, c in enumerate(cells))
        rows.append(f'<tr class="{escape(r.get("status", ""))}" data-name="{escape(name)}">{tds}</tr>')
    return ('<table id="pairs"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows)
            + "</table>")


def pair_section(aligned: Path, phone_dir: str, dslr_dir: str, rec: dict, photo: dict, thumb: int) -> str:
    name = rec["name"]
    title = f'<h3 id="pair-{escape(name)}">{escape(name)} — {escape(rec.get("status", "?"))}</h3>'
    if rec.get("status") != "ok":
        return f'<div class="pair">{title}<p class="bad">{escape(rec.get("reason") or "no reason recorded")}</p></div>'
    pp, dp = output_paths(aligned, phone_dir, dslr_dir, name)
    try:
        phone, dslr = read_image(pp), read_image(dp)
    except ImageReadError as e:
        return f'<div class="pair">{title}<p class="bad">aligned images unreadable: {escape(str(e))}</p></div>'
    cards = [("phone", data_uri(phone, thumb)), ("DSLR warped to the phone frame", data_uri(dslr, thumb)),
             ("checkerboard: seams show misalignment", data_uri(checkerboard(phone, dslr, max_side=2 * thumb), thumb)),
             ("normalised difference: edges that do not cancel", data_uri(difference(phone, dslr), thumb))]
    html = "".join(f'<div class="card">{escape(c)}<img src="{u}" alt="{escape(c)}" width="{thumb}"></div>'
                   for c, u in cards)
    if photo.get("grid") and photo.get("window_map"):
        h, w = phone.shape[:2]
        html += ('<div class="card">patch windows: accepted / low correlation / flat'
                 + svg.window_map(cards[0][1], w, h, photo["grid"], photo["window_map"], thumb) + "</div>")
    return f'<div class="pair">{title}{html}</div>'


def run_section(run: Path) -> str:
    rows = _metrics(run)
    it = [float(r["iteration"]) for r in rows]

    def col(k):
        return [float(r[k]) if r.get(k) not in (None, "") else None for r in rows]
    charts = [svg.line_chart(it, {"test PSNR (dB)": col("test_psnr")}, "test PSNR (dB)"),
              svg.line_chart(it, {"SSIM": col("test_ssim"), "MS-SSIM": col("test_ms_ssim")}, "test SSIM / MS-SSIM"),
              svg.line_chart(it, {"generator": col("loss_generator")}, "generator loss"),
              svg.line_chart(it, {"content": col("loss_content"), "colour": col("loss_color"),
                                  "texture": col("loss_texture")}, "loss terms"),
              svg.line_chart(it, {"D accuracy": col("disc_accuracy")}, "discriminator accuracy")]
    html = "".join(f'<div class="card">{c}</div>' for c in charts if c)
    samples = sorted((run / "samples").glob("*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if samples:
        img = read_image(samples[-1])
        html += (f'<h3>samples at iteration {escape(samples[-1].stem)}: phone | enhanced | DSLR</h3>'
                 f'<img src="{data_uri(img, min(img.shape[1], 900), 90)}" alt="latest samples">')
    last = rows[-1] if rows else {}
    summary = (f'<p>{len(rows)} evaluations; last at iteration {escape(last.get("iteration", "?"))}: '
               f'test PSNR {escape(last.get("test_psnr", "?"))} dB, SSIM {escape(last.get("test_ssim", "?"))}</p>')
    return f"<h2>Training run {escape(str(run))}</h2>{summary}{html}"


def build_report(aligned: str | Path, dataset: str | Path | None = None, run: str | Path | None = None,
                 out: str | Path = "report.html", thumb: int = 240, log=print) -> Path:
    """Write the report page to ``out`` and return its path."""
    aligned, out = Path(aligned), Path(out)
    records = read_records(aligned / MANIFEST)
    if not records:
        raise FileNotFoundError(f"no {MANIFEST} in {aligned}: run 'dpedkit align' first")
    phone_dir, dslr_dir = _cameras_from(records) or resolve_cameras(aligned, None, None, ignore=("previews",))
    preport = _patches_report(Path(dataset) if dataset else None)
    photos = {p["name"]: p for p in preport.get("photos", [])}
    threshold = preport.get("options", {}).get("threshold")
    statuses = {}
    for r in records.values():
        statuses[r.get("status")] = statuses.get(r.get("status"), 0) + 1
    parts = [f"<h1>dpedkit report</h1><p>{escape(str(aligned))}: {len(records)} pairs — "
             + ", ".join(f"{n} {escape(str(s))}" for s, n in sorted(statuses.items(), key=lambda x: str(x[0])))
             + "</p>"]
    if preport:
        counts = preport.get("patches", {})
        scores = [v for p in photos.values() for v in p.get("window_ncc") or [] if v is not None]
        parts.append(f'<h2>Patches</h2><p id="patch-counts">{counts.get("train", 0)} train and '
                     f'{counts.get("test", 0)} test patches from {len(photos)} photos; threshold {threshold}</p>')
        chart = svg.histogram(scores, "normalised cross-correlation of every scored window", bins=60,
                              lim=(min(0.0, min(scores, default=0)), 1.0), marker=threshold,
                              marker_label=f"threshold {threshold}")
        parts.append(chart or '<p class="note">no per-window scores in patches_report.json (re-run patches)</p>')
    parts.append("<h2>Pairs</h2>" + pairs_table(records, photos))
    parts.append("<h2>Alignment check</h2>")
    for i, (name, rec) in enumerate(sorted(records.items())):
        parts.append(pair_section(aligned, phone_dir, dslr_dir, rec, photos.get(name, {}), thumb))
        log(f"report: pair {i + 1}/{len(records)}") if (i + 1) % 50 == 0 else None
    if run:
        parts.append(run_section(Path(run)))
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>dpedkit report</title>'
            f"<style>{CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    write_text_atomic(out, page)
    return out


def _cameras_from(records: dict[str, dict]) -> tuple[str, str] | None:
    """Camera folder names from the manifest's source paths (``<camera>/<file>``, relative to raw/)."""
    for r in records.values():
        if r.get("status") == "ok" and r.get("phone") and r.get("dslr"):
            return Path(r["phone"]).parts[0], Path(r["dslr"]).parts[0]
    return None
