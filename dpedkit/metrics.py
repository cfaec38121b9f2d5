"""Image quality metrics on tensors (NCHW, RGB, values in [0, 1]).

- PSNR as the DPED code computes it: ``20·log10(1 / sqrt(MSE))`` over a whole batch.
- SSIM as Wang et al. (2004) and scikit-image with ``gaussian_weights=True``: an 11×11
  Gaussian window of σ = 1.5, K1 = 0.01, K2 = 0.03, data range 1, population covariances,
  the mean over the valid (unpadded) region of each channel, then over channels and images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.float() - b.float()) ** 2).mean()
    return 20 * torch.log10(1 / torch.sqrt(mse.clamp_min(1e-12)))


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of two image batches (see the module docstring for the conventions)."""
    a, b = a.float(), b.float()
    c = a.shape[1]
    w = _gaussian_window(device=a.device).expand(c, 1, 11, 11)

    def filt(x):
        return F.conv2d(x, w, groups=c)
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean()
