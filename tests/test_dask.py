"""align and patches on a Dask cluster (a LocalCluster on loopback) give the same outputs as
a local run, and a worker killed mid-run loses no pair."""
import os
import signal
import threading
import time

import pytest
from click.testing import CliRunner

from dpedkit.cli import main
from dpedkit.layout import read_records

distributed = pytest.importorskip("distributed")

NAMES = [("coffee", 0), ("rocket", 1), ("chelsea", 2), ("astronaut", 3), ("motorcycle", 4), ("coffee", 5),
         ("rocket", 6), ("chelsea", 7)]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def raw(tmp_path_factory, samples):
    from tests.conftest import upscaled
    import numpy as np
    from dpedkit.imageio import write_image
    from dpedkit.testing.synth import synthetic_pair
    raw = tmp_path_factory.mktemp("dask") / "raw"
    for i, (sample, seed) in enumerate(NAMES):
        dslr = upscaled(samples[sample], 1.2)
        phone, _ = synthetic_pair(dslr, 0.6, np.random.default_rng(seed))
        write_image(raw / "phone" / f"p{i}.jpg", phone)
        write_image(raw / "dslr" / f"p{i}.jpg", dslr)
    return raw


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("manifest.jsonl", "patches_report.json", ".dpedkit.lock")
            and ".dpedkit" not in p.parts}    # staging: per-photo results with timings


def without_timings(records):
    return {n: {k: v for k, v in r.items() if k != "elapsed_s"} for n, r in records.items()}


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def test_dask_run_equals_the_local_run(raw, cluster, tmp_path, monkeypatch):
    run("align", raw, tmp_path / "local", "--jobs", "1")
    out = run("align", raw, tmp_path / "dask", "--dask-scheduler", cluster.scheduler_address)
    assert f"on the Dask cluster at {cluster.scheduler_address}" in out
    assert without_timings(read_records(tmp_path / "dask" / "manifest.jsonl")) == \
        without_timings(read_records(tmp_path / "local" / "manifest.jsonl"))
    assert files(tmp_path / "dask") == files(tmp_path / "local")
    run("patches", tmp_path / "local", tmp_path / "ds_local", "--jobs", "1", "--test-photos", "2")
    monkeypatch.setenv("DPEDKIT_DASK_SCHEDULER", cluster.scheduler_address)   # the environment variable works too
    run("patches", tmp_path / "dask", tmp_path / "ds_dask", "--test-photos", "2")
    assert files(tmp_path / "ds_dask") == files(tmp_path / "ds_local")
    ran = " ".join(cluster.scheduler.task_prefixes)       # the cluster did the work, not this process
    assert "batch_of_align_one" in ran and "batch_of_cut_photo" in ran


def test_a_worker_killed_mid_run_loses_no_pair(raw, cluster, tmp_path):
    out = tmp_path / "aligned"
    client = distributed.Client(cluster.scheduler_address)
    victim = next(iter(client.run(os.getpid).values()))
    killed = {}

    def kill_after_first_record():
        while not (out / "manifest.jsonl").is_file() or not (out / "manifest.jsonl").read_text().strip():
            time.sleep(0.005)
        killed["records"] = len((out / "manifest.jsonl").read_text().splitlines())
        os.kill(victim, signal.SIGKILL)
    t = threading.Thread(target=kill_after_first_record, daemon=True)
    t.start()
    r = CliRunner().invoke(main, ["align", str(raw), str(out), "--dask-scheduler", cluster.scheduler_address])
    t.join(timeout=30)
    assert killed["records"] < len(NAMES)                    # the kill really came mid-run
    if r.exit_code != 0:                                      # the cluster gave up: the re-run finishes
        assert r.exit_code == 3 and "re-run" in r.output, r.output
        r = CliRunner().invoke(main, ["align", str(raw), str(out), "--dask-scheduler", cluster.scheduler_address])
    assert r.exit_code == 0, r.output
    recs = read_records(out / "manifest.jsonl")
    assert len(recs) == len(NAMES) and all(rec["status"] == "ok" for rec in recs.values())
    client.wait_for_workers(2, timeout=60)                    # the nanny restarts the killed worker
    client.close()


def test_an_unreachable_scheduler_is_a_clear_error(raw, tmp_path, monkeypatch):
    monkeypatch.setattr("dpedkit.parallel.CONNECT_TIMEOUT_S", 2)
    r = CliRunner().invoke(main, ["align", str(raw), str(tmp_path / "a"), "--dask-scheduler", "tcp://127.0.0.1:9"])
    assert r.exit_code == 3 and "cannot reach the Dask scheduler" in r.output and "Traceback" not in r.output
