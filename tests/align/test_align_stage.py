"""dpedkit align over a folder: every item gets a status, nothing is lost, re-runs resume."""
import csv
import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dpedkit.align.geometry import corner_error
from dpedkit.align.pairing import pair_by_time, pair_from_csv
from dpedkit.align.stage import AlignRunOptions, align_folder
from dpedkit.cli import main
from dpedkit.imageio import write_image
from dpedkit.layout import LayoutError, read_records, resolve_cameras


def run(raw, out, **kw):
    return align_folder(raw, out, AlignRunOptions(jobs=kw.pop("jobs", 1), progress=False, **kw), log=lambda *_: None)


@pytest.fixture
def messy_raw(tmp_path, make_pair_files, samples):
    raw = tmp_path / "raw"
    truth = {"good": make_pair_files(raw, "good", "coffee"),
             "Upper": make_pair_files(raw, "Upper", "chelsea", stem="upper")}   # case-insensitive stems
    # 16-bit DSLR PNG, grayscale phone JPEG, EXIF-rotated phone JPEG
    truth["deep"] = make_pair_files(raw, "deep", "rocket")
    dslr = cv2.imread(str(raw / "dslr" / "deep.jpg"))
    os.remove(raw / "dslr" / "deep.jpg")
    cv2.imwrite(str(raw / "dslr" / "deep.png"), dslr.astype(np.uint16) * 257)
    truth["gray"] = make_pair_files(raw, "gray", "astronaut")
    g = cv2.imread(str(raw / "phone" / "gray.jpg"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(raw / "phone" / "gray.jpg"), g)
    truth["rotated"] = make_pair_files(raw, "rotated", "motorcycle")
    ph = Image.open(raw / "phone" / "rotated.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    ph.transpose(Image.Transpose.ROTATE_90).save(raw / "phone" / "rotated.jpg", quality=95, exif=exif)
    # broken inputs
    make_pair_files(raw, "truncated", "coffee")
    data = (raw / "dslr" / "truncated.jpg").read_bytes()
    (raw / "dslr" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    make_pair_files(raw, "empty", "coffee")
    (raw / "phone" / "empty.jpg").write_bytes(b"")
    make_pair_files(raw, "notimage", "coffee")
    (raw / "dslr" / "notimage.jpg").write_text("hello")
    write_image(raw / "phone" / "unrelated.jpg", samples["coffee"])
    write_image(raw / "dslr" / "unrelated.jpg", cv2.resize(samples["astronaut"], (800, 800)))
    write_image(raw / "phone" / "flat.jpg", np.full((300, 400, 3), 90, np.uint8))
    write_image(raw / "dslr" / "flat.jpg", np.full((500, 700, 3), 90, np.uint8))
    write_image(raw / "phone" / "lonely phone.jpg", samples["coffee"])
    write_image(raw / "dslr" / "lonely-dslr.jpg", samples["coffee"])
    return raw, truth


EXPECTED = {"good": "ok", "upper": "ok", "deep": "ok", "gray": "ok", "rotated": "ok",
            "truncated": "failed", "empty": "failed", "notimage": "failed", "unrelated": "failed",
            "flat": "failed", "lonely phone": "unpaired", "lonely-dslr": "unpaired"}


def test_every_item_gets_a_status_and_a_reason(messy_raw, tmp_path):
    raw, truth = messy_raw
    out = tmp_path / "aligned"
    summary = run(raw, out, jobs=2)
    recs = read_records(out / "manifest.jsonl")
    assert {n: r["status"] for n, r in recs.items()} == EXPECTED
    assert summary.counts == {"ok": 5, "failed": 5, "unpaired": 2} and summary.problems == 7
    for r in recs.values():
        assert (r["status"] == "ok") == (r["reason"] is None)
    assert "empty" in recs["empty"]["reason"] and "phone photo" in recs["empty"]["reason"]
    assert "truncated" in recs["truncated"]["reason"] or "not an image" in recs["truncated"]["reason"]
    assert "keypoint" in recs["flat"]["reason"]
    assert recs["lonely phone"]["dslr"] is None and recs["lonely-dslr"]["phone"] is None
    # the rotated phone photo was read upright; its homography is right in upright coordinates
    for name in ("good", "deep", "gray", "rotated"):
        r = recs[name]
        assert corner_error(np.array(r["homography"]), truth[name], tuple(r["phone_size"])) < 0.5, name
        x, y, w, h = r["crop"]
        a, b = cv2.imread(str(out / "phone" / f"{name}.png")), cv2.imread(str(out / "dslr" / f"{name}.png"))
        assert a.shape == b.shape == (h, w, 3)
    assert not list(out.rglob(".dpedkit-tmp-*"))


def test_rerun_skips_finished_pairs_and_redoes_changed_ones(tmp_path, make_pair_files):
    raw, out = tmp_path / "raw", tmp_path / "aligned"
    for i, s in enumerate(["coffee", "chelsea", "rocket"]):
        make_pair_files(raw, f"p{i}", s)
    assert run(raw, out).counts["ok"] == 3
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "phone").iterdir()}
    again = run(raw, out)
    assert again.skipped == 3 and again.counts["ok"] == 3
    assert stamp == {p.name: p.stat().st_mtime_ns for p in (out / "phone").iterdir()}
    # replace one input, delete one output: exactly those two pairs are redone
    make_pair_files(raw, "p0", "coffee", seed=5)
    (out / "dslr" / "p1.png").unlink()
    third = run(raw, out)
    assert third.skipped == 1 and third.counts["ok"] == 3
    assert (out / "phone" / "p2.png").stat().st_mtime_ns == stamp["p2.png"]
    # changed parameters redo everything
    assert run(raw, out, previews=True).skipped == 0
    assert len(list((out / "previews").iterdir())) == 3


def test_killed_run_resumes_from_its_journal(tmp_path, make_pair_files):
    raw, out = tmp_path / "raw", tmp_path / "aligned"
    for i, s in enumerate(["coffee", "chelsea"]):
        make_pair_files(raw, f"p{i}", s)
    run(raw, out)
    lines = (out / "manifest.jsonl").read_text().splitlines()
    # as if killed while writing the second record and after a temp file was created
    (out / "manifest.jsonl").write_text(lines[0] + "\n" + lines[1][:40])
    (out / "phone" / ".dpedkit-tmp-x.png").write_bytes(b"partial")
    s = run(raw, out)
    assert s.skipped == 1 and s.counts["ok"] == 2
    assert not list(out.rglob(".dpedkit-tmp-*"))
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2


def test_pairing_by_csv_rejects_escaping_paths(tmp_path, make_pair_files):
    raw = tmp_path / "raw"
    make_pair_files(raw, "a", "coffee")
    make_pair_files(raw, "b_dslr", "chelsea", stem="b_phone")
    pairs_csv = tmp_path / "pairs.csv"
    with open(pairs_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["phone", "dslr"], ["b_phone.jpg", "b_dslr.jpg"], ["../../etc/passwd", "a.jpg"], ["x.jpg", "/abs.jpg"]])
    pairs = {p.name: p for p in pair_from_csv(raw, "phone", "dslr", pairs_csv)}
    assert pairs["b_phone"].reason is None and pairs["b_phone"].dslr == "dslr/b_dslr.jpg"
    assert "without '..'" in pairs["csv-line-3"].reason and "without '..'" in pairs["csv-line-4"].reason
    assert pairs["a"].reason.startswith("no DSLR photo") or pairs["a"].reason.startswith("no phone photo")
    out = tmp_path / "aligned"
    s = align_folder(raw, out, AlignRunOptions(pairs_csv=pairs_csv, jobs=1, progress=False), log=lambda *_: None)
    assert s.counts["ok"] == 1 and read_records(out / "manifest.jsonl")["b_phone"]["status"] == "ok"


def _with_time(path, stamp, sub="00"):
    im = Image.open(path)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = stamp
    exif.get_ifd(0x8769)[0x9291] = sub
    im.save(path, quality=95, exif=exif)


def test_pairing_by_capture_time_with_clock_offset(tmp_path, make_pair_files):
    raw = tmp_path / "raw"
    make_pair_files(raw, "DSC_1", "coffee", stem="IMG_9")
    make_pair_files(raw, "DSC_2", "chelsea", stem="IMG_8")
    _with_time(raw / "phone" / "IMG_9.jpg", "2024:05:01 10:00:00", "20")
    _with_time(raw / "phone" / "IMG_8.jpg", "2024:05:01 10:00:05", "00")
    _with_time(raw / "dslr" / "DSC_1.jpg", "2024:05:01 09:59:30", "50")   # DSLR clock 30 s slow
    _with_time(raw / "dslr" / "DSC_2.jpg", "2024:05:01 09:59:35", "10")
    pairs = {p.name: p for p in pair_by_time(raw, "phone", "dslr", max_skew=1.0, clock_offset=30.0)}
    assert pairs["IMG_9"].dslr == "dslr/DSC_1.jpg" and pairs["IMG_8"].dslr == "dslr/DSC_2.jpg"
    unpaired = pair_by_time(raw, "phone", "dslr", max_skew=1.0)
    assert all(p.reason and "within 1 s" in p.reason for p in unpaired)


def test_camera_folders_are_guessed_or_asked_for(tmp_path):
    (tmp_path / "iphone").mkdir()
    (tmp_path / "canon").mkdir()
    assert resolve_cameras(tmp_path, None, None) == ("iphone", "canon")
    (tmp_path / "other").mkdir()
    with pytest.raises(LayoutError, match="--phone NAME --dslr NAME"):
        resolve_cameras(tmp_path, None, None)


def test_cli_exit_codes_and_summary(messy_raw, tmp_path):
    raw, _ = messy_raw
    runner = CliRunner()
    r = runner.invoke(main, ["align", str(raw), str(tmp_path / "a1"), "-j", "1"])
    assert r.exit_code == 1, r.output
    assert "5 ok, 5 failed, 2 unpaired" in r.output
    r = runner.invoke(main, ["align", str(raw), str(tmp_path / "a1"), "-j", "1", "--allow-failures"])
    assert r.exit_code == 0 and "5 already done" in r.output
    r = runner.invoke(main, ["align", str(raw), str(raw / "inside")])
    assert r.exit_code == 2 and "inside the input" in r.output
    (raw / "third").mkdir()
    r = runner.invoke(main, ["align", str(raw), str(tmp_path / "a2")])
    assert r.exit_code == 2 and "--phone NAME" in r.output
    for cmd in (["--help"], ["align", "--help"], ["--version"]):
        r = runner.invoke(main, cmd)
        assert r.exit_code == 0 and r.output.strip()


def test_relative_paths_survive_a_change_of_directory(tmp_path, make_pair_files, monkeypatch):
    """Pooled workers outlive a call and keep their working directory: paths must not depend on it."""
    for d in ("a", "b"):
        make_pair_files(tmp_path / d / "raw", "p1", seed=1)
        make_pair_files(tmp_path / d / "raw", "p2", sample="rocket", seed=2)
    opts = AlignRunOptions(jobs=2, progress=False)
    monkeypatch.chdir(tmp_path / "a")
    assert align_folder("raw", "out", opts, log=lambda *_: None).problems == 0
    monkeypatch.chdir(tmp_path / "b")
    assert align_folder("raw", "out", opts, log=lambda *_: None).problems == 0
    assert (tmp_path / "b" / "out" / "phone" / "p2.png").is_file()
