"""The losses of the learned-ISP recipes (PyNET per level, MicroISP), as weighted sums of
three terms on NCHW RGB batches in [0, 1]:

- ``mse``: ``mean((enhanced − target)²)`` (``torch.nn.MSELoss``);
- ``content``: mean squared difference of VGG-19 ``relu5_4`` features, ImageNet
  normalisation (PyNET-PyTorch's ``vgg.py``: torchvision's VGG-19 up to ``relu_16``, fed
  ``normalize_batch``); :mod:`dpedkit.model.vgg` with a torchvision weight file;
- ``ms_ssim``: ``1 − MS-SSIM(enhanced, target)`` (:func:`dpedkit.metrics.ms_ssim`: 5 scales,
  the usual weights, 11×11 Gaussian σ = 1.5, valid region — the same values as
  PyNET-PyTorch's ``msssim.py`` on its 448 px patches, where no scale is odd or smaller
  than the window).

PyNET-PyTorch ``train_model.py`` (the weights of :data:`PYNET_WEIGHTS`): levels 5 and 4
``mse``; levels 3, 2, 1 ``10·mse + content``; level 0 ``mse + content + 0.4·(1 − MS-SSIM)``.
The TensorFlow PyNET weighs differently (:data:`PYNET_TF_WEIGHTS`, for reference; its level-0
term is single-scale SSIM, not MS-SSIM). MicroISP publishes no training code: its recipe
uses PyNET's level-0 loss (:data:`MICROISP_WEIGHTS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dpedkit.errors import DpedkitError
from dpedkit.metrics import ms_ssim


class IspLossError(DpedkitError, ValueError):
    """A loss cannot be built as asked; the message says what to pass."""


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms (module docstring); 0 leaves a term out."""
    mse: float = 1.0
    content: float = 0.0
    ms_ssim: float = 0.0

    def without_content(self) -> "LossWeights":
        return LossWeights(self.mse, 0.0, self.ms_ssim)


# PyNET-PyTorch train_model.py, by level
PYNET_WEIGHTS = {5: LossWeights(1), 4: LossWeights(1), 3: LossWeights(10, 1), 2: LossWeights(10, 1),
                 1: LossWeights(10, 1), 0: LossWeights(1, 1, 0.4)}
# aiff22/PyNET (TensorFlow) train_model.py, by level; level 0 adds 20·(1 − SSIM), not MS-SSIM (not implemented)
PYNET_TF_WEIGHTS = {5: LossWeights(100), 4: LossWeights(100), 3: LossWeights(100, 1), 2: LossWeights(100, 1),
                    1: LossWeights(50, 1), 0: LossWeights(20, 1)}
MICROISP_WEIGHTS = LossWeights(1, 1, 0.4)


class IspLoss(nn.Module):
    """``forward(enhanced, target) → (total, {term: value})``; ``vgg``: a
    :class:`dpedkit.model.vgg.VGG19Relu54`, required when ``weights.content > 0``."""

    def __init__(self, weights: LossWeights, vgg: nn.Module | None = None):
        super().__init__()
        if weights.content > 0 and vgg is None:
            from dpedkit.model.vgg import WEIGHT_HELP
            raise IspLossError(f"this level's loss has a VGG content term (weight {weights.content}). {WEIGHT_HELP}")
        self.weights = weights
        self.vgg = vgg

    TERMS = ("loss", "loss_mse", "loss_content", "loss_ms_ssim")   # the order of :meth:`terms`

    def terms(self, enhanced: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[total, mse, content, 1 − MS-SSIM]`` as one tensor (a term left out is 0), with
        the graph of ``total``: what a training step descends and logs without a host sync."""
        if enhanced.shape != target.shape:
            raise IspLossError(f"output {tuple(enhanced.shape)} and target {tuple(target.shape)} differ: "
                               "train the level the data was loaded for")
        w, zero = self.weights, enhanced.new_zeros((), dtype=torch.float32)
        mse = ((enhanced.float() - target.float()) ** 2).mean()
        content = ((self.vgg(enhanced).float() - self.vgg(target).float()) ** 2).mean() if w.content > 0 else zero
        ssim = 1 - ms_ssim(enhanced, target) if w.ms_ssim > 0 else zero
        total = w.mse * mse + w.content * content + w.ms_ssim * ssim
        return torch.stack([total, mse, content, ssim])

    def forward(self, enhanced: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``(total, {term: value})`` with only the terms this loss weighs."""
        t = self.terms(enhanced, target)
        w = self.weights
        used = {"mse": True, "content": w.content > 0, "ms_ssim": w.ms_ssim > 0}   # mse always reported
        return t[0], {k: float(v.detach()) for (k, on), v in zip(used.items(), t[1:]) if on}


def isp_loss(weights: LossWeights, vgg_path: str | None = None, content: bool = True,
             device: torch.device | str = "cpu") -> IspLoss:
    """The loss of ``weights``; with ``content=False`` (``--content-loss none``) the VGG term is
    dropped, else VGG-19 is loaded from ``vgg_path`` / ``$DPEDKIT_VGG`` / torch hub's cache
    (never downloaded) and a missing file is an :class:`IspLossError` saying where to get one."""
    if not content or weights.content == 0:
        return IspLoss(weights.without_content())
    from dpedkit.model.vgg import WEIGHT_HELP, VGGWeightsError, find_vgg_weights, load_vgg19
    path = find_vgg_weights(vgg_path)
    if path is None:
        raise IspLossError(WEIGHT_HELP)
    try:
        vgg = load_vgg19(path).to(device)
    except VGGWeightsError as e:
        raise IspLossError(str(e)) from None
    return IspLoss(weights, vgg)
