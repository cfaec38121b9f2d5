"""Exact enhancement in bounded memory: equal to whole-image inference, within its budget."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dpedkit.cli import main
from dpedkit.enhance import planner, strips
from dpedkit.enhance.planner import BudgetError, parse_size, plan
from dpedkit.enhance.strips import Moments, conv_rows, enhance_exact, enhance_strips, output_strip, statistics
from dpedkit.model.inference import generate, prepare, to_image, to_tensor
from dpedkit.model.generator import load_generator
from dpedkit.imageio import read_image, write_image
from dpedkit.model.layers import radius
from dpedkit.model.networks import GENERATOR_STEPS, Generator

OFFICIAL = Path(os.environ.get("DPEDKIT_OFFICIAL") or Path(__file__).resolve().parents[3] / "shared" / "dped_official")
needs_official = pytest.mark.skipif(not (OFFICIAL / "iphone_orig.index").is_file(),
                                    reason="the official DPED checkpoints are not in ../shared/dped_official")

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


def random_generator(seed=0):
    """PyTorch's default initialisation, with the norms' scale and shift spread as trained ones are."""
    torch.manual_seed(seed)
    g = Generator()
    with torch.no_grad():
        for b in g.blocks:
            for n in (b.norm1, b.norm2):
                n.weight.normal_(1, 0.2)
                n.bias.normal_(0, 0.2)
    return prepare(g, CPU)


def strips_output(g, img, rows, cache="ram", cache_dtype=np.float16):
    m = statistics(g, img, CPU, rows, cache=cache, cache_dtype=cache_dtype)
    h = img.shape[0]
    return torch.cat([output_strip(g, img, r0, min(h, r0 + rows), m, CPU) for r0 in range(0, h, rows)], 2)


@pytest.mark.parametrize("rows, cache", [(23, "ram"), (50, "disk")])
def test_strips_equal_the_whole_image(samples, rows, cache):
    g = random_generator()
    img = samples["chelsea"][:111, :133]             # odd sizes: strips end mid-way, last one short
    whole = generate(g, to_tensor(img, CPU))
    got = strips_output(g, img, rows, cache)
    assert got.shape == whole.shape
    err = float((got - whole).abs().max())
    assert err <= 1e-4, err
    # not vacuous: a strip normalised on its own statistics is far off
    alone = generate(g, to_tensor(img[:rows], CPU))
    assert float((alone - whole[:, :, :rows]).abs().max()) > 1e-2


@needs_official
def test_official_model_in_strips_equals_the_whole_image(samples):
    g = prepare(load_generator(OFFICIAL / "iphone_orig")[0], CPU)
    img = samples["astronaut"][::3, ::3]
    whole = generate(g, to_tensor(img, CPU))
    err = float((strips_output(g, img, 40, "disk") - whole).abs().max())
    assert err <= 1e-4, err
    assert np.abs(enhance_strips(g, img, CPU, 40).astype(int) - to_image(whole)).max() <= 1   # uint8 rounding


def test_fp16_overflow_falls_back_to_a_float32_cache(samples, monkeypatch):
    g = random_generator(1)
    with torch.no_grad():
        g.head.weight.mul_(1e6)                      # activations far beyond float16's 65504
    img = samples["coffee"][:90, :120]
    whole = generate(g, to_tensor(img, CPU))
    with pytest.raises(strips._Overflow):
        statistics(g, img, CPU, 30, cache_dtype=np.float16)
    calls = []
    real = strips.statistics
    monkeypatch.setattr(strips, "statistics", lambda *a: calls.append(a[7]) or real(*a))
    got = enhance_strips(g, img, CPU, 30)
    assert calls == [np.float16, np.float32]
    assert np.abs(got.astype(int) - to_image(whole)).max() <= 1


def test_moments_match_float64_and_conv_rows_match_the_whole_convolution():
    torch.manual_seed(0)
    x = (torch.randn(1, 8, 50, 40, dtype=torch.float64) * 3 + 100).float()   # a large mean: no cancellation
    m = Moments()
    for r0 in range(0, 50, 7):
        m.add(x[:, :, r0:r0 + 7])
    var, mean = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    assert torch.allclose(m.mean, mean, rtol=1e-9) and torch.allclose(m.m2 / m.n, var, rtol=1e-6)
    conv = torch.nn.Conv2d(8, 4, 3, padding=1)
    full = conv(x)
    for a, b in [(0, 10), (5, 20), (40, 50), (0, 50)]:
        y, ya, yb = conv_rows(conv, x[:, :, a:b], a, b, 50)
        assert (ya, yb) == (a + (a > 0), b - (b < 50))
        torch.testing.assert_close(y, full[:, :, ya:yb], atol=1e-5, rtol=0)


def test_plan_and_sizes():
    assert parse_size("4G") == 4 * 2**30 and parse_size("512M") == 512 * 2**20
    assert parse_size("1.5GiB") == int(1.5 * 2**30) and parse_size("2gb") == 2 * 2**30 and parse_size(1000) == 1000
    with pytest.raises(ValueError, match="not a memory size"):
        parse_size("four gigs")
    big = 2**40
    assert plan(3000, 4000, big, base=0).mode == "whole"
    p = plan(6000, 8000, 4 * 2**30, base=300 << 20)              # 48 MP in 4 GiB: strips, cache on disk
    assert p.mode == "strips" and p.cache == "disk" and 2 * radius(GENERATOR_STEPS) <= p.rows < 6000
    assert p.estimate <= 4 * 2**30
    q = plan(600, 800, 500 << 20, base=100 << 20)                 # small: the cache fits in RAM
    assert q.mode == "strips" and q.cache == "ram" and q.estimate <= 500 << 20
    with pytest.raises(BudgetError, match="at least"):
        plan(6000, 8000, 400 << 20, base=300 << 20)


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from dpedkit.enhance.planner import plan, resident_bytes
    from dpedkit.enhance.strips import enhance_exact
    from dpedkit.model.inference import bytes_needed, prepare
    from dpedkit.model.networks import Generator
    torch.set_num_threads(1)
    h, w, extra = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    g = prepare(Generator(), torch.device("cpu"))
    enhance_exact(g, img[:40, :40], torch.device("cpu"))     # warm-up: oneDNN's kernels are loaded on first use

    def high_water_mark():  # peak resident memory since the last reset (Linux: VmHWM)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM to the current resident size
        f.write("5")
    base = resident_bytes()       # what the planner sees too, so budget - base is the room it plans in
    budget = base + extra
    p = plan(h, w, budget)
    enhance_exact(g, img, torch.device("cpu"), max_bytes=budget)
    peak = high_water_mark()
    print(json.dumps({"mode": p.mode, "rows": p.rows, "budget": budget, "base": base, "peak": peak,
                      "whole": base + bytes_needed(h, w)}))
""")


def test_peak_memory_stays_within_the_budget():
    """ru_maxrss of a fresh process, against a budget a whole-image run would exceed."""
    h, w, extra = 480, 640, 160 << 20
    p = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(h), str(w), str(extra)], capture_output=True,
                       text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin"},
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["mode"] == "strips" and r["rows"] < h
    assert r["whole"] > r["budget"] + (60 << 20)                 # whole-image would not fit
    assert r["peak"] <= r["budget"], (r["peak"] - r["base"]) / 2**20


def test_cli_max_memory_enhances_in_strips_and_refuses_an_impossible_budget(tmp_path, samples):
    g = random_generator(2)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"generator": g.state_dict(), "iteration": 3}, run / "checkpoints" / "last.pt")
    img = cv2.resize(samples["coffee"], (150, 600), interpolation=cv2.INTER_AREA)   # tall: thin strips are cheap
    write_image(tmp_path / "in" / "a.png", img)
    base = planner.resident_bytes()
    r = CliRunner().invoke(main, ["enhance", str(run), str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                  "--format", "png", "--max-memory", str(base + (120 << 20))])
    assert r.exit_code == 0, r.output
    assert "exact in strips" in r.output and "pass 9/9" in r.output
    whole = to_image(generate(prepare(load_generator(run)[0], CPU), to_tensor(img, CPU)))
    assert np.abs(read_image(tmp_path / "out" / "a.png").astype(int) - whole).max() <= 1
    r = CliRunner().invoke(main, ["enhance", str(run), str(tmp_path / "in"), "-o", str(tmp_path / "out2"),
                                  "--max-memory", "1M"])
    assert r.exit_code == 1 and "needs at least" in r.output and "--max-memory" in r.output
    with pytest.raises(BudgetError):
        enhance_exact(g, img, CPU, max_bytes=1 << 20)
