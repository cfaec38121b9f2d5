import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dpedkit.metrics import psnr, ssim


@pytest.mark.parametrize("noise", [0.02, 0.1])
def test_metrics_agree_with_scikit_image(samples, noise):
    a = samples["astronaut"][:120, :150].astype(np.float64) / 255
    b = np.clip(a + np.random.default_rng(0).normal(0, noise, a.shape), 0, 1)
    ta, tb = (torch.tensor(x).permute(2, 0, 1)[None].float() for x in (a, b))
    assert float(psnr(ta, tb)) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1), abs=1e-3)
    ref = structural_similarity(a, b, data_range=1, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert float(ssim(ta, tb)) == pytest.approx(ref, abs=1e-4)
