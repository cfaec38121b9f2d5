"""Nothing lost: SIGKILL at random points, full disks, locked folders, changing inputs, bad
input and fuzzed readers, across align → patches → train. Counts go to the ledger printed at
the end of the test run. DPEDKIT_FUZZ_EXAMPLES raises the fuzzing budget (default 100)."""
import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dpedkit.cli import main
from dpedkit.fs import TMP_PREFIX, exclusive
from dpedkit.imageio import ImageReadError, read_image, write_image
from dpedkit.layout import read_records

FUZZ = int(os.environ.get("DPEDKIT_FUZZ_EXAMPLES", "100"))
SEEDS = (11, 12, 13)
SAMPLES = ("coffee", "rocket", "chelsea", "astronaut", "motorcycle", "immunohistochemistry")


def run_cli(*args, kill_after=None, kill_on=None):
    """``python -m dpedkit ARGS`` in a fresh process group; SIGKILL to the whole group (the run
    and its pool workers, as when a machine or a job dies) after ``kill_after`` s, or
    ``kill_on = (text, delay)``: ``delay`` s after a line of output containing ``text``."""
    p = subprocess.Popen([sys.executable, "-m", "dpedkit", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if kill_on is not None:
        text, delay = kill_on
        seen = []
        for line in p.stdout:
            seen.append(line)
            if text in line:
                time.sleep(delay)
                os.killpg(p.pid, signal.SIGKILL)
                break
        rest, _ = p.communicate(timeout=60)
        return p.returncode, "".join(seen) + rest
    if kill_after is None:
        out, _ = p.communicate(timeout=600)
        return p.returncode, out
    try:
        out, _ = p.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
    return p.returncode, out


def no_temps(root: Path) -> bool:
    return not [p for p in root.rglob(f"{TMP_PREFIX}*")]


def tree(root: Path, skip=()) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and ".dpedkit" not in p.relative_to(root).parts[:-1]}


def without_timings(records: dict) -> dict:
    return {n: {k: v for k, v in r.items() if k != "elapsed_s"} for n, r in records.items()}


@pytest.fixture(scope="module")
def raw6(tmp_path_factory):
    from tests.conftest import upscaled
    from dpedkit.testing.synth import sample_images, synthetic_pair
    raw = tmp_path_factory.mktemp("rel") / "raw"
    imgs = sample_images()
    for i, name in enumerate(SAMPLES):
        dslr = upscaled(imgs[name], 1.2)
        phone, _ = synthetic_pair(dslr, 0.6, np.random.default_rng(i))
        write_image(raw / "phone" / f"{name}.jpg", phone)
        write_image(raw / "dslr" / f"{name}.jpg", dslr)
    return raw


@pytest.fixture(scope="module")
def reference(raw6):
    """Uninterrupted align and patches runs, and how long each took."""
    root = raw6.parent
    t0 = time.perf_counter()
    assert run_cli("align", raw6, root / "ref_aligned", "--jobs", "1")[0] == 0
    t_align = time.perf_counter() - t0
    t0 = time.perf_counter()
    rc, out = run_cli("patches", root / "ref_aligned", root / "ref_dataset", "--jobs", "1", "--test-photos", "2")
    assert rc == 0, out
    return {"aligned": root / "ref_aligned", "dataset": root / "ref_dataset", "t_align": t_align,
            "t_patches": time.perf_counter() - t0}


@pytest.mark.parametrize("seed", SEEDS)
def test_align_killed_at_random_resumes_to_the_same_outputs(raw6, reference, tmp_path, seed, ledger):
    rng = np.random.default_rng(seed)
    out = tmp_path / "aligned"
    rc, _ = run_cli("align", raw6, out, "--jobs", str(1 + seed % 2), kill_after=rng.uniform(0.3, 0.9) * reference["t_align"])
    ledger["runs killed mid-way"] += rc == -signal.SIGKILL
    finished = {n for n, r in read_records(out / "manifest.jsonl").items()
                if r["status"] == "ok" and (out / "phone" / f"{n}.png").is_file()}
    rc, log = run_cli("align", raw6, out, "--jobs", "1")
    assert rc == 0, log
    assert f"({len(finished)} already done, skipped)" in log          # finished work is not redone
    ref_records = read_records(reference["aligned"] / "manifest.jsonl")
    assert without_timings(read_records(out / "manifest.jsonl")) == without_timings(ref_records)
    got = tree(out, skip=("manifest.jsonl", ".dpedkit.lock"))
    assert got == tree(reference["aligned"], skip=("manifest.jsonl", ".dpedkit.lock"))
    assert no_temps(out)
    ledger["records compared after a resume"] += len(ref_records)
    ledger["files compared byte for byte"] += len(got)


def patches_report_without_timings(root: Path) -> dict:
    rep = json.loads((root / "phone" / "patches_report.json").read_text())
    for p in rep["photos"]:
        p.pop("elapsed_s", None)
    return rep


@pytest.mark.parametrize("seed", SEEDS)
def test_patches_killed_at_random_resumes_to_the_same_dataset(reference, tmp_path, seed, ledger):
    rng = np.random.default_rng(seed)
    out = tmp_path / "dataset"
    args = ("patches", reference["aligned"], out, "--jobs", "1", "--test-photos", "2")
    rc, _ = run_cli(*args, kill_after=rng.uniform(0.3, 0.9) * reference["t_patches"])
    ledger["runs killed mid-way"] += rc == -signal.SIGKILL
    staged = out / "phone" / ".dpedkit"
    finished = len(list(staged.glob("*/result.json"))) if staged.is_dir() else 0
    rc, log = run_cli(*args)
    assert rc == 0, log
    assert f"({finished} already done)" in log
    skip = ("patches_report.json", ".dpedkit.lock")
    got = tree(out, skip=skip)
    assert got == tree(reference["dataset"], skip=skip)   # every patch byte-identical
    assert patches_report_without_timings(out) == patches_report_without_timings(reference["dataset"])
    assert no_temps(out)
    ledger["files compared byte for byte"] += len(got)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, samples):
    from tests.helpers import make_dataset
    return make_dataset(tmp_path_factory.mktemp("tiny"), samples, n_train=24, n_test=8)


TRAIN_ARGS = ("--phone", "p", "--dslr", "d", "--content-loss", "none", "--iters", "6", "--eval-every", "2",
              "--batch-size", "2", "--eval-patches", "4", "--device", "cpu")


@pytest.fixture(scope="module")
def train_reference(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("trainref") / "run"
    rc, out = run_cli("train", tiny_data, "--out", run, *TRAIN_ARGS)
    assert rc == 0, out
    return run


def metric_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.mark.parametrize("seed", SEEDS)
def test_training_killed_at_random_resumes_to_the_same_losses(tiny_data, train_reference, tmp_path, seed, ledger):
    ref_run = train_reference
    rng = np.random.default_rng(seed)
    run = tmp_path / "run"
    # killed at a random moment after a random evaluation (iterations 2 or 4 of 6): while
    # training, saving a checkpoint or writing metrics.csv
    at = 2 * int(rng.integers(1, 3))
    rc, _ = run_cli("train", tiny_data, "--out", run, *TRAIN_ARGS, kill_on=(f"iter {at}: ", rng.uniform(0, 0.4)))
    ledger["runs killed mid-way"] += rc == -signal.SIGKILL
    last = run / "checkpoints" / "last.pt"
    done = torch.load(last, weights_only=True)["iteration"] if last.exists() else None
    rc, log = run_cli("train", tiny_data, "--out", run, *TRAIN_ARGS, "--resume")
    assert rc == 0, log
    if done is not None:
        assert f"resumed at iteration {done}" in log                   # finished iterations are not redone
    rows = metric_rows(run)
    assert rows == metric_rows(ref_run)                                  # losses equal, exactly, on a CPU
    ledger["metric rows compared after a resume"] += len(rows)
    g_ref = torch.load(ref_run / "checkpoints" / "last.pt", weights_only=True)["generator"]
    g = torch.load(last, weights_only=True)["generator"]
    assert g.keys() == g_ref.keys() and all(torch.equal(g[k], g_ref[k]) for k in g_ref)
    assert no_temps(run)
    ledger["tensors compared after a resume"] += len(g_ref)


def test_a_second_run_on_the_same_folder_is_refused(raw6, tmp_path, ledger):
    out = tmp_path / "aligned"
    with exclusive(out, "dpedkit align (another terminal)"):
        r = CliRunner().invoke(main, ["align", str(raw6), str(out), "--jobs", "1"])
    assert r.exit_code == 3 and "in use by another dpedkit run" in r.output and "another terminal" in r.output
    ledger["runs refused by the lock"] += r.exit_code == 3
    assert not (out / "manifest.jsonl").exists()
    r = CliRunner().invoke(main, ["align", str(raw6), str(out), "--jobs", "1"])   # the lock died with its holder
    assert r.exit_code == 0, r.output


def test_disk_full_stops_cleanly_and_the_rerun_finishes(raw6, reference, tmp_path, monkeypatch, ledger):
    from dpedkit import fs
    real_fdopen = os.fdopen
    budget = {"bytes": 1_500_000, "refused": 0}

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            budget["bytes"] -= len(data)
            if budget["bytes"] < 0:
                budget["refused"] += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(fs.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    out = tmp_path / "aligned"
    r = CliRunner().invoke(main, ["align", str(raw6), str(out), "--jobs", "1"])
    assert r.exit_code == 3 and "No space left on device" in r.output, r.output
    assert "Traceback" not in r.output and no_temps(out)
    for n, rec in read_records(out / "manifest.jsonl").items():          # no record claims a missing output
        assert rec["status"] != "ok" or (out / "phone" / f"{n}.png").is_file()
    monkeypatch.setattr(fs.os, "fdopen", real_fdopen)
    assert CliRunner().invoke(main, ["align", str(raw6), str(out), "--jobs", "1"]).exit_code == 0
    assert tree(out, skip=("manifest.jsonl", ".dpedkit.lock")) == tree(reference["aligned"], skip=("manifest.jsonl", ".dpedkit.lock"))
    assert budget["refused"] > 0                                           # the full disk was hit
    ledger["writes refused by a full disk"] += budget["refused"]


def test_unwritable_and_nested_outputs_are_clear_errors(raw6, reference, tmp_path, ledger):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    for cmd in (["align", str(raw6), str(blocker / "out")],
                ["patches", str(reference["aligned"]), str(blocker / "out")],
                ["train", str(reference["dataset"]), "--out", str(blocker / "r"),
                 "--content-loss", "none"]):
        r = CliRunner().invoke(main, cmd)
        assert r.exit_code == 3 and "cannot create the" in r.output and "Traceback" not in r.output, (cmd, r.output)
        ledger["unwritable outputs refused"] += r.exit_code == 3
    r = CliRunner().invoke(main, ["align", str(raw6), str(raw6 / "phone" / "aligned")])
    assert r.exit_code == 2 and "must not lie inside the input folder" in r.output
    r = CliRunner().invoke(main, ["patches", str(reference["aligned"]), str(reference["aligned"] / "dataset")])
    assert r.exit_code == 2 and "must not lie inside the input folder" in r.output
    if os.geteuid() != 0:                                                  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        r = CliRunner().invoke(main, ["align", str(raw6), str(ro / "out")])
        assert r.exit_code == 3 and "Permission denied" in r.output


def test_changed_inputs_redo_exactly_the_affected_work(tmp_path, make_pair_files, ledger):
    raw, aligned, dataset = tmp_path / "raw", tmp_path / "aligned", tmp_path / "dataset"
    for i, name in enumerate(("a", "b", "c", "d", "e")):
        make_pair_files(raw, name, sample=SAMPLES[i], seed=i)
    runner = CliRunner()
    assert runner.invoke(main, ["align", str(raw), str(aligned), "--jobs", "1"]).exit_code == 0
    assert runner.invoke(main, ["patches", str(aligned), str(dataset), "--jobs", "1", "--test-fraction", "0.4"]).exit_code == 0

    def splits():
        with open(dataset / "phone" / "patches.csv") as f:
            return {r["name"]: r["split"] for r in csv.DictReader(f)}
    before, records_before = splits(), read_records(aligned / "manifest.jsonl")
    make_pair_files(raw, "b", sample="astronaut", seed=9)                  # replaced
    make_pair_files(raw, "f", sample="rocket", seed=7)                      # added
    (raw / "phone" / "e.jpg").unlink()                                      # deleted, both photos
    (raw / "dslr" / "e.jpg").unlink()
    r = runner.invoke(main, ["align", str(raw), str(aligned), "--jobs", "1"])
    assert r.exit_code == 0 and "5 pairs: 5 ok" in r.output and "(3 already done, skipped)" in r.output, r.output
    records_after = read_records(aligned / "manifest.jsonl")
    assert set(records_after) == {"a", "b", "c", "d", "f"}
    redone = {n for n, rec in records_after.items() if rec != records_before.get(n)}
    assert redone == {"b", "f"}
    ledger["changed inputs redone"] += len(redone)
    r = runner.invoke(main, ["patches", str(aligned), str(dataset), "--jobs", "1", "--test-fraction", "0.4"])
    assert r.exit_code == 0 and "(3 already done)" in r.output, r.output
    after = splits()
    assert all(after[n] == before[n] for n in ("a", "c", "d") if n in before and n in after)
    assert "e" not in after


def bomb_png(path: Path, side: int = 60000):
    """A valid PNG header declaring side×side pixels, with almost no data."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
                     + chunk(b"IEND", b""))


def test_bad_input_corpus_gets_reasons_not_tracebacks(tmp_path, make_pair_files, samples, ledger):
    raw = tmp_path / "raw"
    make_pair_files(raw, "good")
    weird = "a b;$(touch x) 'é"                                              # spaces, unicode, shell metacharacters
    make_pair_files(raw, weird, sample="rocket", seed=3)
    for cam in ("phone", "dslr"):
        bomb_png(raw / cam / "bomb.png")
        Image.fromarray(samples["coffee"][:1, :1]).save(raw / cam / "tiny.png")
        Image.fromarray(samples["coffee"][:60, :80]).save(raw / cam / "small.png")
        (raw / cam / "zero.jpg").write_bytes(b"")
        (raw / cam / "text.jpg").write_text("not an image")
        (raw / cam / "loop.jpg").symlink_to(raw / cam / "loop.jpg")
    Image.fromarray(samples["chelsea"]).convert("CMYK").save(raw / "phone" / "cmyk.jpg")
    Image.fromarray(samples["chelsea"]).save(raw / "dslr" / "cmyk.jpg")
    assert read_image(raw / "phone" / "cmyk.jpg").shape == samples["chelsea"].shape
    t0 = time.perf_counter()
    with pytest.raises(ImageReadError):
        read_image(raw / "phone" / "bomb.png")
    assert time.perf_counter() - t0 < 5                                     # refused, not decoded
    r = CliRunner().invoke(main, ["align", str(raw), str(tmp_path / "aligned"), "--jobs", "1"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    recs = read_records(tmp_path / "aligned" / "manifest.jsonl")
    assert recs["good"]["status"] == "ok" and recs[weird]["status"] == "ok" and recs["cmyk"]["status"] == "ok"
    for name in ("bomb", "tiny", "zero", "text"):
        assert recs[name]["status"] == "failed" and recs[name]["reason"], name
    assert not (tmp_path / "x").exists() and not Path("x").exists()        # nothing was executed
    # patches on the survivors, with a hand-edited manifest full of nonsense
    with open(tmp_path / "aligned" / "manifest.jsonl", "a") as f:
        f.write('{"name": "../../escape", "status": "ok"}\n{"name": "ghost", "status": "ok", "crop": "x"}\n'
                '{"name": 5}\n[1, 2]\nnot json at all\n{"name": "half", "stat')
    r = CliRunner().invoke(main, ["patches", str(tmp_path / "aligned"), str(tmp_path / "ds"), "--jobs", "1",
                                  "--test-photos", "1"])
    assert "Traceback" not in r.output and r.exit_code == 1, r.output
    assert "escape" in r.output and "ghost" in r.output
    assert not (tmp_path / "escape").exists()
    ledger["bad inputs refused with a reason"] += sum(rec["status"] != "ok" and bool(rec["reason"]) for rec in recs.values())


@settings(max_examples=FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(st.binary(max_size=80), st.builds(
    lambda d: json.dumps(d).encode(), st.dictionaries(st.sampled_from(["name", "status", "crop", "x"]),
                                                      st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                                                st.lists(st.integers(), max_size=4))))), max_size=12))
def test_fuzzed_manifest_reader(tmp_path, lines, ledger):
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b"\n".join(lines))
    recs = read_records(path)
    assert all(isinstance(k, str) and isinstance(v, dict) and v["name"] == k for k, v in recs.items())
    ledger["fuzz cases"] += 1


@settings(max_examples=FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                      st.lists(st.tuples(st.sampled_from(["a.jpg", "../x.jpg", "/etc/passwd", "", "b.jpg", "a\x00"]),
                                         st.sampled_from(["a.jpg", "..", "sub/../../y", "b.jpg"])), max_size=5)
                      .map(lambda rows: ("phone,dslr\n" + "".join(f"{p},{d}\n" for p, d in rows)).encode())))
def test_fuzzed_pairs_csv(tmp_path, body, ledger):
    from dpedkit.align.pairing import PairingError, pair_from_csv
    raw = tmp_path / "raw"
    for cam in ("phone", "dslr"):
        (raw / cam).mkdir(parents=True, exist_ok=True)
        (raw / cam / "a.jpg").write_bytes(b"x")
    (tmp_path / "pairs.csv").write_bytes(body)
    try:
        pairs = pair_from_csv(raw, "phone", "dslr", tmp_path / "pairs.csv")
    except PairingError:
        ledger["fuzz cases"] += 1
        return
    for p in pairs:                                                         # nothing escapes raw/
        for rel in (p.phone, p.dslr):
            if rel is not None and p.reason is None:
                assert (raw / rel).resolve().is_relative_to(raw.resolve())
    ledger["fuzz cases"] += 1


class _RunsCode:
    """A pickle that would run a shell command when unpickled without ``weights_only``."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_bad_checkpoints_and_a_truncated_patch(tiny_data, train_reference, tmp_path, samples, monkeypatch, ledger):
    monkeypatch.chdir(tmp_path)
    ref_run = train_reference
    last = ref_run / "checkpoints" / "last.pt"
    photo = tmp_path / "photo.png"
    Image.fromarray(samples["coffee"][:64, :64]).save(photo)
    (tmp_path / "truncated.pt").write_bytes(last.read_bytes()[:4000])
    torch.save({"generator": {"conv.weight": torch.zeros(3, 3)}, "iteration": 1}, tmp_path / "other_model.pt")
    torch.save({"generator": _RunsCode()}, tmp_path / "code.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("truncated.pt", "other_model.pt", "code.pt", "empty.pt"):
        r = CliRunner().invoke(main, ["enhance", str(tmp_path / name), str(photo), "-o", str(tmp_path / "out")])
        assert r.exit_code == 2 and "Traceback" not in r.output and name in r.output, (name, r.output)
        assert not list((tmp_path / "out").glob("*.png"))
        ledger["bad inputs refused with a reason"] += r.exit_code == 2
    assert not (tmp_path / "pwned").exists()                                # nothing in a checkpoint runs
    run = tmp_path / "run"                                                  # resuming from a truncated checkpoint
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(last.read_bytes()[:4000])
    r = CliRunner().invoke(main, ["train", str(tiny_data), "--out", str(run), *TRAIN_ARGS, "--resume"])
    assert r.exit_code == 2 and "truncated or foreign" in r.output and "Traceback" not in r.output, r.output
    ledger["bad inputs refused with a reason"] += r.exit_code == 2
    # a truncated training patch (train reads every one): a clear error naming it, not a traceback
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    patch = data / "p" / "training_data" / "p" / "5.jpg"
    patch.write_bytes(patch.read_bytes()[:300])
    r = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "run2"), *TRAIN_ARGS[:-6],
                                  "--iters", "2", "--eval-every", "2", "--eval-patches", "8", "--device", "cpu"])
    assert r.exit_code == 2 and "5.jpg" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "run2" / "checkpoints" / "last.pt").exists()
    ledger["bad inputs refused with a reason"] += r.exit_code == 2


@settings(max_examples=FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10 ** 6), flips=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(1, 255)), max_size=4))
def test_fuzzed_checkpoint_loader(train_reference, tmp_path, cut, flips, ledger):
    from dpedkit.model.generator import load_generator
    from dpedkit.model.checkpoint import CheckpointError
    data = bytearray((train_reference / "checkpoints" / "last.pt").read_bytes())
    data = data[: cut % (len(data) + 1)]
    for at, bits in flips:
        if data:
            data[at % len(data)] ^= bits
    path = tmp_path / "fuzzed.pt"
    path.write_bytes(bytes(data))
    try:
        load_generator(path)        # a flip inside tensor data may still load: that is fine
    except CheckpointError:
        pass
    ledger["fuzz cases"] += 1
