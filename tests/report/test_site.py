"""The report folder: structure, numbers checked against the files it reads, size at 10,000
pairs, charts without ``-0`` or overlapping legends, and (where Chromium is installed) a real
browser rendering every image."""
import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from dpedkit.cli import main
from dpedkit.imageio import read_image, write_image
from dpedkit.raw import Mosaic
from dpedkit.report import charts
from dpedkit.report.site import build_site
from tests.camera_writer import SENSOR_WB, simulate_raw_phone
from tests.report.site_check import BROWSER, browser_images, parse, screenshot

QUIET = dict(log=lambda *_: None)


def make_inputs(root: Path, samples, n_ok=3, n_failed=1, with_images=True):
    """aligned/ (manifest + PNGs), dataset/patches_report.json, runs/r/metrics.csv + evaluate JSON, enhanced/."""
    aligned = root / "aligned"
    aligned.mkdir(parents=True)
    recs, photos = [], []
    names = ["astronaut", "coffee", "chelsea"]
    for i in range(n_ok + n_failed):
        name = f"p{i:05d}"
        if i < n_ok:
            recs.append({"name": name, "status": "ok", "phone": f"iphone/{name}.jpg", "dslr": f"canon/{name}.jpg",
                         "matches": 1000 + i, "inliers": 900 + i, "reprojection_rmse": 0.123456 + i / 1000,
                         "crop": [0, 0, 160, 120]})
            if with_images:
                img = np.ascontiguousarray(samples[names[i % 3]][:120, :160])
                write_image(aligned / "iphone" / f"{name}.png", img)
                write_image(aligned / "canon" / f"{name}.png", img[:, ::-1].copy())
            codes = "aaflx" + "a" * 7 + "o" * 8          # 4 × 5 windows; 'x' is a code we do not know
            photos.append({"name": name, "status": "ok", "windows": 20, "accepted": 8, "median_ncc": 0.95123,
                           "grid": {"x": 5, "y": 5, "cols": 5, "rows": 4, "size": 28}, "window_map": codes,
                           "window_ncc": [0.97, 0.96, None, 0.5, None] + [0.93] * 7 + [None] * 8,
                           "window_residual": [0.05, 1.4] + [None] * 3 + [0.2] * 7 + [None] * 8})
        else:
            recs.append({"name": name, "status": "failed", "reason": "too few inliers (12 < 25)"})
    (aligned / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    ds = root / "dataset"
    ds.mkdir()
    (ds / "patches_report.json").write_text(json.dumps({"patches": {"train": 20, "test": 4},
                                                         "options": {"threshold": 0.9}, "photos": photos}))
    run = root / "runs" / "r"
    run.mkdir(parents=True)
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "loss_generator", "loss_content", "loss_color", "loss_texture", "loss_tv",
                    "loss_discriminator", "disc_accuracy", "test_psnr", "test_ssim", "test_ms_ssim", "seconds"])
        for it in range(0, 1001, 100):
            w.writerow([it, 50 - it / 50, 0, 40 - it / 100, 0.7, 0.002 + it * 1e-6, 0.69, 0.5, 15 + it / 200,
                        0.5 + it / 5000, 0.8, 1.0])
    (run / "evaluate_iphone.json").write_text(json.dumps({
        "patches": 60, "identity": {"psnr": 16.987654, "ssim": 0.81234, "ms_ssim": 0.9}, 
        "enhanced": {"psnr": 20.118423461914062, "ssim": 0.5928869247436523, "ms_ssim": 0.8207}}))
    enh = root / "enhanced"
    if with_images:
        write_image(enh / "p00000_before_after.jpg", np.concatenate([samples["astronaut"][:120, :160]] * 2, axis=1))
    return aligned, ds, run, enh


def test_report_folder_structure_numbers_and_links(tmp_path, samples):
    aligned, ds, run, enh = make_inputs(tmp_path, samples)
    out = tmp_path / "report"
    r = CliRunner().invoke(main, ["report", str(aligned), str(ds), str(run), "-o", str(out), "--enhanced", str(enh)])
    assert r.exit_code == 0, r.output
    index = out / "index.html"
    html = index.read_text()
    assert "cdn" not in html.lower() and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    links = parse(index)
    text = " ".join(links.text)
    assert "4 pairs — 1 failed, 3 ok" in text
    assert "20 train and 4 test patches from 3 photos; threshold 0.9" in text
    assert "test PSNR 20.00 dB" in text and "20.118423" not in html             # formatted, not raw floats
    assert "20.12" in text and "0.5929" in text and "16.99" in text          # evaluate's scores, formatted
    assert "phone photos as they are (identity" in html                       # the baseline on the PSNR chart
    # loss terms: content is 0 throughout (off) → absent; colour, texture, TV a panel each
    loss_svg = _svg_by_label(html, "loss terms (unweighted), each on its own axis")
    assert "content" not in loss_svg and "total variation" in loss_svg
    assert [t for t in re.findall(r'<g class="panel"[^>]*><title>([^<]+)</title>', loss_svg)] == \
        ["colour", "texture", "total variation"]
    assert not re.search(r">-0<", html)
    assert "<th>reason</th>" in html and "<th>pair</th>" in html and "<th class=num>RMSE (px)</th>" in html
    # every link and image resolves inside the folder; each table row links to its pair page
    pair_links = [h for h in links.hrefs if h.startswith("pairs/")]
    assert len(pair_links) == 4
    for h in links.hrefs + links.srcs:
        assert (out / h).is_file(), h
    ok_page = out / pair_links[0]
    p = parse(ok_page)
    assert len(p.srcs) >= 9                                                   # 4 views × (thumb, zoom) + window map
    for s in p.srcs + p.hrefs:
        assert (ok_page.parent / s).resolve().is_file(), s
    page = ok_page.read_text()
    ptext = " ".join(p.text)
    assert "code 'x'" in ptext and "low_ncc" in ptext and "flat" in ptext      # unknown code rendered generically
    assert charts.residual_color(1.4) in page and charts.residual_color(0.05) in page
    assert "Enhanced" in page
    failed = parse(out / pair_links[3])
    assert "too few inliers (12 < 25)" in " ".join(failed.text)
    # a re-run rewrites no image (unchanged inputs)
    mtimes = {f: f.stat().st_mtime_ns for f in (out / "img").iterdir()}
    build_site(aligned, ds, run, out, enhanced=enh, **QUIET)
    assert {f: f.stat().st_mtime_ns for f in (out / "img").iterdir()} == mtimes


def test_ten_thousand_pairs_keep_the_summary_small(tmp_path, samples):
    aligned, ds, run, _ = make_inputs(tmp_path, samples, n_ok=9000, n_failed=1000, with_images=False)
    index = build_site(aligned, ds, run, tmp_path / "report", page_rows=250, **QUIET)
    size = index.stat().st_size
    assert size < 2_000_000, size
    pages = sorted((tmp_path / "report" / "pages").glob("*.html"))
    assert len(pages) == 39 and len(list((tmp_path / "report" / "pairs").glob("*.html"))) == 10_000
    last = parse(pages[-1] if pages[-1].name == "40.html" else tmp_path / "report" / "pages" / "40.html")
    assert "p09999" in " ".join(last.text)
    assert sum(h.startswith("../pairs/") for h in last.hrefs) == 250


def test_ticks_and_labels():
    assert charts.fmt(-0.0) == "0" and charts.fmt(-1e-17, 4) != "-0" and charts.fmt(20.118423461914062) == "20.12"
    t = charts.ticks(-0.3, 0.3)
    assert 0.0 in t and all(charts.fmt(v) != "-0" for v in t) and charts.fmt(t[0]) == "-0.2"
    svg = charts.line_chart([0, 1, 2], {"a": [1, 2, 3], "b": [3, 2, 1]}, "t")
    legend_y = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)" font-size="11">[ab]<', svg)]
    plot_bottom = float(re.search(r'<rect x="\d+" y="(\d+)" width="\d+" height="(\d+)"', svg).group(1)) + \
        float(re.search(r'<rect x="\d+" y="(\d+)" width="\d+" height="(\d+)"', svg).group(2))
    assert legend_y and min(legend_y) > plot_bottom                            # legends below the plot


def test_html_out_path_is_an_error_or_its_folder(tmp_path, samples):
    aligned, ds, run, _ = make_inputs(tmp_path, samples, n_ok=1, n_failed=0)
    r = CliRunner().invoke(main, ["report", str(aligned), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "the report is a folder" in r.output and not (tmp_path / "r.html").exists()
    r = CliRunner().invoke(main, ["report", str(aligned), "-o", str(tmp_path / "site" / "index.html")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "pairs").is_dir()


def test_raw_phone_mosaic_is_shown_in_colour(tmp_path, samples):
    """A RAW phone's aligned image is a 16-bit Bayer mosaic: the report renders it (demosaic,
    white balance) rather than showing the grey mosaic."""
    dslr = np.ascontiguousarray(samples["coffee"][:200, :300])
    mosaic = simulate_raw_phone(dslr, np.eye(3), (300, 200), "GBRG", 12, 256, np.random.default_rng(0))
    aligned = tmp_path / "aligned"
    rec = {"name": "m", "status": "ok", "phone": "phone/m.dng", "dslr": "dslr/m.jpg", "matches": 500, "inliers": 400,
           "reprojection_rmse": 0.2, "crop": [0, 0, 300, 200],
           **Mosaic(mosaic, "GBRG", (256.0,) * 4, 4095.0, SENSOR_WB).record()}
    (aligned / "phone").mkdir(parents=True)
    assert cv2.imwrite(str(aligned / "phone" / "m.png"), mosaic)                  # 16-bit, 1 channel
    write_image(aligned / "dslr" / "m.png", dslr)
    (aligned / "manifest.jsonl").write_text(json.dumps(rec) + "\n")
    out = tmp_path / "report"
    build_site(aligned, out=out, thumb=150, **QUIET)
    phone = read_image(out / "img" / "00000-m_phone.jpg").astype(np.float32)
    ref = cv2.resize(dslr, phone.shape[1::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
    chroma = np.abs(phone - phone.mean(axis=2, keepdims=True)).mean()
    assert chroma > 0.5 * np.abs(ref - ref.mean(axis=2, keepdims=True)).mean()   # a grey mosaic has ~0
    for c in range(3):                                                            # the right colour in each channel
        assert np.corrcoef(phone[..., c].ravel(), ref[..., c].ravel())[0, 1] > 0.9, c
    checker = read_image(out / "img" / "00000-m_checker.jpg")
    assert checker.std(axis=2).mean() > 5                                         # the checkerboard too


@pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed")
def test_report_renders_in_a_headless_browser(tmp_path, samples):
    aligned, ds, run, enh = make_inputs(tmp_path, samples)
    out = tmp_path / "report"
    build_site(aligned, ds, run, out, enhanced=enh, **QUIET)
    pair = sorted((out / "pairs").glob("*.html"))[0]
    for page, shot in ((out / "index.html", tmp_path / "index.png"), (pair, tmp_path / "pair.png")):
        images, broken = browser_images(page)
        assert images > 0 and broken == 0, (page, images, broken)
        screenshot(page, shot)
        assert shot.is_file() and shot.stat().st_size > 10_000


def _svg_by_label(html: str, label: str) -> str:
    return re.search(r'<svg[^>]*aria-label="' + re.escape(label) + r'".*?</svg>', html, re.S).group(0)


def test_ssim_chart_has_the_identity_baselines(tmp_path, samples):
    aligned, ds, run, _ = make_inputs(tmp_path, samples, n_ok=1, n_failed=0)
    html = build_site(aligned, ds, run, tmp_path / "report", **QUIET).read_text()
    svg = _svg_by_label(html, "test SSIM / MS-SSIM")
    # evaluate_iphone.json's identity SSIM 0.81234 and MS-SSIM 0.9, as dashed lines in the legend
    assert "phone photos as they are SSIM (identity, evaluate_iphone.json) 0.8123" in svg
    assert "phone photos as they are MS-SSIM (identity, evaluate_iphone.json) 0.9" in svg
    assert svg.count('stroke-dasharray="5 3"') >= 2 * 2                    # two reference lines + their swatches
    # each baseline in its series' colour, so the eye pairs SSIM with its baseline
    assert re.search(rf'stroke="{charts.series_color(0)}" stroke-width="1.5" stroke-dasharray', svg)
    assert re.search(rf'stroke="{charts.series_color(1)}" stroke-width="1.5" stroke-dasharray', svg)


def test_loss_terms_get_a_panel_and_an_axis_each():
    # the demo's terms: texture negative, TV ~1e-4, colour ~1e2: five orders of magnitude apart
    it = [0, 50, 100, 150]
    terms = {"colour": [392.0, 120.0, 60.0, 43.0], "texture": [-5.0, -6.5, -7.2, -8.0],
             "total variation": [3e-4, 4e-4, 5e-4, 6e-4]}
    svg = charts.small_multiples(it, terms, "loss terms")
    panels = re.findall(r'<g class="panel".*?</g>', svg, re.S)
    assert len(panels) == 3
    for (name, values), panel in zip(terms.items(), panels):
        assert f">{name}<" in panel
        ys = [float(y) for y in re.findall(r'y="([\d.]+)" font-size="10" text-anchor="end">', panel)]
        labels = [float(v) for v in re.findall(r'font-size="10" text-anchor="end">([-\d.e]+)<', panel)]
        span = max(values) - min(values)
        # the panel's own axis: its ticks lie within the term's own range (give or take a margin)
        assert len(ys) >= 2 and min(values) - span <= min(labels) < max(labels) <= max(values) + span, (name, labels)
        points = [tuple(map(float, p.split(","))) for p in re.search(r'points="([^"]+)"', panel).group(1).split()]
        heights = [b for _, b in points]
        assert max(heights) - min(heights) > 60, (name, heights)            # the line spans its own panel
    assert "log scale" not in svg


def test_window_map_outlines_windows_instead_of_tinting_them():
    grid = {"x": 0, "y": 0, "cols": 3, "rows": 1, "size": 100}
    svg, legend = charts.window_map("p.jpg", 300, 100, grid, "aif", [0.1, None, None],
                                    {"i": "inconsistent", "f": "flat"}, 300)
    rects = re.findall(r"<rect [^>]*>", svg)
    assert len(rects) == 2 * 3                                              # halo + outline per window
    assert all('fill="none"' in r for r in rects) and "fill-opacity" not in svg
    coloured = [r for r in rects if 'stroke="#000"' not in r]
    assert 'stroke-dasharray' not in coloured[0] and all("stroke-dasharray" in r for r in coloured[1:])
    assert f'stroke="{charts.residual_color(0.1)}"' in coloured[0]
    assert f'stroke="{charts.REASON_COLORS["inconsistent"]}"' in coloured[1]
    assert {k: n for k, _, n in legend} == {"accepted": 1, "inconsistent": 1, "flat": 1}


def test_report_says_what_it_wrote(tmp_path, samples):
    aligned, ds, run, enh = make_inputs(tmp_path, samples)
    log = []
    index = build_site(aligned, ds, run, tmp_path / "report", enhanced=enh, page_rows=2, log=log.append)
    n_img = len(list((tmp_path / "report" / "img").glob("*.jpg")))
    assert log[-1] == (f"report: wrote {index} and 4 pair pages in {tmp_path / 'report' / 'pairs'}/, 1 more table "
                       f"page in {tmp_path / 'report' / 'pages'}/; {n_img} images in {tmp_path / 'report' / 'img'}/")


def test_the_same_evaluation_is_shown_once(tmp_path, samples):
    aligned, ds, run, _ = make_inputs(tmp_path, samples, n_ok=1, n_failed=0)
    copy = tmp_path / "evaluate_copy.json"
    copy.write_text((run / "evaluate_iphone.json").read_text())
    html = build_site(aligned, ds, run, tmp_path / "report", evaluations=[run / "evaluate_iphone.json", copy],
                      **QUIET).read_text()
    table = re.search(r'<table id="evaluate">.*?</table>', html, re.S).group(0)
    assert table.count("<tr>") == 1 + 2                                     # header, identity, enhanced
