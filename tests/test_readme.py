"""Every command in README.md runs: the dpedkit commands on the demo photos, the benches' --help,
and the two set-up commands are the ones CI and the demo use."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dpedkit.cli import main
from dpedkit.demo import make_raw
from dpedkit.export.tflite import missing_packages

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
from tests.helpers import OFFICIAL  # noqa: E402
# the README's commands are for real datasets; on six small photos they run with these
# additions (later options win in click), so that they finish in seconds
SHORTEN = {"train": ["--iters", "2", "--eval-every", "2", "--batch-size", "2", "--eval-patches", "4"],
           "patches": ["--test-photos", "2"], "evaluate": ["--limit", "4"]}


def fenced_commands(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip() and not line.startswith("#")]


def test_setup_commands_are_what_ci_and_the_demo_run():
    cmds = fenced_commands(README)
    demo = [c for c in cmds if "dpedkit demo" in c]
    tests = [c for c in cmds if "pytest" in c]
    assert len(demo) == 1 and demo[0].endswith(".venv/bin/dpedkit demo demo")   # run_demo is tested end to end
    assert len(tests) == 1 and tests[0] in (ROOT / ".ci" / "run").read_text()


# each bench's --help in one process (runpy, as `python bench/x.py --help` runs it): one Python
# and one torch start-up instead of one per bench
HELP_ALL = """
import contextlib, io, json, runpy, sys
out = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(path, run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out[path] = (code, buf.getvalue())
print(json.dumps(out))
"""


def test_bench_commands_exist():
    benches = sorted(set(re.findall(r"python (bench/\w+\.py)", README)))
    assert {"bench/align.py", "bench/patches.py", "bench/train.py", "bench/enhance.py"} <= set(benches)
    p = subprocess.run([sys.executable, "-c", HELP_ALL, *[str(ROOT / b) for b in benches]], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    for b in benches:
        code, text = got[str(ROOT / b)]
        assert code == 0 and "usage" in text.lower(), (b, code, text[-500:])


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    from tests.helpers import save_torchvision, tiny_vgg_weights
    make_raw(tmp_path / "demo_raw", phone_scale=0.3)    # phone photos of ~0.05 MP: enhance takes seconds
    (tmp_path / "raw").mkdir()
    for cam, name in (("phone", "iphone"), ("dslr", "canon")):       # the README's camera names
        (tmp_path / "demo_raw" / cam).rename(tmp_path / "raw" / name)
    save_torchvision(tmp_path / "vgg19.pth", tiny_vgg_weights(np.random.default_rng(0)))
    monkeypatch.setenv("DPEDKIT_VGG", str(tmp_path / "vgg19.pth"))   # the README's train finds VGG this way
    if OFFICIAL.is_dir():
        (tmp_path / "models_orig").symlink_to(OFFICIAL)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_dpedkit_command_in_the_readme_runs(workspace):
    cmds = [c for c in fenced_commands(README) if c.startswith("dpedkit ")]
    assert len(cmds) >= 9
    ran = 0
    for cmd in cmds:
        args = shlex.split(cmd)[1:]
        if "models_orig/" in cmd and not OFFICIAL.is_dir():
            continue
        if ".tflite" in cmd and missing_packages():      # dpedkit[tflite] is in the README's test command
            continue
        if args[0] == "enhance":       # the full-size generator on CPU: two of the six photos are enough
            for photo in sorted((workspace / "raw" / "iphone").iterdir())[2:]:
                photo.unlink()
        r = CliRunner().invoke(main, args + SHORTEN.get(args[0], []), catch_exceptions=False)
        assert r.exit_code == 0, (cmd, r.output[-4000:])
        ran += 1
    assert ran >= 7
    assert (workspace / "report" / "index.html").is_file() and (workspace / "runs/iphone/evaluate_iphone.json").is_file()
    assert (workspace / "iphone.onnx").is_file()
    assert (workspace / "iphone.tflite").is_file() or missing_packages()
    assert len([p for p in os.listdir(workspace / "enhanced") if p.endswith(".jpg")]) == 4   # 2 photos + before/after


def test_docs_stand_alone():
    # a clone of the repository has no ../shared: README and docs/ point inside the repo only
    for text in [README] + [p.read_text() for p in (ROOT / "docs").glob("*.md")]:
        assert "../shared" not in text
    for link in re.findall(r"\]\((docs/[^)]+)\)", README):
        assert (ROOT / link).is_file(), link
