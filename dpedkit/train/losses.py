"""The DPED losses, normalised exactly as the original code normalises them.

All images are NCHW RGB in [0, 1]; ``B`` is the batch size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def dped_blur_kernel(size: int = 21, nsig: float = 3.0) -> np.ndarray:
    """The original ``gauss_kernel``: differences of a normal CDF over ±(nsig + half a bin),
    ``sqrt(outer(k, k))`` normalised to sum 1 (wider than a textbook σ = 3 Gaussian)."""
    interval = (2 * nsig + 1.0) / size
    x = np.linspace(-nsig - interval / 2.0, nsig + interval / 2.0, size + 1)
    cdf = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    k1 = np.diff(cdf)
    k = np.sqrt(np.outer(k1, k1))
    return (k / k.sum()).astype(np.float32)


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise convolution with ``kernel`` (H×W), zero padding ('SAME', odd kernel)."""
    c = x.shape[1]
    w = kernel.to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, w, padding=kernel.shape[-1] // 2, groups=c)


def color_loss(enhanced: torch.Tensor, dslr: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``sum((blur(dslr) − blur(enhanced))²) / (2·B)``."""
    return ((blur(dslr, kernel) - blur(enhanced, kernel)) ** 2).sum() / (2 * enhanced.shape[0])


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """``mean(dx²) + mean(dy²)``: the original's per-image means averaged over the batch."""
    return ((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2).mean() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).mean()


def content_loss(feat_enhanced: torch.Tensor, feat_dslr: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of VGG-19 relu5_4 features (``2·l2_loss / size``)."""
    return ((feat_enhanced - feat_dslr) ** 2).mean()


def discriminator_loss(prob: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """``−Σ target·log(clip(p, 1e-10, 1))`` over the batch, target ``[adv, 1 − adv]``
    (``adv = 1``: the discriminator was shown the DSLR patch, class 0)."""
    target = torch.cat([adv, 1 - adv], dim=1)
    return -(target * torch.log(prob.clamp(1e-10, 1.0))).sum()


def discriminator_accuracy(prob: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    return (prob.argmax(dim=1) == (1 - adv[:, 0]).long()).float().mean()
