"""Running long training jobs: stop on a signal and resume bit for bit, re-run the same command,
bounded checkpoint history, best and generator-only files, recipe changes, --config re-runs,
progress lines, TensorBoard. Tiny runs: 20×20 patches (the smallest the discriminator takes), batches of 2, content loss off."""
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dpedkit.cli import main
from dpedkit.model.checkpoint import load_checkpoint
from dpedkit.train.loop import TrainError, Trainer, train
from tests.helpers import make_dataset, tiny_config

ROOT = Path(__file__).resolve().parents[2]
QUIET = dict(log=lambda *_: None, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory, samples):
    return make_dataset(tmp_path_factory.mktemp("ops"), samples, n_train=8, n_test=2, size=20)


def tiny(data, out, **kw):
    return tiny_config(data, out, **{"batch_size": 2, "eval_patches": 2, "iters": 4, "eval_every": 2, **kw})


def rows_without_seconds(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def same_state(a: Path, b: Path) -> bool:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    return all(torch.equal(ca[net][k], cb[net][k]) for net in ("generator", "discriminator") for k in ca[net])


def test_sigterm_saves_the_iteration_and_the_same_command_resumes_bit_for_bit(data, tmp_path):
    ref = tmp_path / "ref"
    train(tiny(data, ref, iters=8, eval_every=4), **QUIET)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dpedkit", "train", str(data), "--phone", "p", "--dslr", "d", "--out", str(run),
           "--content-loss", "none", "--iters", "8", "--eval-every", "4", "--batch-size", "2",
           "--eval-patches", "2", "--device", "cpu", "--keep-checkpoints", "0", "--log-every", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}   # tiny patches: one thread is fastest
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    err = []
    for line in proc.stderr:              # stderr is a pipe: one plain progress line per iteration
        err.append(line)
        if line.startswith("iter 1/8"):
            proc.send_signal(signal.SIGTERM)  # arrives during iteration 2: it is finished, then saved
            break
    out, rest = proc.communicate()
    watchdog.cancel()
    err = "".join(err) + rest
    assert proc.returncode == 128 + signal.SIGTERM, err
    stopped = load_checkpoint(run / "checkpoints" / "last.pt")["iteration"]
    assert 1 <= stopped < 4, err                        # saved between evaluations: nothing since iter 0 lost
    assert f"stopped after iteration {stopped}" in err and "Traceback" not in err
    assert f"dpedkit train --config {run / 'config.json'}" in err
    assert not list(run.rglob(".dpedkit-tmp*")) and not list(run.rglob("*.tmp"))

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resumed at iteration {stopped}" in again.stderr
    assert rows_without_seconds(run) == rows_without_seconds(ref)      # losses since iter 0 included: exact
    assert same_state(run / "checkpoints" / "last.pt", ref / "checkpoints" / "last.pt")
    with open(run / "metrics.csv") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    assert seconds == sorted(seconds)                                  # cumulative over the two processes


def test_history_best_and_generator_files(data, tmp_path):
    from dpedkit.model.generator import load_generator
    run = tmp_path / "run"
    rows = train(tiny(data, run, iters=4, eval_every=1, keep_checkpoints=2), **QUIET)
    ck = run / "checkpoints"
    assert sorted(p.name for p in ck.glob("iter_*.pt")) == ["iter_3.pt", "iter_4.pt"]
    best_row = max(rows, key=lambda r: r["test_psnr"])
    best = load_checkpoint(ck / "best.pt")
    assert best["iteration"] == best_row["iteration"] and best["test_psnr"] == pytest.approx(best_row["test_psnr"])
    assert set(best) >= {"generator", "iteration", "config"} and "discriminator" not in best
    gen = ck / "generator.pt"
    assert gen.stat().st_size < 2_000_000 < (ck / "last.pt").stat().st_size
    g, what = load_generator(gen)                                      # enhance/export take it directly
    last = load_checkpoint(ck / "last.pt")["generator"]
    assert all(torch.equal(g.state_dict()[k], last[k]) for k in last) and "iteration 4" in what
    t = Trainer(tiny(data, tmp_path / "other"), log=lambda *_: None)
    with pytest.raises(TrainError, match="no training state"):
        t.load(gen)


def test_changed_recipe_is_refused_unless_overridden(data, tmp_path):
    run = tmp_path / "run"
    train(tiny(data, run, iters=2), **QUIET)
    first = rows_without_seconds(run)
    with pytest.raises(TrainError) as e:
        train(tiny(data, run, iters=4, lr=1e-3), **QUIET)
    assert "lr: 0.0005 → 0.001" in str(e.value) and "--override" in str(e.value)
    assert rows_without_seconds(run) == first and not (run / "config_changes.jsonl").exists()
    rows = train(tiny(data, run, iters=4, lr=1e-3, override=True), **QUIET)   # more iterations alone: no change
    assert [int(r["iteration"]) for r in rows] == [0, 2, 4]
    change = json.loads((run / "config_changes.jsonl").read_text().splitlines()[0])
    assert change["changes"] == {"lr": [0.0005, 0.001]}
    assert json.loads((run / "config.json").read_text())["lr"] == 1e-3
    assert float(rows[-1]["seconds"]) >= float(rows[1]["seconds"])


def test_config_reruns_the_recorded_recipe(data, tmp_path):
    run = tmp_path / "run"
    train(tiny(data, run, iters=2, w_color=0.7, seed=5), **QUIET)
    # the recorded recipe into a new folder: the same run again
    r = CliRunner().invoke(main, ["train", "--config", str(run / "config.json"), "--out", str(tmp_path / "again")])
    assert r.exit_code == 0, r.output
    assert rows_without_seconds(tmp_path / "again") == rows_without_seconds(run)
    # in its own folder with more iterations: resumed, not restarted
    r = CliRunner().invoke(main, ["train", "--config", str(run / "config.json"), "--iters", "4"])
    assert r.exit_code == 0 and "resumed at iteration 2" in r.output, r.output
    assert [r["iteration"] for r in rows_without_seconds(run)] == ["0", "2", "4"]
    r = CliRunner().invoke(main, ["train", "--iters", "4"])
    assert r.exit_code == 2 and "--config" in r.output


def test_progress_on_a_terminal_and_in_a_log(data, tmp_path, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    tty = Tty()
    from dpedkit.progress import ERASE, Progress
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(Progress, "due", lambda self: True)   # redrawn every 0.5 s: force a draw every iteration
    train(tiny(data, tmp_path / "a", iters=5, eval_every=3), log=lambda m: tty.write(m + "\n"))
    monkeypatch.undo()
    text = tty.getvalue()
    assert "4/5 (80%)" in text and "ETA 0:" in text and "loss G" in text and "[" in text   # click's bar
    for line in ("iter 3: test PSNR", "iter 5: test PSNR"):
        at = text.index(line)
        assert text[:at].endswith(ERASE)          # the progress line was erased first: no run-in
    lines = []
    train(tiny(data, tmp_path / "b", iters=3, eval_every=3, log_every=0.0), log=lines.append)
    plain = [ln for ln in lines if ln.startswith("iter ") and "/" in ln.split()[1]]
    assert [ln.split()[1] for ln in plain] == ["1/3", "2/3"] and all("ETA" in ln for ln in plain)
    assert all("\r" not in ln and "\033" not in ln for ln in lines)


def test_tensorboard_mirrors_metrics_csv(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = tmp_path / "run"
    rows = train(tiny(data, run, iters=2, eval_every=1, tensorboard=True), **QUIET)
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    psnr = [(e.step, e.value) for e in acc.Scalars("test/psnr")]
    assert psnr == [(r["iteration"], pytest.approx(r["test_psnr"], rel=1e-6)) for r in rows]
    assert [e.step for e in acc.Scalars("train/loss_generator")] == [1, 2]
    assert len(acc.Images("samples (phone | enhanced | DSLR)")) == 3


def test_missing_vgg_names_the_files_and_where_they_are_published(data, tmp_path, monkeypatch):
    monkeypatch.delenv("DPEDKIT_VGG", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(TrainError) as e:
        Trainer(tiny(data, tmp_path / "r", content_loss="vgg"), log=lambda *_: None)
    msg = str(e.value)
    for needle in ("imagenet-vgg-verydeep-19.mat", "vgg19-dcbb9e9d.pth", "vlfeat.org/matconvnet",
                   "download.pytorch.org/models", "never downloads", "--content-loss none"):
        assert needle in msg, needle


def test_cli_leaves_the_cuda_only_switches_unset_unless_given(data, monkeypatch):
    """--channels-last/--fused-adam default to None (the trainer turns them on for CUDA only);
    a plain flag would pass False and switch them off on a GPU too."""
    import dpedkit.train.loop as loop
    seen = []
    monkeypatch.setattr(loop, "train", lambda cfg, log=None: seen.append(cfg) or [])
    for extra in ([], ["--channels-last", "--no-fused-adam"]):
        r = CliRunner().invoke(main, ["train", str(data), "--phone", "p", "--dslr", "d", *extra])
        assert r.exit_code == 0, r.output
    assert [(c.channels_last, c.fused_adam) for c in seen] == [(None, None), (True, False)]


def test_interrupt_names_a_resume_command_with_the_options_the_run_started_with(data, tmp_path):
    """The default command is ``--config <out>/config.json``, which holds every option given
    (here --eval-patches 1 and --w-color 0.7); a caller with its own command (the demo) passes
    it, and names its own option in the "nothing to do" hint."""
    from dpedkit.train.config import config_from_json, recorded, resolved
    from dpedkit.train.loop import Interrupted
    run = tmp_path / "run"

    def log(msg):                       # SIGINT during iteration 1: it is finished, then saved
        if msg.startswith("iter 0: test PSNR"):
            os.kill(os.getpid(), signal.SIGINT)
    cfg = tiny(data, run, iters=4, eval_every=4, eval_patches=1, w_color=0.7)
    with pytest.raises(Interrupted) as e:
        train(cfg, log=log, progress=False)
    assert e.value.exit_code == 128 + signal.SIGINT and "stopped after iteration 1" in str(e.value)
    assert e.value.resume_command == f"dpedkit train --config {run / 'config.json'}" in str(e.value)
    # eval_patches 1 included; --model auto recorded as the model it resolved to
    assert recorded(config_from_json(run / "config.json")) == recorded(resolved(cfg))
    with pytest.raises(Interrupted) as e:
        train(tiny(data, tmp_path / "demo", iters=4, eval_every=4), log=log, progress=False,
              resume_command="dpedkit demo D --test-patches 1")
    assert "To resume, run: dpedkit demo D --test-patches 1" in str(e.value)
    lines = []
    train(tiny(data, run, iters=1, eval_every=4, eval_patches=1, w_color=0.7), log=lines.append, progress=False,
          iters_option="--train-iters")
    assert any("nothing to do (raise --train-iters to train further)" in ln for ln in lines), lines
