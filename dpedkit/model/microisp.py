"""MicroISP (Ignatov et al. 2022, "MicroISP: Processing 32MP Photos on Mobile Devices with
Deep Learning"), as the authors' TensorFlow code builds it (aiff22/MicroISP ``model.py``).

Input: the packed Bayer mosaic ``(N, 4, h, w)``, channels ``(B, Gb, R, Gr)``, values
``raw / 1020`` — the same packing as PyNET (the original's ``inference.py`` uses the same
``extract_bayer_channels``). ``h, w ≥ 79``: the attention's four stride-3 'VALID'
convolutions need that much. Output: ``(N, 3, 2h, 2w)``, the mosaic's resolution, values
``tanh·0.58 + 0.5`` (−0.08 … 1.08, like the DPED generator).

Structure: one independent branch per output colour, in two stages. A stage is
``blocks`` 3×3 convolutions (``features`` channels, zero 'SAME' padding, bias, PReLU with
one slope per channel), where every third block (``j % 3 == 0``) starts a residual group
and the group's last block (``j % 3 == 2``) is multiplied by a channel attention
(:class:`Attention`) and added to the group's start; then a 3×3 convolution to 4 = 2×2
channels and ``tanh``. Stage 1 maps the 4 packed channels to 4 intermediate channels;
stage 2 maps those (per branch) to its output, ``tanh·0.58 + 0.5``, then depth-to-space
×2 gives that colour at full resolution. The original also computes stage 1's
depth-to-space image and never uses it; we skip it. The three branches run together
as grouped convolutions (:class:`Stage`): the same function and parameters.

Initialisation as the original: kernels normal with σ = 1e-3, biases 0, PReLU slopes 0
(Keras' default). With the defaults (4 features, 7 blocks) the network has 13,560
parameters, the number of float32 values in the published checkpoint
(``MicroISP.ckpt.data``, 54,240 bytes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_SIDE = 79        # smallest packed side the attention's stride-3 chain accepts


INIT_STD = 1e-3      # the original's kernel initialisation: normal, σ = 1e-3


def _conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, groups: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, stride, padding, groups=groups)
    nn.init.normal_(conv.weight, 0.0, INIT_STD)
    nn.init.zeros_(conv.bias)
    return conv


def _prelu(c: int) -> nn.PReLU:
    """Keras ``PReLU(shared_axes=[1, 2])``: one slope per channel, initially 0 (a ReLU)."""
    return nn.PReLU(c, init=0.0)


class Attention(nn.Module):
    """Channel attention of each of ``g`` branches: ``(N, g·C, h, w) → (N, g·dims, 1, 1)`` in (0, 1).

    Per branch: a 1×1 convolution with stride 3, three 3×3 convolutions with stride 3 (all
    'VALID', each + PReLU), a global average, a 1×1 convolution to ``hidden`` + PReLU, a 1×1
    convolution to ``dims``, sigmoid. The branches run as grouped convolutions."""

    def __init__(self, c: int, hidden: int, dims: int, g: int):
        super().__init__()
        self.reduce = nn.ModuleList([_conv(g * c, g * c, 1, 3, groups=g)] +
                                    [_conv(g * c, g * c, 3, 3, groups=g) for _ in range(3)])
        self.reduce_act = nn.ModuleList([_prelu(g * c) for _ in range(4)])
        self.fc1 = _conv(g * c, g * hidden, 1, groups=g)
        self.fc1_act = _prelu(g * hidden)
        self.fc2 = _conv(g * hidden, g * dims, 1, groups=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.reduce, self.reduce_act):
            x = act(conv(x))
        x = x.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.fc2(self.fc1_act(self.fc1(x))))


class Stage(nn.Module):
    """One stage of all ``g`` colour branches: ``(N, cin, h, w) → (N, g·4, h, w)`` after ``tanh``,
    branch ``i`` in channels ``4i … 4i+3``.

    The branches are independent, so they run as grouped convolutions (``groups=g``): the
    same weights and arithmetic as ``g`` separate networks, in far fewer operations.
    ``shared_input``: every branch reads all ``cin`` channels (stage 1, the packed mosaic);
    otherwise branch ``i`` reads its own ``cin / g`` channels (stage 2)."""

    def __init__(self, cin: int, features: int, blocks: int, res_skip: int, scale: int, g: int,
                 shared_input: bool):
        super().__init__()
        self.res_skip = res_skip
        f = g * features
        self.convs = nn.ModuleList([_conv(cin, f, 3, padding=1, groups=1 if shared_input else g)] +
                                   [_conv(f, f, 3, padding=1, groups=g) for _ in range(blocks - 1)])
        self.acts = nn.ModuleList([_prelu(f) for _ in range(blocks)])
        # one attention per residual group's last block
        self.attention = nn.ModuleDict({str(j): Attention(features, features, features, g)
                                        for j in range(blocks) if j % res_skip == res_skip - 1})
        self.out = _conv(f, g * scale * scale, 3, padding=1, groups=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = None
        for j, (conv, act) in enumerate(zip(self.convs, self.acts)):
            x = act(conv(x))
            if j % self.res_skip == 0:
                skip = x
            elif j % self.res_skip == self.res_skip - 1:
                x = x * self.attention[str(j)](x) + skip
        return torch.tanh(self.out(x))


class MicroISP(nn.Module):
    """MicroISP (module docstring): ``(N, 4, h, w)`` packed Bayer → ``(N, 3, 2h, 2w)`` RGB.

    ``init_std``: σ of the kernels' normal initialisation (the original's 1e-3 by default;
    from there Adam needs thousands of steps to leave the mid-grey start, so the short CPU
    recipe starts from a larger σ)."""

    def __init__(self, features: int = 4, blocks: int = 7, res_skip: int = 3, scale: int = 2,
                 in_channels: int = 4, out_channels: int = 3, init_std: float = INIT_STD):
        super().__init__()
        self.scale, self.in_channels = scale, in_channels
        g = out_channels
        self.stage1 = Stage(in_channels, features, blocks, res_skip, scale, g, shared_input=True)
        self.stage2 = Stage(g * scale * scale, features, blocks, res_skip, scale, g, shared_input=False)
        if init_std != INIT_STD:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0.0, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MicroISP takes the packed Bayer mosaic (N, 4, h, w), got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"MicroISP's attention needs packed sides of at least {MIN_SIDE} px "
                             f"(mosaic patches of {2 * MIN_SIDE + 2} px), got {x.shape[-2]}x{x.shape[-1]}")
        # pixel_shuffle of branch i's 4 channels is output colour i (TF's depth_to_space, 1 channel out)
        return F.pixel_shuffle(self.stage2(self.stage1(x)) * 0.58 + 0.5, self.scale)
