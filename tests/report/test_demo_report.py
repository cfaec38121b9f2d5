"""The demo end to end (small), its resume, and its report folder checked against the files it reads."""
import json
import re
import shutil

import cv2
import pytest

from dpedkit.demo import RECIPE_NOTES, demo_command, run_demo
from dpedkit.layout import read_records
from dpedkit.report.site import build_site
from tests.report.site_check import BROWSER, browser_images, pages_of, parse, screenshot


# the demo, kept short: one iteration, and every scoring of the (slow, full-size) generator on CPU runs on 4 patches
DEMO = dict(train_iters=1, batch_size=4, test_patches=4)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    log = []
    problems = run_demo(root, **DEMO, log=log.append)
    return root, problems, log


def test_demo_runs_the_whole_pipeline(demo):
    root, problems, log = demo
    assert problems == 0
    text = "\n".join(log)
    errors = [float(line.split()[-1]) for line in log if line.startswith("  ") and line.split()[0] in
              ("astronaut", "coffee", "rocket", "chelsea", "motorcycle", "immunohistochemistry")
              and "." in line.split()[-1] and len(line.split()) == 2]
    assert len(errors) == 6 and max(errors) < 0.5, errors      # against the simulated homographies
    result = json.loads((root / "runs" / "demo" / "evaluate_phone.json").read_text())
    assert result["patches"] == DEMO["test_patches"] and result["identity"]["psnr"] < 20   # the phone is visibly worse
    assert not (root / "evaluate.json").exists()                              # written once: the run's file
    # the recipe's differences from the paper's are printed, and the run starts near the identity:
    # its iteration-0 score is far above the paper's random start (~11-12 dB, SSIM ~0.36)
    assert "the demo's recipe differs from the paper's (docs/faithful.md): " + "; ".join(RECIPE_NOTES) in text
    first = (root / "runs" / "demo" / "metrics.csv").read_text().splitlines()[1].split(",")
    assert float(first[-3]) > 0.6, first
    assert "report: wrote " in text and "6 pair pages in " in text
    enhanced = sorted(p.name for p in (root / "enhanced").iterdir() if p.suffix == ".jpg")
    assert len(enhanced) == 4 and sum(n.endswith("_before_after.jpg") for n in enhanced) == 2
    assert len(read_records(root / "enhanced" / "manifest.jsonl")) == 2       # one record per photo
    assert f"open {root / 'report' / 'index.html'} in a browser" in text


def test_demo_rerun_redoes_nothing(demo):
    root, _, _ = demo
    log = []
    assert run_demo(root, **DEMO, log=log.append) == 0
    text = "\n".join(log)
    assert "6 pairs: 6 ok, 0 failed, 0 unpaired (6 already done, skipped)" in text
    assert "6 photos (6 already done)" in text
    assert (f"is already at iteration {DEMO['train_iters']} of {DEMO['train_iters']}: nothing to train "
            "(raise --train-iters to train further)") in text
    assert "2 photos: 2 ok, 0 failed (2 already done, skipped)" in text
    assert "the model and the test patches are unchanged since" in text and "evaluating" not in text


def test_demo_rerun_with_other_settings_continues(demo, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(demo[0], root)
    log = []
    assert run_demo(root, **{**DEMO, "train_iters": DEMO["train_iters"] + 1, "batch_size": 2, "test_patches": 2},
                    log=log.append) == 0
    text = "\n".join(log)
    assert "recipe changed on resume" in text and "batch_size: 4 → 2" in text
    assert json.loads((root / "runs" / "demo" / "evaluate_phone.json").read_text())["patches"] == 2
    assert "evaluating" in text                                               # another model and test set: re-scored


def test_resume_command_keeps_the_options():
    assert demo_command("demo") == "dpedkit demo demo"
    assert demo_command("my demo", jobs=1, train_iters=300, batch_size=8, test_patches=20) == \
        "dpedkit demo 'my demo' --train-iters 300 --test-patches 20 --jobs 1"


def test_report_matches_the_manifest_and_patch_report(demo, tmp_path):
    root, _, _ = demo
    aligned = tmp_path / "aligned"
    shutil.copytree(root / "aligned", aligned)
    failed = {"name": "zz_broken", "phone": "phone/zz_broken.jpg", "dslr": "dslr/zz_broken.jpg", "status": "failed",
              "reason": "phone photo: truncated JPEG (no end-of-image marker after the image data)"}
    with open(aligned / "manifest.jsonl", "a") as f:
        f.write(json.dumps(failed) + "\n")
    out = tmp_path / "report"
    build_site(aligned, root / "dataset", root / "runs" / "demo", out, enhanced=root / "enhanced",
               log=lambda *_: None)
    index = parse(out / "index.html")
    records = read_records(aligned / "manifest.jsonl")
    preport = json.loads((root / "dataset" / "phone" / "patches_report.json").read_text())
    photos = {p["name"]: p for p in preport["photos"]}
    assert [r["cells"][0] for r in index.rows] == sorted(records)              # 7 pairs: one page
    for row in index.rows:
        rec, c = records[row["cells"][0]], row["cells"]
        assert c[1] == rec["status"] and row["class"] == rec["status"]
        if rec["status"] == "ok":
            assert int(c[2]) == rec["matches"] and int(c[3]) == rec["inliers"]
            assert c[4] == f"{rec['reprojection_rmse']:.3f}"
            assert c[5] == f"{rec['crop'][2]}×{rec['crop'][3]}"
            p = photos[c[0]]
            assert (int(c[7]), int(c[8]), c[6]) == (p["windows"], p["accepted"], p["split"])
            assert c[9] == f"{p['median_ncc']:.3f}"
        else:
            assert c[-1] == rec["reason"]
    text = " ".join(index.text)
    assert f"{preport['patches']['train']} train and {preport['patches']['test']} test patches" in text
    scored = sum(v is not None for p in photos.values() for v in p["window_ncc"])
    assert f"{scored} values" in text                                     # the histogram holds every scored window
    assert "threshold 0.9" in text and "truncated JPEG" in text
    assert f"samples at iteration {DEMO['train_iters']}" in text
    result = json.loads((root / "runs" / "demo" / "evaluate_phone.json").read_text())   # evaluate's scores, formatted
    for which in ("identity", "enhanced"):
        assert f"{result[which]['psnr']:.2f}" in text and f"{result[which]['ssim']:.4f}" in text
    table = re.search(r'<table id="evaluate">.*?</table>', (out / "index.html").read_text(), re.S).group(0)
    assert table.count("<tr>") == 1 + 2                                   # identity and enhanced once, not twice
    assert f"(identity, evaluate_phone.json) {result['identity']['psnr']:.4g}" in text   # baseline, PSNR chart
    assert f"SSIM (identity, evaluate_phone.json) {result['identity']['ssim']:.4g}" in text   # and on the SSIM chart
    metrics = (root / "runs" / "demo" / "metrics.csv").read_text().splitlines()
    assert f"{len(metrics) - 1} evaluations; last at iteration {DEMO['train_iters']}" in text
    assert index.tags.count("svg") >= 1 + 3                                # histogram, run charts

    # every page's links and images resolve inside the folder, and every image decodes
    pages = pages_of(out)
    n_ok = sum(r["status"] == "ok" for r in records.values())
    assert len(pages) == 1 + len(records)                                 # index + a page per pair
    srcs = {}
    for page in pages:
        links = parse(page)
        for ref in links.hrefs + links.srcs:
            assert (page.parent / ref).resolve().is_file(), (page.name, ref)
        srcs[page] = [(page.parent / s).resolve() for s in links.srcs]
    for f in {f for v in srcs.values() for f in v}:
        img = cv2.imread(str(f))
        assert img is not None and img.size > 0, f
    # index: the samples and the 2 before/after photos (thumb + zoom each); an ok pair: 4 views
    # (thumb + zoom) + the window map over the phone thumb, and a test photo its enhanced photo too
    assert len(srcs[out / "index.html"]) == 2 + 2 * 2
    enhanced = {p.name.removesuffix("_before_after.jpg") for p in (root / "enhanced").glob("*_before_after.jpg")}
    per_pair = {p: len(srcs[p]) for p in pages[1:]}
    expected = {}
    for p in pages[1:]:
        name = p.stem.split("-", 1)[1]
        ok = records[name]["status"] == "ok"
        expected[p] = (9 if ok else 0) + (2 if ok and name in enhanced else 0)
    assert per_pair == expected and sum(v == 11 for v in expected.values()) == 2
    assert sum(parse(p).tags.count("svg") for p in pages[1:]) == n_ok        # a window map per ok pair
    assert "truncated JPEG" in " ".join(parse(out / "pairs" / f"{len(records) - 1:05d}-zz_broken.html").text)


@pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed")
def test_report_renders_in_a_headless_browser(demo, tmp_path):
    root, _, _ = demo
    out = root / "report"
    for page in (out / "index.html", sorted((out / "pairs").glob("*.html"))[0]):
        images, broken = browser_images(page)
        assert images > 0 and broken == 0, (page, images, broken)
        shot = tmp_path / f"{page.stem}.png"
        screenshot(page, shot, (1200, 900))
        img = cv2.imread(str(shot))
        assert img is not None and img.shape[:2] == (900, 1200)
        assert img.std() > 10                                             # not a blank page


def test_ctrl_c_prints_the_resume_command_with_the_users_options(demo, tmp_path, monkeypatch):
    import signal
    from click.testing import CliRunner
    from dpedkit.cli import main
    import dpedkit.train.loop as loop

    def stopped(cfg, log=print, progress=True):       # train saves last.pt and raises this on SIGINT
        raise loop.Interrupted(signal.SIGINT, "SIGINT: stopped after iteration 2")
    monkeypatch.setattr(loop, "train", stopped)
    root = tmp_path / "demo"
    shutil.copytree(demo[0], root)
    args = ["--train-iters", "3", "--batch-size", "4", "--test-patches", "24"]
    r = CliRunner().invoke(main, ["demo", str(root), *args])
    assert r.exit_code == 130, r.output
    assert f"interrupted; finished work is kept. To resume: dpedkit demo {root} {' '.join(args)}" in r.output


def test_the_printed_recipe_is_the_one_trained(demo):
    from dpedkit.demo import DEMO_TV_WEIGHT
    config = json.loads((demo[0] / "runs" / "demo" / "config.json").read_text())
    assert config["w_tv"] == DEMO_TV_WEIGHT == 0 and "total-variation weight 0 " in "; ".join(RECIPE_NOTES)
    assert config["content_loss"] == "none" and config["iters"] == DEMO["train_iters"]


def test_near_identity_passes_the_photo_through():
    import torch
    from dpedkit.model.networks import near_identity
    from dpedkit.model.networks import Generator
    torch.manual_seed(0)
    x = torch.rand(1, 3, 40, 40)
    g = near_identity(Generator())
    with torch.no_grad():
        y = g(x)
    assert (y - x).abs().max() < 0.085                        # tanh(2(x + 0.04) − 1)·0.58 + 0.5: within 0.08 of x
    assert (Generator()(x) - x).abs().mean() > 0.2            # the paper's start: a flat grey, nowhere near
    assert sum(p.requires_grad for p in g.parameters()) == len(list(g.parameters()))
