"""Data-parallel training (DDP, gloo on the CPU, 2 processes) takes the steps one process
takes with the same global batch.

Tolerance: the processes sum their half-batches apart and DDP averages their gradients, so
float32 sums are reassociated (relative differences ~1e-7). Adam turns that into visible
differences only where a gradient is near zero: its first updates are about lr·sign(g), so a
flipped sign moves a weight by up to 2·lr per step. Hence losses after the first steps agree
to 1e-3 relative, and every weight to 2·lr·iterations absolute.
"""
import csv
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from dpedkit.cli import main
from dpedkit.model.checkpoint import load_checkpoint
from dpedkit.train.distributed import Ranks, batch_slice
from dpedkit.train.launch import shutdown_decoding_pool, train_on_processes
from dpedkit.train.loop import TrainError, train
from tests.helpers import make_dataset, tiny_config

LOSSES = ("loss_generator", "loss_color", "loss_texture", "loss_tv", "loss_discriminator")


@pytest.fixture(scope="module")
def data(tmp_path_factory, samples):
    return make_dataset(tmp_path_factory.mktemp("ddp"), samples, n_train=24, n_test=8)


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    train(tiny_config(data, out, iters=4, eval_every=2), log=lambda *_: None, progress=False)
    return out


def rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def assert_same_steps(run, reference, iters=4, lr=5e-4):
    a, b = rows(run), rows(reference)
    assert [r["iteration"] for r in a] == [r["iteration"] for r in b]
    for k in LOSSES:                                        # after the first steps
        assert float(a[1][k]) == pytest.approx(float(b[1][k]), rel=1e-3), k
    ga, gb = load_checkpoint(run)["generator"], load_checkpoint(reference)["generator"]
    assert max(float((ga[k] - gb[k]).abs().max()) for k in ga) <= 2 * lr * iters


def _check_ranks(rank, world, port, cfg, result):
    import torch.distributed as dist
    from dpedkit.train.distributed import ranks_from_env, start
    from dpedkit.train.loop import Trainer
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ranks = ranks_from_env()
    start(ranks, cuda=False)
    t = Trainer(cfg, lambda *_: None, ranks)
    same = []
    for _ in range(3):
        t.step()
        flat = torch.cat([p.detach().flatten() for m in (t.G, t.D) for p in m.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        same.append(all(torch.equal(gathered[0], g) for g in gathered))
    dist.destroy_process_group()
    shutdown_decoding_pool()
    if rank == 0:
        torch.save(same, result)


def test_every_process_holds_the_same_weights_after_every_step(data, tmp_path):
    import torch.multiprocessing as mp
    from dpedkit.train.distributed import _free_port
    result = tmp_path / "same.pt"
    mp.spawn(_check_ranks, args=(2, _free_port(), tiny_config(data, tmp_path / "r"), result), nprocs=2)
    assert torch.load(result, weights_only=True) == [True, True, True]


def test_two_processes_take_the_same_steps_as_one_and_resume_on_any_number(data, single, tmp_path):
    """2 processes then 1 (the CLI's --nproc-per-node, then train), 1 then 2 (train, then
    torchrun): each takes the steps the single process took."""
    args = ["train", str(data), "--phone", "p", "--dslr", "d", "--content-loss", "none", "--iters", "4",
            "--eval-every", "2", "--batch-size", "8", "--eval-patches", "16", "--device", "cpu",
            "--keep-checkpoints", "0"]
    two_then_one = tmp_path / "a"
    res = CliRunner().invoke(main, [*args, "--iters", "2", "--out", str(two_then_one), "--nproc-per-node", "2"])
    assert res.exit_code == 0 and "done: iteration 2" in res.output, res.output
    assert not list(two_then_one.rglob(".dpedkit-tmp*"))
    train(tiny_config(data, two_then_one, iters=4, eval_every=2, resume=True), log=lambda *_: None, progress=False)
    assert_same_steps(two_then_one, single)
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "odd"), "--nproc-per-node", "3"])
    assert res.exit_code == 2 and "does not split evenly over 3 processes" in res.output

    one_then_two = tmp_path / "b"
    train(tiny_config(data, one_then_two, iters=2, eval_every=2), log=lambda *_: None, progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "dpedkit", *args, "--out", str(one_then_two)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("done: iteration 4") == 1                      # rank 0 alone reports
    assert "resumed at iteration 2" in r.stdout + r.stderr
    assert_same_steps(one_then_two, single)
    with pytest.raises(TrainError, match="does not split evenly over 3 processes"):
        train_on_processes(tiny_config(data, tmp_path / "odd2"), 3, quiet=True)


def test_batch_slices_cover_the_batch_once():
    parts = [batch_slice(50, Ranks(r, 5, r)) for r in range(5)]
    assert sum((list(range(50))[p] for p in parts), []) == list(range(50))
    with pytest.raises(ValueError):
        batch_slice(50, Ranks(0, 3, 0))
    with pytest.raises(TrainError):
        train_on_processes(tiny_config("nowhere", "nowhere", batch_size=5), 2)
