"""The demo end to end (small), its resume, and the HTML report checked against the files it reads."""
import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from dpedkit.demo import run_demo
from dpedkit.layout import read_records
from dpedkit.report.page import build_report


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    log = []
    problems = run_demo(root, train_iters=4, batch_size=4, log=log.append)
    return root, problems, log


def test_demo_runs_the_whole_pipeline(demo):
    root, problems, log = demo
    assert problems == 0
    text = "\n".join(log)
    errors = [float(line.split()[-1]) for line in log if line.startswith("  ") and line.split()[0] in
              ("astronaut", "coffee", "rocket", "chelsea", "motorcycle", "immunohistochemistry")
              and "." in line.split()[-1] and len(line.split()) == 2]
    assert len(errors) == 6 and max(errors) < 0.5, errors      # against the simulated homographies
    result = json.loads((root / "evaluate.json").read_text())
    assert result["patches"] > 20 and result["identity"]["psnr"] < 20   # the simulated phone is visibly worse
    enhanced = sorted(p.name for p in (root / "enhanced").iterdir() if p.suffix == ".jpg")
    assert len(enhanced) == 4 and sum(n.endswith("_before_after.jpg") for n in enhanced) == 2
    assert len(read_records(root / "enhanced" / "manifest.jsonl")) == 2       # one record per photo
    assert "open " in text and (root / "report.html").is_file()


def test_demo_rerun_redoes_nothing(demo):
    root, _, _ = demo
    log = []
    assert run_demo(root, train_iters=4, batch_size=4, log=log.append) == 0
    text = "\n".join(log)
    assert "6 pairs: 6 ok, 0 failed, 0 unpaired (6 already done, skipped)" in text
    assert "6 photos (6 already done)" in text
    assert "resumed at iteration 4" in text
    assert "2 photos: 2 ok, 0 failed (2 already done, skipped)" in text


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images, self.text, self._row, self._cell, self._in_pairs = [], [], [], None, None, False
        self.tags = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "table" and a.get("id") == "pairs":
            self._in_pairs = True
        if tag == "tr" and self._in_pairs and "data-name" in a:
            self._row = {"name": a["data-name"], "class": a.get("class"), "cells": []}
        if tag == "td" and self._row is not None:
            self._cell = ""
        if tag == "img":
            self.images.append(a["src"])
        if tag == "image":
            self.images.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag == "table":
            self._in_pairs = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell += data


def test_report_matches_the_manifest_and_patch_report(demo, tmp_path):
    root, _, _ = demo
    aligned = tmp_path / "aligned"
    shutil.copytree(root / "aligned", aligned)
    failed = {"name": "zz_broken", "phone": "phone/zz_broken.jpg", "dslr": "dslr/zz_broken.jpg", "status": "failed",
              "reason": "phone photo: truncated JPEG (no end-of-image marker after the image data)"}
    with open(aligned / "manifest.jsonl", "a") as f:
        f.write(json.dumps(failed) + "\n")
    out = build_report(aligned, root / "dataset", root / "runs" / "demo", tmp_path / "r.html", log=lambda *_: None)
    page = Page()
    page.feed(out.read_text())
    records = read_records(aligned / "manifest.jsonl")
    preport = json.loads((root / "dataset" / "phone" / "patches_report.json").read_text())
    photos = {p["name"]: p for p in preport["photos"]}
    assert [r["name"] for r in page.rows] == sorted(records)
    for row in page.rows:
        rec, c = records[row["name"]], row["cells"]
        assert c[1] == rec["status"] and row["class"] == rec["status"]
        if rec["status"] == "ok":
            assert int(c[2]) == rec["matches"] and int(c[3]) == rec["inliers"]
            assert c[4] == f"{rec['reprojection_rmse']:.3f}"
            assert c[5] == f"{rec['crop'][2]}×{rec['crop'][3]}"
            p = photos[row["name"]]
            assert (int(c[7]), int(c[8]), c[6]) == (p["windows"], p["accepted"], p["split"])
        else:
            assert c[-1] == rec["reason"]
    text = " ".join(page.text)
    assert f"{preport['patches']['train']} train and {preport['patches']['test']} test patches" in text
    scored = sum(v is not None for p in photos.values() for v in p["window_ncc"])
    assert f"{scored} values" in text                                     # the histogram holds every scored window
    assert "threshold 0.9" in text and "truncated JPEG" in text
    assert "samples at iteration 4" in text
    # every image is embedded and decodes; 4 panels per ok pair + the window map + the samples
    n_ok = sum(r["status"] == "ok" for r in records.values())
    assert len(page.images) == 5 * n_ok + 1
    for src in page.images:
        assert src.startswith("data:image/jpeg;base64,")
        img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.size > 0
    assert page.tags.count("svg") >= n_ok + 1 + 3                       # window maps, histogram, run charts


def test_report_renders_in_a_headless_browser(demo, tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser on this machine")
    root, _, _ = demo
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1200,900", (root / "report.html").resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (900, 1200)
    assert img.std() > 10                                                 # not a blank page
