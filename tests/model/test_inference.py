"""Whole-image inference (the in-place walk of the layer description) and approximate tiling."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dpedkit.metrics import psnr
from dpedkit.model.generator import load_generator
from dpedkit.model.inference import enhance_tiled, generate, prepare, tile_starts, to_image, to_tensor
from dpedkit.model.networks import Generator

OFFICIAL = Path(os.environ.get("DPEDKIT_OFFICIAL") or Path(__file__).resolve().parents[3] / "shared" / "dped_official")
needs_official = pytest.mark.skipif(not (OFFICIAL / "iphone_orig.index").is_file(),
                                    reason="the official DPED checkpoints are not in ../shared/dped_official")
CPU = torch.device("cpu")


def whole_image(g, img, device, dtype=torch.float32):
    """The exact whole-image enhancement of ``img`` (uint8 RGB)."""
    return to_image(generate(g, to_tensor(img, device, dtype)))


def test_lean_forward_equals_the_module(samples):
    g = Generator().eval()
    torch.manual_seed(0)
    for p in g.parameters():
        p.data.normal_(0, 0.05)
    x = to_tensor(samples["coffee"][:97, :131], CPU)
    with torch.no_grad():
        ref = g(x.contiguous())
    torch.testing.assert_close(generate(g, x), ref, atol=2e-6, rtol=0)


@needs_official
def test_official_iphone_model_enhances_a_real_photo(samples):
    g, what = load_generator(OFFICIAL / "iphone_orig")
    assert "official" in what
    img = samples["astronaut"]
    x = to_tensor(img, CPU)
    out = generate(g, x)
    assert torch.isfinite(out).all()
    enhanced = to_image(out)
    p = float(psnr(torch.from_numpy(enhanced).float() / 255, torch.from_numpy(img).float() / 255))
    assert 12 < p < 30, p                      # a visible enhancement, not noise, not the identity
    assert enhanced.mean() > img.mean() + 5    # the iPhone model brightens, as in the paper's figures
    # half precision stays within a couple of 8-bit levels of fp32; on a 128 px crop: a CPU
    # without bf16 instructions runs bf16 convolutions on a slow path (~50x fp32's time)
    crop = img[160:288, 192:320]
    full = whole_image(g, crop, CPU).astype(int)        # the crop's own instance-norm statistics
    half = whole_image(prepare(g, CPU, torch.bfloat16), crop, CPU, torch.bfloat16)
    assert np.abs(half - full).mean() < 1.5


def test_tiling_is_explicitly_approximate(samples):
    g = Generator().eval()
    torch.manual_seed(1)
    for p in g.parameters():
        p.data.normal_(0, 0.05)
    img = samples["coffee"][:200, :300]
    whole = whole_image(g, img, CPU)
    assert np.array_equal(enhance_tiled(g, img, CPU, tile=512, overlap=32), whole)   # one tile: exact
    tiled = enhance_tiled(g, img, CPU, tile=128, overlap=32)
    assert tiled.shape == whole.shape
    diff = np.abs(tiled.astype(int) - whole)
    assert 0 < diff.mean() < 20
    assert tile_starts(300, 128, 32) == [0, 96, 172] and tile_starts(100, 128, 32) == [0]
