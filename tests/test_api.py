"""The public API: small, documented, light to import, and usable without the CLI."""

import subprocess
import sys

import numpy as np
import torch

import dpedkit


def test_import_is_light_and_every_public_name_is_documented():
    code = "import sys, dpedkit; print(sorted(m for m in ('torch', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for name in dpedkit.__all__:
        obj = getattr(dpedkit, name)
        if callable(obj):
            assert obj.__doc__ and len(obj.__doc__) > 60, name


def test_align_pair_and_enhance_image_from_arrays(samples):
    from dpedkit.testing.synth import synthetic_pair
    from tests.helpers import upscaled
    dslr = upscaled(samples["coffee"])
    phone, H = synthetic_pair(dslr, 0.6, np.random.default_rng(0))
    res = dpedkit.align_pair(phone, dslr)
    assert res.phone.shape == res.dslr.shape and res.inliers >= 25
    torch.manual_seed(0)
    from dpedkit.model.networks import Generator
    g = Generator().eval()
    out = dpedkit.enhance_image(g, phone[:64, :80], device="cpu")
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8
