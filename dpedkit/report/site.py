"""``dpedkit report … -o report/``: a report folder that scales to a whole dataset.

``report/index.html`` is the summary — counts, charts, evaluate's scores, enhanced photos and
the first page of the pairs table — and stays small whatever the dataset's size: the table is
paginated (``report/pages/<n>.html``, :data:`PAGE_ROWS` rows each), and every pair has its own
page (``report/pairs/<id>.html``) with its images as files in ``report/img/`` (JPEG, loaded
lazily, click to zoom). Everything is relative links and inline CSS/JS/SVG: the folder opens
offline from anywhere, no CDN. Images already written for an unchanged input are kept
(a re-run only adds what changed).
"""

from __future__ import annotations

import csv
import json
import math
import re
from html import escape
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dpedkit.errors import OptionError
from dpedkit.fs import write_bytes_atomic, write_text_atomic
from dpedkit.imageio import ImageReadError, encode_image, list_images, read_image
from dpedkit.imageops import checkerboard
from dpedkit.layout import MANIFEST, WINDOW_CODES, LayoutError, read_records, resolve_cameras
from dpedkit.layout import aligned_paths as output_paths
from dpedkit.raw import Mosaic, RawMosaicError, decode_mosaic, quick_rgb
from dpedkit.report import charts

PAGE_ROWS = 250
ZOOM_SIDE = 1600        # px, longer side of the click-to-zoom images

CSS = """body{font-family:sans-serif;margin:20px;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}tr.failed td,tr.unpaired td{background:#fde8e8}
.card{display:inline-block;vertical-align:top;margin:0 12px 16px 0;font-size:13px}.card img,.card svg{display:block;margin-top:3px}
.note{color:#666;font-size:13px}.bad{color:#b00}nav a{margin-right:8px}img.zoom{cursor:zoom-in}
#zoom{display:none;position:fixed;inset:0;background:rgba(0,0,0,.88);z-index:9;cursor:zoom-out;align-items:center;justify-content:center}
#zoom img{max-width:98vw;max-height:98vh}.swatch{display:inline-block;width:11px;height:11px;margin:0 4px 0 10px;vertical-align:-1px;box-sizing:border-box}"""
ZOOM_JS = """<div id="zoom" onclick="this.style.display='none'"><img alt="zoomed"></div><script>
document.addEventListener('click',function(e){var t=e.target;if(t.classList&&t.classList.contains('zoom')){e.preventDefault();
var z=document.getElementById('zoom');z.firstChild.src=t.dataset.full||t.src;z.style.display='flex';}});
document.addEventListener('keydown',function(e){if(e.key==='Escape')document.getElementById('zoom').style.display='none';});
</script>"""


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
            f'{body}{ZOOM_JS}</body></html>\n')


def pair_id(index: int, name: str) -> str:
    """A file-safe, unique id of a pair: its index in name order and its name's safe characters."""
    return f"{index:05d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


def _num(v, spec: str) -> str:
    """A table number: ``spec`` like ``.3f`` or ``d``; blank for missing or non-finite; never ``-0``."""
    if v is None or v == "":
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return escape(str(v))
    if not math.isfinite(f):
        return ""
    s = str(int(round(f))) if spec == "d" else format(f, spec)
    return s.lstrip("-") if float(s) == 0 else s


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|luminance difference| after matching each image's mean and contrast: edges that do
    not cancel show misalignment, whatever the colour rendition of the two cameras."""
    la, lb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (a, b))
    la, lb = ((x - x.mean()) / (x.std() + 1e-6) for x in (la, lb))
    d = np.clip(np.abs(la - lb) * 64, 0, 255).astype(np.uint8)
    return cv2.cvtColor(d, cv2.COLOR_GRAY2RGB)


def read_aligned_phone(path: Path, rec: dict) -> np.ndarray:
    """The aligned phone image as 8-bit RGB. A RAW phone's aligned image is its 16-bit Bayer
    mosaic (the record has ``cfa_pattern`` and levels): it is rendered with
    :func:`dpedkit.raw.quick_rgb` (same pixel grid, so it lines up with the warped DSLR)
    rather than shown as a grey mosaic."""
    if "cfa_pattern" not in rec:
        return read_image(path)
    try:
        return quick_rgb(Mosaic.from_record(decode_mosaic(path), rec))
    except (KeyError, RawMosaicError) as e:       # not the mosaic a record with a cfa_pattern names
        raise ImageReadError(f"{path.name}: {e}") from None


def _save_jpeg(img: np.ndarray, path: Path, side: int, quality: int = 85) -> None:
    h, w = img.shape[:2]
    if max(h, w) > side:
        s = side / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    write_bytes_atomic(path, encode_image(img, ".jpg", quality))


def _fresh(path: Path, *sources: Path) -> bool:
    """``path`` exists and is newer than every source (then it is not rewritten)."""
    try:
        t = path.stat().st_mtime
        return all(t >= s.stat().st_mtime for s in sources if s.exists())
    except OSError:
        return False


def _img(rel: str, full: str, alt: str, width: int) -> str:
    return (f'<img class="zoom" src="{escape(rel)}" data-full="{escape(full)}" alt="{escape(alt)}" width="{width}" '
            f'loading="lazy">')


def _window_names() -> dict[str, str]:
    """Window code character → reason (the patches stage's table in :mod:`dpedkit.layout`)."""
    return {c: reason for reason, c in WINDOW_CODES.items()}


def _cameras_from(records: dict[str, dict]) -> tuple[str, str] | None:
    """Camera folder names from the manifest's source paths (``<camera>/<file>``, relative to raw/)."""
    for r in records.values():
        if r.get("status") == "ok" and r.get("phone") and r.get("dslr"):
            return Path(r["phone"]).parts[0], Path(r["dslr"]).parts[0]
    return None


def _patches_report(dataset: Path | None) -> dict:
    """``patches_report.json`` of ``dataset`` or its first sub-folder that has one; {} without a dataset."""
    if dataset is None:
        return {}
    for p in (dataset / "patches_report.json", *sorted(dataset.glob("*/patches_report.json"))):
        if p.is_file():
            return json.loads(p.read_text())
    raise LayoutError(f"no patches_report.json in {dataset} or its sub-folders (run 'dpedkit patches')")


def _metrics(run: Path | None) -> list[dict]:
    if run is None or not (run / "metrics.csv").is_file():
        return []
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _evaluations(run: Path | None, extra: list[Path]) -> list[dict]:
    """The run folder's ``evaluate_*.json`` and the ``extra`` files, each file once (a file
    named twice, or a copy with the same scores, is shown once)."""
    files = sorted(run.glob("evaluate_*.json")) if run else []
    out, seen = [], set()
    for p in list(files) + list(extra):
        try:
            if Path(p).resolve() in seen:
                continue
            seen.add(Path(p).resolve())
            d = json.loads(Path(p).read_text())
            if isinstance(d, dict) and "enhanced" in d and "identity" in d:
                keys = ("model", "patches", "identity", "enhanced")
                if not any(all(e.get(k) == d.get(k) for k in keys) for e in out):   # a copy of one shown
                    d["_file"] = str(p)
                    out.append(d)
        except (OSError, ValueError):
            continue
    return out


def run_charts(rows: list[dict], evaluations: list[dict]) -> str:
    if not rows:
        return ""
    it = [float(r["iteration"]) for r in rows]

    def col(k):
        vals = []
        for r in rows:
            try:
                vals.append(float(r[k]) if r.get(k) not in (None, "") else None)
            except ValueError:
                vals.append(None)
        return vals
    # the phone patches as they are, scored by the first evaluate JSON: what the model must beat
    base = evaluations[0] if evaluations else None
    where = f"identity, {Path(base['_file']).name}" if base else ""

    def identity(metric, name=""):
        if base is None or base["identity"].get(metric) is None:
            return {}
        return {f"phone photos as they are{' ' + name if name else ''} ({where})": float(base["identity"][metric])}
    ssim_refs = {**identity("ssim", "SSIM"), **identity("ms_ssim", "MS-SSIM")}
    ssim_colors = dict(zip(ssim_refs, (charts.series_color(0), charts.series_color(1))))
    terms = {}
    for key, name in (("loss_content", "content (VGG)"), ("loss_color", "colour"), ("loss_texture", "texture"),
                      ("loss_tv", "total variation")):
        v = col(key)
        if any(x not in (None, 0.0) and math.isfinite(x) for x in v):     # only the terms in use
            terms[name] = v
    out = [charts.line_chart(it, {"test PSNR": col("test_psnr")}, "test PSNR (dB)", refs=identity("psnr"), log=False),
           charts.line_chart(it, {"SSIM": col("test_ssim"), "MS-SSIM": col("test_ms_ssim")}, "test SSIM / MS-SSIM",
                             refs=ssim_refs, ref_colors=ssim_colors, log=False),
           charts.line_chart(it, {"generator": col("loss_generator")}, "generator loss", log=False),
           # the terms span orders of magnitude and the texture term is negative: a panel and an
           # axis each keeps every one legible
           charts.small_multiples(it, terms, "loss terms (unweighted), each on its own axis"),
           charts.line_chart(it, {"D accuracy": col("disc_accuracy")}, "discriminator accuracy", log=False)]
    return "".join(f'<div class="card">{c}</div>' for c in out if c)


def latest_samples(run: Path, out: Path, thumb: int) -> str:
    """The run's latest sample image (``samples/<iteration>.png``: phone | enhanced | DSLR) as
    a card; '' when the run has none."""
    samples = sorted((run / "samples").glob("*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if not samples:
        return ""
    src = samples[-1]
    small, big = out / "img" / "samples.jpg", out / "img" / "samples_zoom.jpg"
    if not (_fresh(small, src) and _fresh(big, src)):
        img = read_image(src)
        _save_jpeg(img, small, 2 * thumb)
        _save_jpeg(img, big, 2 * ZOOM_SIDE)
    with Image.open(small) as im:           # shown at its own size: a column of patches is tall
        width = im.size[0]
    return (f'<h3>samples at iteration {escape(src.stem)}: phone | enhanced | DSLR</h3>'
            + _img("img/" + small.name, "img/" + big.name, "latest samples", width))


def evaluation_table(evaluations: list[dict]) -> str:
    if not evaluations:
        return ""
    rows = []
    for e in evaluations:
        for which in ("identity", "enhanced"):
            s = e[which]
            rows.append(f"<tr><td>{escape(Path(e['_file']).name)}</td><td>{which}</td>"
                        f"<td class=num>{_num(s.get('psnr'), '.2f')}</td><td class=num>{_num(s.get('ssim'), '.4f')}</td>"
                        f"<td class=num>{_num(s.get('ms_ssim'), '.4f')}</td>"
                        f"<td class=num>{_num(e.get('patches'), 'd')}</td></tr>")
    return ('<h2>Evaluation (dpedkit evaluate)</h2><table id="evaluate"><tr><th>file</th><th>model</th>'
            '<th class=num>PSNR (dB)</th><th class=num>SSIM</th><th class=num>MS-SSIM</th><th class=num>test patches</th>'
            '</tr>' + "".join(rows) + "</table>")


PAIR_COLUMNS = ("pair", "status", "matches", "inliers", "RMSE (px)", "crop (px)", "split", "windows", "accepted",
                "median NCC", "reason")
NUMERIC = {"matches", "inliers", "RMSE (px)", "crop (px)", "windows", "accepted", "median NCC"}   # right-aligned


def table_rows(items: list[tuple[str, str, dict, dict]]) -> str:
    """The pairs table (columns :data:`PAIR_COLUMNS`); pair links are ``PAIRS/<id>.html`` for
    the caller to make relative. Numbers right-aligned, text left-aligned."""
    rows = []
    for pid, name, r, p in items:
        crop = r.get("crop")
        cells = [f'<a href="PAIRS/{pid}.html">{escape(name)}</a>', escape(str(r.get("status", ""))),
                 _num(r.get("matches"), "d"), _num(r.get("inliers"), "d"), _num(r.get("reprojection_rmse"), ".3f"),
                 f"{crop[2]}×{crop[3]}" if crop else "", escape(p.get("split") or ""), _num(p.get("windows"), "d"),
                 _num(p.get("accepted"), "d"), _num(p.get("median_ncc"), ".3f"),
                 escape(r.get("reason") or p.get("reason") or "")]
        rows.append(f'<tr class="{escape(str(r.get("status", "")))}">' + "".join(
            f"<td{_align(h)}>{c}</td>" for h, c in zip(PAIR_COLUMNS, cells)) + "</tr>")
    return ('<table id="pairs"><tr>' + "".join(f"<th{_align(h)}>{h}</th>" for h in PAIR_COLUMNS) + "</tr>"
            + "".join(rows) + "</table>")


def _align(column: str) -> str:
    return " class=num" if column in NUMERIC else ""


def _nav(n_pages: int, current: int, prefix: str) -> str:
    if n_pages <= 1:
        return ""
    links = []
    for k in range(1, n_pages + 1):
        href = f"{prefix}index.html" if k == 1 else f"{prefix}pages/{k}.html"
        links.append(f"<b>{k}</b>" if k == current else f'<a href="{href}">{k}</a>')
    if n_pages > 30:      # first, neighbours, last
        keep = {0, n_pages - 1, *range(max(0, current - 4), min(n_pages, current + 3))}
        links = [lk if i in keep else "…" for i, lk in enumerate(links)]
        links = [lk for i, lk in enumerate(links) if lk != "…" or (i > 0 and links[i - 1] != "…")]
    return f'<nav>pages: {" ".join(links)}</nav>'


def pair_page(out: Path, pid: str, name: str, rec: dict, photo: dict, aligned: Path, cams: tuple[str, str],
              thumb: int, names: dict[str, str], enhanced: Path | None) -> str:
    title = f"{name} — {rec.get('status', '?')}"
    head = f'<p><a href="../index.html">← summary</a></p><h1>{escape(title)}</h1>'
    facts = [("matches", _num(rec.get("matches"), "d")), ("inliers", _num(rec.get("inliers"), "d")),
             ("reprojection RMSE (px)", _num(rec.get("reprojection_rmse"), ".3f")),
             ("split", escape(photo.get("split") or "")), ("windows", _num(photo.get("windows"), "d")),
             ("accepted patches", _num(photo.get("accepted"), "d")), ("median NCC", _num(photo.get("median_ncc"), ".3f"))]
    body = head + "<p>" + "; ".join(f"{k} {v}" for k, v in facts if v) + "</p>"
    if rec.get("status") != "ok":
        return _page(title, body + f'<p class="bad">{escape(rec.get("reason") or photo.get("reason") or "no reason recorded")}</p>')
    pp, dp = output_paths(aligned, cams[0], cams[1], name)
    img_dir = out / "img"
    files = {k: img_dir / f"{pid}_{k}.jpg" for k in ("phone", "dslr", "checker", "diff")}
    zooms = {k: img_dir / f"{pid}_{k}_zoom.jpg" for k in files}
    if not all(_fresh(f, pp, dp) for f in list(files.values()) + list(zooms.values())):
        try:
            phone, dslr = read_aligned_phone(pp, rec), read_image(dp)
        except ImageReadError as e:
            return _page(title, body + f'<p class="bad">aligned images unreadable: {escape(str(e))}</p>')
        views = {"phone": phone, "dslr": dslr, "checker": checkerboard(phone, dslr, max_side=ZOOM_SIDE),
                 "diff": difference(phone, dslr)}
        for k, v in views.items():
            _save_jpeg(v, files[k], 2 * thumb)
            _save_jpeg(v, zooms[k], ZOOM_SIDE)
    captions = {"phone": "phone", "dslr": "DSLR warped to the phone frame",
                "checker": "checkerboard: seams show misalignment", "diff": "normalised difference: edges that do not cancel"}
    cards = "".join(f'<div class="card">{escape(captions[k])}{_img("../img/" + files[k].name, "../img/" + zooms[k].name, captions[k], thumb)}</div>'
                    for k in files)
    body += "<h2>Alignment</h2>" + cards
    if photo.get("grid") and photo.get("window_map"):
        with Image.open(pp) as im:          # the header only: the grid is in full-resolution pixels
            pw, ph = im.size
        svg, legend = charts.window_map("../img/" + files["phone"].name, pw, ph, photo["grid"], photo["window_map"],
                                        photo.get("window_residual"), names, 2 * thumb)
        rows = "".join(f'<span class="swatch" style="border:2px {"solid" if k == "accepted" else "dashed"} {c}">'
                       f'</span>{escape(k)} {n}' for k, c, n in legend)
        note = ("outlines: accepted (solid) coloured by estimated residual: green 0 px, yellow 0.5 px, red ≥ 1 px; "
                "rejected dashed, by reason" if photo.get("window_residual")
                else "outlines: accepted solid (no residual estimates in this patches_report.json), rejected dashed")
        body += f'<h2>Patch windows</h2><div class="card">{svg}<div class="note">{rows}<br>{escape(note)}</div></div>'
    if enhanced is not None:
        found = [p for p in (enhanced / f"{name}_before_after.jpg", enhanced / f"{name}_before_after.png",
                             enhanced / f"{name}.jpg", enhanced / f"{name}.png") if p.is_file()]
        if found:
            small, big = img_dir / f"{pid}_enhanced.jpg", img_dir / f"{pid}_enhanced_zoom.jpg"
            if not (_fresh(small, found[0]) and _fresh(big, found[0])):
                e = read_image(found[0])
                _save_jpeg(e, small, 4 * thumb)
                _save_jpeg(e, big, 2 * ZOOM_SIDE)
            body += ("<h2>Enhanced</h2>" + f'<div class="card">{escape(found[0].name)}'
                     + _img("../img/" + small.name, "../img/" + big.name, "enhanced", 4 * thumb) + "</div>")
    return _page(title, body)


def site_folder(out: str | Path) -> Path:
    """The report folder for ``-o out``: ``out`` itself, or its parent for ``…/index.html``.

    Any other ``.html`` path raises :class:`ValueError`: the report is a folder of pages and
    images now (there is no single-page report), and silently writing a folder called
    ``x.html`` would surprise."""
    out = Path(out)
    if out.name == "index.html":
        return out.parent
    if out.suffix.lower() in (".html", ".htm"):
        raise OptionError(f"the report is a folder (index.html, pages/, pairs/, img/), not one page: "
                         f"use -o {out.with_suffix('')}/ (or -o {out.with_suffix('')}/index.html) instead of -o {out}")
    return out


def build_site(aligned: str | Path, dataset: str | Path | None = None, run: str | Path | None = None,
               out: str | Path = "report", thumb: int = 240, enhanced: str | Path | None = None,
               evaluations: list[str | Path] = (), page_rows: int = PAGE_ROWS, log=print) -> Path:
    """Write the report folder ``out``; returns the path of its ``index.html``."""
    aligned, out = Path(aligned), Path(out)
    run = Path(run) if run else None
    enhanced = Path(enhanced) if enhanced else None
    records = read_records(aligned / MANIFEST)
    if not records:
        raise LayoutError(f"no {MANIFEST} in {aligned}: run 'dpedkit align' first")
    cams = _cameras_from(records) or resolve_cameras(aligned, None, None, ignore=("previews",))
    preport = _patches_report(Path(dataset) if dataset else None)
    photos = {p["name"]: p for p in preport.get("photos", [])}
    for sub in ("pairs", "pages", "img"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    items = [(pair_id(i, n), n, r, photos.get(n, {})) for i, (n, r) in enumerate(sorted(records.items()))]
    _pair_pages(items, out, aligned, cams, thumb, enhanced, log)
    parts = [_counts_section(aligned, records), _patches_section(preport, photos)]
    evals = _evaluations(run, [Path(p) for p in evaluations])
    parts += [_training_section(run, evals, out, thumb), evaluation_table(evals), _enhanced_section(enhanced, out, thumb)]
    pages = [items[i:i + page_rows] for i in range(0, len(items), page_rows)] or [[]]
    parts.append(_table_pages(pages, out, len(items), page_rows))
    index = out / "index.html"
    write_text_atomic(index, _page("dpedkit report", "\n".join(p for p in parts if p)))
    images = sum(1 for p in (out / "img").iterdir() if p.suffix == ".jpg")
    log(f"report: wrote {index} and {len(items)} pair page{'s' * (len(items) != 1)} in {out / 'pairs'}/"
        + (f", {len(pages) - 1} more table page{'s' * (len(pages) != 2)} in {out / 'pages'}/" if len(pages) > 1 else "")
        + f"; {images} image{'s' * (images != 1)} in {out / 'img'}/")
    return index


def _pair_pages(items, out: Path, aligned: Path, cams, thumb: int, enhanced: Path | None, log) -> None:
    names = _window_names()
    for k, (pid, name, rec, photo) in enumerate(items):
        write_text_atomic(out / "pairs" / f"{pid}.html",
                          pair_page(out, pid, name, rec, photo, aligned, cams, thumb, names, enhanced))
        if (k + 1) % 200 == 0:
            log(f"report: pair {k + 1}/{len(items)}")


def _counts_section(aligned: Path, records: dict) -> str:
    statuses: dict[str, int] = {}
    for r in records.values():
        statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
    return (f"<h1>dpedkit report</h1><p>{escape(str(aligned))}: {len(records)} pairs — "
            + ", ".join(f"{n} {escape(s)}" for s, n in sorted(statuses.items())) + "</p>")


def _patches_section(preport: dict, photos: dict) -> str:
    if not preport:
        return ""
    counts = preport.get("patches", {})
    threshold = preport.get("options", {}).get("threshold")
    shown = charts.fmt(threshold) if threshold is not None else "?"
    scores = [v for p in photos.values() for v in p.get("window_ncc") or [] if v is not None]
    return (f'<h2>Patches</h2><p id="patch-counts">{counts.get("train", 0)} train and {counts.get("test", 0)} '
            f'test patches from {len(photos)} photos; threshold {shown}</p>'
            + (charts.histogram(scores, "normalised cross-correlation of every scored window", bins=60,
                                lim=(min(0.0, min(scores, default=0)), 1.0), marker=threshold,
                                marker_label=f"threshold {shown if threshold is not None else ''}")
               or '<p class="note">no per-window scores in patches_report.json (re-run patches)</p>'))


def _training_section(run: Path | None, evals, out: Path, thumb: int) -> str:
    rows = _metrics(run)
    if not rows:
        return ""
    last = rows[-1]
    return (f"<h2>Training run {escape(str(run))}</h2><p>{len(rows)} evaluations; last at iteration "
            f"{escape(str(last.get('iteration', '?')))}: test PSNR {_num(last.get('test_psnr'), '.2f')} dB, "
            f"SSIM {_num(last.get('test_ssim'), '.4f')}, MS-SSIM {_num(last.get('test_ms_ssim'), '.4f')}</p>"
            + run_charts(rows, evals) + latest_samples(run, out, thumb))


def _enhanced_section(enhanced: Path | None, out: Path, thumb: int) -> str:
    if enhanced is None or not enhanced.is_dir():
        return ""
    shots = [p for p in list_images(enhanced) if p.stem.endswith("_before_after")][:6]
    cards = []
    for k, p in enumerate(shots):
        small, big = out / "img" / f"enhanced-{k}.jpg", out / "img" / f"enhanced-{k}_zoom.jpg"
        if not (_fresh(small, p) and _fresh(big, p)):
            e = read_image(p)
            _save_jpeg(e, small, 2 * thumb)
            _save_jpeg(e, big, 2 * ZOOM_SIDE)
        cards.append(f'<div class="card">{escape(p.stem)}'
                     + _img("img/" + small.name, "img/" + big.name, p.stem, 2 * thumb) + "</div>")
    return "<h2>Enhanced photos: phone | enhanced (click to zoom)</h2>" + "".join(cards) if cards else ""


def _table_pages(pages: list, out: Path, n_items: int, page_rows: int) -> str:
    """Write the pairs table's pages 2… into ``out/pages/``; returns the index's first page."""
    for k, chunk in enumerate(pages[1:], 2):
        body = (f'<p><a href="../index.html">← summary</a></p><h1>Pairs, page {k} of {len(pages)}</h1>'
                + _nav(len(pages), k, "../") + table_rows(chunk).replace('href="PAIRS/', 'href="../pairs/')
                + _nav(len(pages), k, "../"))
        write_text_atomic(out / "pages" / f"{k}.html", _page(f"pairs {k}", body))
    return (f"<h2>Pairs</h2><p class=\"note\">{n_items} pairs, {page_rows} per page; "
            "a pair's name opens its page.</p>" + _nav(len(pages), 1, "")
            + table_rows(pages[0]).replace('href="PAIRS/', 'href="pairs/') + _nav(len(pages), 1, ""))
