"""The DPED generator and discriminator, as the original TensorFlow code builds them.

The generator is a layer description (:func:`generator_layers`, :mod:`dpedkit.model.layers`):
its modules, forward pass, whole-image inference and exact strips all come from it.

Tensors are NCHW, RGB in [0, 1]. Padding follows TensorFlow's 'SAME' (asymmetric for even
totals: the extra pixel goes after), instance normalisation uses biased moments over H, W,
eps 1e-3, and a learnable per-channel scale (init 1) and shift (init 0).

Initialisation is the original's, not PyTorch's default (:func:`init_like_original`): every
conv kernel and FC weight truncated-normal with σ 0.01 (cut at ±2σ, as
``tf.truncated_normal``), every bias 0.01, instance-norm shift 0 and scale 1. The original
seeds the discriminator's conv kernels with a fixed seed (``seed=1``); here they come from
a generator seeded with :data:`DISCRIMINATOR_CONV_SEED`, so they are the same in every run
whatever ``--seed`` is (TensorFlow's random stream itself cannot be reproduced).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpedkit.model.layers import Conv, InstanceNorm, LayerNet, ReLU, Residual, ScaledTanh, flatten

GRAY = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale
INIT_STD = 0.01          # tf.truncated_normal(stddev=0.01) in models.py
INIT_BIAS = 0.01         # tf.constant(0.01) in models.py
DISCRIMINATOR_CONV_SEED = 1


def init_like_original(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Truncated-normal σ 0.01 (±2σ) for every conv/linear weight, 0.01 for every bias,
    0 / 1 for instance-norm shift / scale, drawn from ``generator`` (torch's global stream
    when None) in the order the modules were created."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                nn.init.trunc_normal_(m.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD, generator=generator)
                m.bias.fill_(INIT_BIAS)
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvSame(nn.Conv2d):
    """A convolution with TensorFlow 'SAME' padding for any input size and stride."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = same_padding(x.shape[-2], k, s)
        left, right = same_padding(x.shape[-1], k, s)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, eps=1e-3, affine=True)


def generator_layers(ch: int = 64, blocks: int = 4) -> tuple:
    """The DPED generator (``models.resnet``): 9×9 conv + ReLU; ``blocks`` residual blocks of
    two 3×3 conv + instance norm + ReLU, the skip added after the second ReLU; two 3×3 conv +
    ReLU; 9×9 conv; tanh·0.58 + 0.5. The names are the state-dict prefixes of every
    checkpoint dpedkit has written."""
    def block(i: int) -> Residual:
        b = f"blocks.{i}"
        return Residual((Conv(f"{b}.conv1", ch, ch, 3), InstanceNorm(f"{b}.norm1", ch), ReLU(),
                         Conv(f"{b}.conv2", ch, ch, 3), InstanceNorm(f"{b}.norm2", ch), ReLU()))
    return (Conv("head", 3, ch, 9), ReLU(),
            *(block(i) for i in range(blocks)),
            Conv("conv10", ch, ch, 3), ReLU(),
            Conv("conv11", ch, ch, 3), ReLU(),
            Conv("tail", ch, 3, 9), ScaledTanh(0.58, 0.5))


GENERATOR_STEPS = flatten(generator_layers())   # the default generator's steps (what the planner sizes)


class Generator(LayerNet):
    """The DPED generator (:func:`generator_layers`), initialised as the original."""

    def __init__(self, ch: int = 64, blocks: int = 4):
        super().__init__(generator_layers(ch, blocks))
        init_like_original(self)


class Discriminator(nn.Module):
    """Grayscale 100×100 → 2-class softmax (class 0 = DSLR); each conv is followed by
    LeakyReLU(0.2) and then instance normalisation (not after the first)."""

    SPEC = ((48, 11, 4, False), (128, 5, 2, True), (192, 3, 1, True), (192, 3, 1, True), (128, 3, 2, True))

    def __init__(self, patch: int = 100):
        super().__init__()
        layers, ch, size = [], 1, patch
        for out, k, s, norm in self.SPEC:
            layers += [ConvSame(ch, out, k, s), nn.LeakyReLU(0.2)] + ([instance_norm(out)] if norm else [])
            ch, size = out, -(-size // s)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(ch * size * size, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 2))
        init_like_original(self.features, torch.Generator().manual_seed(DISCRIMINATOR_CONV_SEED))
        init_like_original(self.fc)   # the original's FC layers have no seed: the run's stream

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, 2)`` for grayscale input ``(B, 1, H, W)``."""
        return torch.softmax(self.fc(self.features(gray)).float(), dim=1)


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(GRAY, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(dim=1, keepdim=True)


@torch.no_grad()
def near_identity(g: torch.nn.Module) -> torch.nn.Module:
    """Make a :class:`Generator`, initialised as the paper's, pass its
    input through, keeping its other random weights for learning:

    - RGB rides on feature channels 0–2 of the first convolution and of the two 3×3
      convolutions: channel c receives only the centre tap 1 from channel c (no bias; the
      inputs are ≥ 0, so the ReLUs pass them);
    - each residual branch is switched off by its second instance norm's scale 0 (shift 0.01,
      so that the ReLU passes a gradient to the scale and the branch can grow);
    - the last 9×9 convolution reads channel c's centre tap only, with gain :data:`TAIL_GAIN`
      and bias :data:`TAIL_BIAS`: the output ``tanh(2(x + 0.04) − 1)·0.58 + 0.5`` (the four
      branches' shifts add 0.04) is within 0.08 of x on [0, 1].

    Zeroed weights still learn: their gradients are their (non-zero) inputs times the
    output's gradient.
    """
    for conv in (g.head, g.conv10, g.conv11):
        k = conv.kernel_size[0] // 2
        conv.weight[:3].zero_()
        conv.bias[:3].zero_()
        for c in range(3):
            conv.weight[c, c, k, k] = 1.0
    for block in g.blocks:
        block.norm2.weight.zero_()
        block.norm2.bias.fill_(0.01)
    k = g.tail.kernel_size[0] // 2
    g.tail.weight.zero_()
    for c in range(3):
        g.tail.weight[c, c, k, k] = TAIL_GAIN
    g.tail.bias.fill_(TAIL_BIAS)
    return g


# near_identity's tail: tanh(A·x + B)·0.58 + 0.5 ≈ x on [0, 1] (0.06 → 0.94 at the ends)
TAIL_GAIN, TAIL_BIAS = 2.0, -1.0
