"""``dpedkit evaluate``: the model's scores beside the identity baseline's."""
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpedkit.cli import main
from dpedkit.metrics import psnr

OFFICIAL = Path(os.environ.get("DPEDKIT_OFFICIAL") or Path(__file__).resolve().parents[2] / "shared" / "dped_official")
needs_official = pytest.mark.skipif(not (OFFICIAL / "iphone_orig.index").is_file(),
                                    reason="the official DPED checkpoints are not in ../shared/dped_official")


@needs_official
def test_evaluate_reports_model_and_identity(tmp_path, samples):
    from tests.helpers import make_dataset
    data = make_dataset(tmp_path / "ds", samples, n_train=1, n_test=60, size=40)
    out = tmp_path / "scores.json"
    r = CliRunner().invoke(main, ["evaluate", str(OFFICIAL / "iphone_orig"), str(data), "--phone", "p",
                                  "--dslr", "d", "-o", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["patches"] == 60 and set(res["enhanced"]) == {"psnr", "ssim", "ms_ssim"}
    from dpedkit.train.data import load_split
    ph, ds = load_split(data / "p", "p", "d", "test", size=None)
    # identity PSNR: batches of 50 and 10, weighted by size
    direct = (50 * float(psnr(ph[:50] / 255, ds[:50] / 255)) + 10 * float(psnr(ph[50:] / 255, ds[50:] / 255))) / 60
    assert res["identity"]["psnr"] == pytest.approx(direct, abs=1e-4)
    assert "identity" in r.output and "enhanced" in r.output
    assert all(0 < res[k]["ms_ssim"] <= 1 for k in ("identity", "enhanced"))
