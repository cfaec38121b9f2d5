"""Image quality metrics on tensors (NCHW, RGB, values in [0, 1]).

- PSNR as the DPED code computes it: ``20·log10(1 / sqrt(MSE))`` over a whole batch.
- MS-SSIM as the DPED code computes it (:func:`ms_ssim`).
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


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of two image batches (see the module docstring for the conventions)."""
    a, b = a.float(), b.float()
    lum, cs = _luminance_and_contrast_structure(a, b, _gaussian_window(11, 1.5, a), data_range)
    return (lum * cs).mean()


def _luminance_and_contrast_structure(a: torch.Tensor, b: torch.Tensor, window: torch.Tensor,
                                      data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM's two factor maps under a 2-D ``window`` (valid positions, per channel)."""
    c = a.shape[1]
    w = window.expand(c, 1, *window.shape)

    def filt(x):
        return F.conv2d(x, w, groups=c)
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1), (2 * cov + c2) / (var_a + var_b + c2)


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """MATLAB's fspecial('gaussian'); even sizes are centred between pixels."""
    x = torch.arange(size, dtype=torch.float64, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).to(like.dtype)


def _ssim_and_cs(a: torch.Tensor, b: torch.Tensor, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    size = min(11, a.shape[-2], a.shape[-1])      # the window shrinks on small images, σ with it
    lum, cs = _luminance_and_contrast_structure(a, b, _gaussian_window(size, size * 1.5 / 11, a), data_range)
    return (lum * cs).mean(), cs.mean()


def ms_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0,
            weights: tuple[float, ...] = MS_SSIM_WEIGHTS) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) as the DPED code computes it.

    Per scale, SSIM terms over the valid region with an 11×11 Gaussian window of σ = 1.5
    (shrunk, with σ scaled, where the image is smaller), averaged over the whole batch and all
    channels; between scales a 2×2 box average, the last row/column repeated when odd. The
    result is ``Π cs_i^w_i · ssim_last^w_last`` with the weights of the original (negative
    terms clamped to 0 where the original would give NaN). Computed in float64; data range 1
    on [0, 1] input equals the original's 255 on 0–255 input (SSIM is scale invariant).
    """
    a, b = a.double(), b.double()
    values = []
    for i in range(len(weights)):
        s, cs = _ssim_and_cs(a, b, data_range)
        values.append(s if i == len(weights) - 1 else cs)
        if i < len(weights) - 1:
            pad = (0, a.shape[-1] % 2, 0, a.shape[-2] % 2)
            a = F.avg_pool2d(F.pad(a, pad, mode="replicate"), 2)
            b = F.avg_pool2d(F.pad(b, pad, mode="replicate"), 2)
    v = torch.stack(values)
    return torch.prod(v.clamp_min(0) ** torch.tensor(weights, dtype=v.dtype, device=v.device)).float()


@torch.no_grad()
def score_patches(enhance, phone: torch.Tensor, dslr: torch.Tensor, device: torch.device,
                  batch: int = 50, clamp: bool = False) -> dict[str, float]:
    """PSNR, SSIM and MS-SSIM of ``enhance(phone)`` against ``dslr`` as DPED evaluates.

    ``phone``, ``dslr``: uint8 ``(N, 3, H, W)`` patches; ``enhance`` maps a float batch in
    [0, 1] on ``device`` to one (``lambda x: x`` scores the phone patches themselves). Each
    metric is computed per batch of ``batch`` patches and averaged, weighted by batch size.
    The scores are of the raw output, as the original's training/test evaluation computes
    them (the generator's ``tanh·0.58 + 0.5`` reaches −0.08…1.08); ``clamp=True`` scores
    the output clipped to [0, 1], i.e. what an 8-bit image of it would show.
    """
    parts = []
    for i in range(0, phone.shape[0], batch):
        p = phone[i:i + batch].to(device).float() / 255
        d = dslr[i:i + batch].to(device).float() / 255
        e = enhance(p).float()
        if clamp:
            e = e.clamp(0, 1)
        parts.append((p.shape[0], torch.stack([psnr(e, d), ssim(e, d), ms_ssim(e, d)])))
    total = sum(n for n, _ in parts)
    means = sum(v * n for n, v in parts) / total   # one host sync, at the end
    return dict(zip(("psnr", "ssim", "ms_ssim"), means.tolist()))
