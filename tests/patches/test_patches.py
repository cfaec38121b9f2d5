"""dpedkit patches: the search recovers known local shifts and rotations, rejects what it
must, and writes a dataset that the original DPED loader reads."""
import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from dpedkit.cli import main
from dpedkit.imageio import read_image
from dpedkit.patches.stage import PatchOptions, assign_splits, cut_patches
from dpedkit.patches.search import (SearchOptions, WindowMatch, extract_patch_pair, extract_phone_patch,
                                    match_windows, ncc)
from tests.helpers import dped_loader, flatten_half, make_aligned, scramble_half, upscaled, warp_with_field

ANGLE = 0.4


@pytest.fixture(scope="module")
def warped(samples):
    dslr = upscaled(samples["astronaut"], 1.6)
    phone, M = warp_with_field(dslr)
    return dslr, phone, M


def test_search_recovers_known_shifts_and_rotation(warped):
    dslr, phone, M = warped
    o = SearchOptions(max_angle=1.0, angle_step=0.5)
    matches = [m for m in match_windows(dslr, phone, o) if m.status == "ok"]
    assert len(matches) >= 40
    errs = []
    for m in matches:
        c = np.array([m.x + 49.5, m.y + 49.5])
        truth = M(c) - c
        errs.append((abs(m.dx - truth[0]), abs(m.dy - truth[1]), abs(m.angle - ANGLE)))
    errs = np.array(errs)
    # within one grid step (1 px, 0.5°) for nearly all windows, and far better on average
    # (a fraction of a degree moves a 100 px window's edges by less than a pixel, so the
    # angle is the least certain of the three)
    assert (errs[:, :2] <= 1.0).all(axis=1).mean() > 0.95
    assert (errs[:, 2] <= 0.5 + 1e-9).mean() > 0.85
    assert errs[:, :2].mean() < 0.3


def test_reproduced_patch_matches_its_score(warped):
    dslr, phone, _ = warped
    m = next(m for m in match_windows(dslr, phone) if m.status == "ok" and m.angle != 0)
    p = extract_phone_patch(phone, m.x, m.y, m.dx, m.dy, m.angle, 100)
    score = ncc(dslr[m.y:m.y + 100, m.x:m.x + 100], p)
    assert score > 0.9
    # the same window without the found shift and rotation correlates worse
    assert ncc(dslr[m.y:m.y + 100, m.x:m.x + 100], phone[m.y:m.y + 100, m.x:m.x + 100]) < score


def test_ncc_rejects_flat_windows_and_ignores_gain():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (50, 50, 3)).astype(np.uint8)
    b = np.clip(a.astype(float) * 0.5 + 40, 0, 255).astype(np.uint8)
    assert ncc(a, b) > 0.99
    assert np.isnan(ncc(a, np.full_like(a, 77)))
    assert np.isnan(ncc(np.full_like(a, 77), np.full_like(a, 77)))




NAMES = {"a": "astronaut", "b": "coffee", "c": "rocket", "d": "chelsea", "e": "motorcycle", "f": "immunohistochemistry"}


def test_dataset_layout_split_and_records(tmp_path, samples):
    aligned, out = tmp_path / "aligned", tmp_path / "dataset"
    make_aligned(aligned, samples, NAMES, broken={"a": scramble_half, "b": flatten_half})
    s = cut_patches(aligned, out, PatchOptions(test_photos=2, jobs=2, progress=False), log=lambda *_: None)
    root = out / "phone"
    report = {p["name"]: p for p in json.loads((root / "patches_report.json").read_text())["photos"]}
    assert set(report) == set(NAMES)
    # the scrambled half and the flat half are rejected
    ys_a = [int(r["y"]) for r in csv.DictReader(open(root / "patches.csv")) if r["name"] == "a"]
    assert ys_a and min(ys_a) >= phone_half(aligned / "phone" / "a.png") - 100
    rejected_a = sum(report["a"][k] for k in ("low_ncc", "at_search_limit", "inconsistent", "asymmetric"))
    assert rejected_a >= report["a"]["accepted"] - 2
    assert report["b"]["flat"] > 0
    xs_b = [int(r["x"]) for r in csv.DictReader(open(root / "patches.csv")) if r["name"] == "b"]
    assert min(xs_b) >= read_image(aligned / "dslr" / "b.png").shape[1] // 2 - 100
    # split by photo, indices 0..N-1 per split, the original loader reads it
    rows = list(csv.DictReader(open(root / "patches.csv")))
    by_split = {sp: [r for r in rows if r["split"] == sp] for sp in ("train", "test")}
    assert not {r["name"] for r in by_split["train"]} & {r["name"] for r in by_split["test"]}
    assert len({r["name"] for r in by_split["test"]}) == 2
    for sp, rs in by_split.items():
        assert [int(r["index"]) for r in rs] == list(range(len(rs))) == list(range(s.patches[sp]))
        xs, ys = dped_loader(root, "phone", "canon", sp)
        assert xs.shape == ys.shape == (len(rs), 100, 100, 3)
    assert sorted(p.stem for p in (root / "test_data" / "full_size_test_images").iterdir()) == \
        sorted({r["name"] for r in by_split["test"]})
    # every written pair re-read from disk matches its record
    for r in rows[::7]:
        base = root / ("training_data" if r["split"] == "train" else "test_data/patches")
        p, d = read_image(base / "phone" / f"{r['index']}.jpg"), read_image(base / "canon" / f"{r['index']}.jpg")
        assert float(r["ncc"]) >= 0.9
        assert abs(ncc(d, p) - float(r["ncc"])) < 0.02
        src = read_image(aligned / "phone" / f"{r['name']}.png")
        dsrc = read_image(aligned / "dslr" / f"{r['name']}.png")
        w = WindowMatch(int(r["x"]), int(r["y"]), float(r["dx"]), float(r["dy"]), float(r["angle"]), model=r["model"])
        d_again, p_again = extract_patch_pair(dsrc, src, w, 100)
        assert psnr(p_again, p) > 30 and psnr(d_again, d) > 30  # JPEG loss only: the row reproduces the pair
        if r["model"] == "shift":   # the phone side is an exact crop next to the DSLR window
            ox, oy = round(float(r["dx"])), round(float(r["dy"]))
            x, y = int(r["x"]) + ox, int(r["y"]) + oy
            best = max(((oy, ox) for oy in range(-2, 3) for ox in range(-2, 3) if min(y + oy, x + ox) >= 0),
                       key=lambda o: psnr(src[y + o[0]:y + o[0] + 100, x + o[1]:x + o[1] + 100], p))
            assert best == (0, 0)


def psnr(a, b):
    return 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b) ** 2))


def phone_half(path):
    return read_image(path).shape[0] // 2


def test_split_is_stable_when_photos_are_added():
    names = [f"IMG_{i:04d}" for i in range(300)]
    s1 = assign_splits(names, seed=3, test_fraction=0.2, test_photos=None)
    s2 = assign_splits(names + [f"NEW_{i}" for i in range(100)], seed=3, test_fraction=0.2, test_photos=None)
    assert all(s1[n] == s2[n] for n in names)
    assert 0.12 < sum(v == "test" for v in s1.values()) / len(names) < 0.28
    assert assign_splits(names, seed=4, test_fraction=0.2, test_photos=None) != s1


def test_rerun_resumes_and_bad_files_fail_cleanly(tmp_path, samples):
    aligned, out = tmp_path / "aligned", tmp_path / "dataset"
    make_aligned(aligned, samples, {"a": "astronaut", "b": "coffee", "c": "rocket"})
    opts = PatchOptions(test_photos=1, jobs=1, progress=False)
    first = cut_patches(aligned, out, opts, log=lambda *_: None)
    csv1 = (out / "phone" / "patches.csv").read_text()
    second = cut_patches(aligned, out, opts, log=lambda *_: None)
    assert second.skipped == 3 and (out / "phone" / "patches.csv").read_text() == csv1
    (aligned / "dslr" / "c.png").write_bytes(b"\x89PNG broken")
    third = cut_patches(aligned, out, opts, log=lambda *_: None)
    assert third.skipped == 2 and [n for n, _, _ in third.failures] == ["c"]
    assert "unreadable" in third.failures[0][2]
    assert third.patches["train"] + third.patches.get("test", 0) < first.patches["train"] + first.patches.get("test", 0)
    r = CliRunner().invoke(main, ["patches", str(aligned), str(out), "-j", "1", "--test-photos", "1"])
    assert r.exit_code == 1 and "failed c" in r.output
    row = next(line.split() for line in r.output.splitlines() if line.strip().startswith("a "))
    rep = {p["name"]: p for p in json.loads((out / "phone" / "patches_report.json").read_text())["photos"]}
    assert [int(row[2]), int(row[3])] == [rep["a"]["windows"], rep["a"]["accepted"]]
    assert float(row[4]) == pytest.approx(rep["a"]["median_ncc"], abs=5e-4)
    assert not list(out.rglob(".dpedkit-tmp-*"))


def test_patches_from_an_aligned_folder_with_no_usable_pair_is_a_failure_with_a_reason(tmp_path):
    from click.testing import CliRunner
    from dpedkit.cli import main
    from dpedkit.layout import Cameras, Journal
    aligned = tmp_path / "aligned"
    for cam in ("phone", "dslr"):
        (aligned / cam).mkdir(parents=True)
    Cameras("phone", "dslr").write(aligned)
    j = Journal(aligned / "manifest.jsonl")
    j.append({"name": "a", "status": "failed", "reason": "too few SIFT keypoints"})
    j.close()
    r = CliRunner().invoke(main, ["patches", str(aligned), str(tmp_path / "ds")])
    assert r.exit_code == 1 and "0 photos" in r.output and "nothing to do: no aligned pair with status ok" in r.output, \
        r.output
