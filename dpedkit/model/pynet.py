"""PyNET (Ignatov, Van Gool, Timofte 2020, "Replacing Mobile Camera ISP with a Single Deep
Learning Model"), as the authors' PyTorch code builds it (aiff22/PyNET-PyTorch ``model.py``).

Input: the packed Bayer mosaic ``(N, 4, h, w)``, channels ``(B, Gb, R, Gr)`` of an RGGB
mosaic of ``2h × 2w`` pixels, values ``raw / 1020`` (``raw_data.pack_bayer``); ``h`` and
``w`` must be multiples of 16 (four 2×2 max-pools) and at least 32 (level 5's reflection
padding needs 2 px). Output of level ``k``: sRGB in (0, 1)
(a sigmoid), ``(N, 3, 2h / 2**k, 2w / 2**k)``: level 0 is the full mosaic resolution,
level 1 the packed resolution, level 5 ``h/16``.

The network is an inverted pyramid: an encoder at levels 1–4 (``conv_l*_d1`` + max-pool),
then from the coarsest level up each level concatenates its encoder features with two
upsampled copies of the level below, refines them with multi-kernel blocks
(:class:`MultiConvBlock`: parallel 3×3/5×5/7×7/9×9 branches, concatenated) and emits an
RGB head. Running "up to" level ``k`` computes the encoder and levels 5…k only, as the
original does with its ``level`` argument. Attribute names follow the original's so its
published state dict (``pynet_level_0.pth``, wrapped in ``DataParallel``: strip
``module.``) loads with ``load_state_dict`` as is.

Every convolution: reflection padding ``k // 2``, bias, then optionally instance norm
(``nn.InstanceNorm2d(affine=True)``, eps 1e-5, no running statistics) and LeakyReLU(0.2).
Upsampling: bilinear ×2 with ``align_corners=True``, then a 3×3 convolution and LeakyReLU.
PyTorch's default initialisation (the original sets none).

``width`` scales every channel count (32 in the original: 32/64/128/256/512 at levels
1–5, 16 before the level-0 head); a smaller width gives the reduced networks the CPU
tests train.
"""

from __future__ import annotations

import torch
from torch import nn

LEVELS = (0, 1, 2, 3, 4, 5)
MAX_LEVEL = 5
WIDTH = 32           # channels at level 1 in the published network


class ConvLayer(nn.Module):
    """Reflection-padded ``k×k`` convolution, optional instance norm, optional LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, k: int, relu: bool = True, instance_norm: bool = False):
        super().__init__()
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k)
        self.instance = nn.InstanceNorm2d(cout, affine=True) if instance_norm else None
        self.relu = nn.LeakyReLU(0.2) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d(self.pad(x))
        if self.instance is not None:
            x = self.instance(x)
        return self.relu(x) if self.relu is not None else x


class MultiConvBlock(nn.Module):
    """Parallel branches of two ``k×k`` :class:`ConvLayer` for k = 3, 5, … up to ``max_k``,
    concatenated: ``(N, cin, H, W) → (N, cout · branches, H, W)`` (branches = (max_k − 1) / 2)."""

    def __init__(self, cin: int, cout: int, max_k: int, instance_norm: bool):
        super().__init__()
        self.sizes = tuple(k for k in (3, 5, 7, 9) if k <= max_k)
        for k in self.sizes:   # conv_3a, conv_3b, conv_5a, …: the original's names
            setattr(self, f"conv_{k}a", ConvLayer(cin, cout, k, instance_norm=instance_norm))
            setattr(self, f"conv_{k}b", ConvLayer(cout, cout, k, instance_norm=instance_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, f"conv_{k}b")(getattr(self, f"conv_{k}a")(x)) for k in self.sizes], 1)


class UpsampleConv(nn.Module):
    """Bilinear ×2 (``align_corners=True``), reflection-padded 3×3 convolution, LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.pad = nn.ReflectionPad2d(1)
        self.conv2d = nn.Conv2d(cin, cout, 3)
        self.relu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2d(self.pad(self.up(x))))


def _head(cin: int) -> nn.Module:
    """The RGB output of a level: 3×3 convolution to 3 channels (no activation; sigmoid in forward)."""
    return ConvLayer(cin, 3, 3, relu=False)


class PyNET(nn.Module):
    """PyNET (module docstring). ``level``: the default output level of :meth:`forward`.

    ``instance_norm_level_1=True`` is what the original's ``train_model.py`` builds (its class
    default is False); the blocks ``conv_l1_d1``, ``conv_l1_d3`` and ``conv_l1_d14`` never
    normalise, as in the original."""

    def __init__(self, level: int = 0, width: int = WIDTH, instance_norm: bool = True,
                 instance_norm_level_1: bool = True):
        super().__init__()
        check_level(level)
        self.level = level
        c1, c2, c3, c4, c5 = (width * 2 ** i for i in range(5))
        n, n1 = instance_norm, instance_norm_level_1
        B = MultiConvBlock
        # encoder (levels 1-4), each followed by a 2x2 max-pool
        self.conv_l1_d1, self.conv_l2_d1 = B(4, c1, 3, False), B(c1, c2, 3, n)
        self.conv_l3_d1, self.conv_l4_d1 = B(c2, c3, 3, n), B(c3, c4, 3, n)
        self.pool = nn.MaxPool2d(2, 2)
        # level 5: input h/16
        self.conv_l5_d1, self.conv_l5_d2 = B(c4, c5, 3, n), B(c5, c5, 3, n)
        self.conv_l5_d3, self.conv_l5_d4 = B(c5, c5, 3, n), B(c5, c5, 3, n)
        self.conv_t4a, self.conv_t4b = UpsampleConv(c5, c4), UpsampleConv(c5, c4)
        self.conv_l5_out = _head(c5)
        # level 4: h/8
        self.conv_l4_d3, self.conv_l4_d4 = B(2 * c4, c4, 3, n), B(c4, c4, 3, n)
        self.conv_l4_d5, self.conv_l4_d6 = B(c4, c4, 3, n), B(c4, c4, 3, n)
        self.conv_l4_d8 = B(2 * c4, c4, 3, n)
        self.conv_t3a, self.conv_t3b = UpsampleConv(c4, c3), UpsampleConv(c4, c3)
        self.conv_l4_out = _head(c4)
        # level 3: h/4; the 5x5 blocks output 2*c3 channels
        self.conv_l3_d3, self.conv_l3_d4 = B(2 * c3, c3, 5, n), B(2 * c3, c3, 5, n)
        self.conv_l3_d5, self.conv_l3_d6 = B(2 * c3, c3, 5, n), B(2 * c3, c3, 5, n)
        self.conv_l3_d8 = B(4 * c3, c3, 3, n)
        self.conv_t2a, self.conv_t2b = UpsampleConv(c3, c2), UpsampleConv(c3, c2)
        self.conv_l3_out = _head(c3)
        # level 2: h/2; 7x7 blocks output 3*c2
        self.conv_l2_d3 = B(2 * c2, c2, 5, n)
        self.conv_l2_d5, self.conv_l2_d6 = B(3 * c2, c2, 7, n), B(3 * c2, c2, 7, n)
        self.conv_l2_d7, self.conv_l2_d8 = B(3 * c2, c2, 7, n), B(3 * c2, c2, 7, n)
        self.conv_l2_d10, self.conv_l2_d12 = B(4 * c2, c2, 5, n), B(3 * c2, c2, 3, n)
        self.conv_t1a, self.conv_t1b = UpsampleConv(c2, c1), UpsampleConv(c2, c1)
        self.conv_l2_out = _head(c2)
        # level 1: h (the packed resolution); 9x9 blocks output 4*c1
        self.conv_l1_d3, self.conv_l1_d5 = B(2 * c1, c1, 5, False), B(3 * c1, c1, 7, n1)
        self.conv_l1_d6, self.conv_l1_d7 = B(3 * c1, c1, 9, n1), B(4 * c1, c1, 9, n1)
        self.conv_l1_d8, self.conv_l1_d9 = B(4 * c1, c1, 9, n1), B(4 * c1, c1, 9, n1)
        self.conv_l1_d10, self.conv_l1_d12 = B(4 * c1, c1, 7, n1), B(4 * c1, c1, 5, n1)
        self.conv_l1_d14 = B(4 * c1, c1, 3, False)
        self.conv_l1_out = _head(c1)
        self.conv_t0 = UpsampleConv(c1, c1 // 2)
        # level 0: 2h, the mosaic's resolution
        self.conv_l0_d1 = _head(c1 // 2)

    # -- levels: each returns its features for the level above (and its own head's input) --

    def _level_5(self, x):
        d = self.conv_l5_d4(self.conv_l5_d3(self.conv_l5_d2(self.conv_l5_d1(x))))
        return d, self.conv_t4a(d), self.conv_t4b(d)

    def _level_4(self, enc, ta, tb):
        d3 = self.conv_l4_d3(torch.cat([enc, ta], 1))
        d4 = self.conv_l4_d4(d3) + d3
        d5 = self.conv_l4_d5(d4) + d4
        d8 = self.conv_l4_d8(torch.cat([self.conv_l4_d6(d5), tb], 1))
        return d8, self.conv_t3a(d8), self.conv_t3b(d8)

    def _level_3(self, enc, ta, tb):
        d2 = torch.cat([enc, ta], 1)
        d3 = self.conv_l3_d3(d2) + d2
        d4 = self.conv_l3_d4(d3) + d3
        d5 = self.conv_l3_d5(d4) + d4
        d8 = self.conv_l3_d8(torch.cat([self.conv_l3_d6(d5), enc, tb], 1))
        return d8, self.conv_t2a(d8), self.conv_t2b(d8)

    def _level_2(self, enc, ta, tb):
        d4 = torch.cat([self.conv_l2_d3(torch.cat([enc, ta], 1)), enc], 1)
        d5 = self.conv_l2_d5(d4) + d4
        d6 = self.conv_l2_d6(d5) + d5
        d7 = self.conv_l2_d7(d6) + d6
        d10 = self.conv_l2_d10(torch.cat([self.conv_l2_d8(d7), enc], 1))
        d12 = self.conv_l2_d12(torch.cat([d10, tb], 1))
        return d12, self.conv_t1a(d12), self.conv_t1b(d12)

    def _level_1(self, enc, ta, tb):
        d5 = self.conv_l1_d5(torch.cat([self.conv_l1_d3(torch.cat([enc, ta], 1)), enc], 1))
        d6 = self.conv_l1_d6(d5)
        d7 = self.conv_l1_d7(d6) + d6
        d8 = self.conv_l1_d8(d7) + d7
        d9 = self.conv_l1_d9(d8) + d8
        d12 = self.conv_l1_d12(torch.cat([self.conv_l1_d10(d9), enc], 1))
        d14 = self.conv_l1_d14(torch.cat([d12, tb, enc], 1))
        return d14, self.conv_t0(d14)

    def forward_levels(self, x: torch.Tensor, level: int | None = None) -> dict[int, torch.Tensor]:
        """The outputs of levels 5 … ``level`` (default ``self.level``), by level."""
        level = self.level if level is None else check_level(level)
        check_input(x)
        e1 = self.conv_l1_d1(x)
        e2 = self.conv_l2_d1(self.pool(e1))
        e3 = self.conv_l3_d1(self.pool(e2))
        e4 = self.conv_l4_d1(self.pool(e3))
        out = {}
        f, ta, tb = self._level_5(self.pool(e4))
        out[5] = torch.sigmoid(self.conv_l5_out(f))
        for k, enc, step, head in ((4, e4, self._level_4, self.conv_l4_out), (3, e3, self._level_3, self.conv_l3_out),
                                   (2, e2, self._level_2, self.conv_l2_out)):
            if level > k:
                return out
            f, ta, tb = step(enc, ta, tb)
            out[k] = torch.sigmoid(head(f))
        if level > 1:
            return out
        f, t0 = self._level_1(e1, ta, tb)
        out[1] = torch.sigmoid(self.conv_l1_out(f))
        if level == 0:
            out[0] = torch.sigmoid(self.conv_l0_d1(t0))
        return out

    def forward(self, x: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """The output of ``level`` (default ``self.level``): ``(N, 3, 2h / 2**level, 2w / 2**level)``."""
        level = self.level if level is None else level
        return self.forward_levels(x, level)[level]


def check_level(level: int) -> int:
    if level not in LEVELS:
        raise ValueError(f"PyNET has levels 0 (full resolution) to 5 (1/32), not {level!r}")
    return level


def check_input(x: torch.Tensor) -> None:
    """Packed 4-channel input whose sides pass four 2×2 pools (multiples of 16) and leave the
    coarsest level at least 2 px, which its reflection padding needs (sides ≥ 32)."""
    if x.ndim != 4 or x.shape[1] != 4:
        raise ValueError(f"PyNET takes the packed Bayer mosaic (N, 4, h, w), got shape {tuple(x.shape)}")
    if x.shape[-2] % 16 or x.shape[-1] % 16 or min(x.shape[-2:]) < 32:
        raise ValueError(f"PyNET's packed input sides must be multiples of 16 and at least 32 (mosaic sides "
                         f"multiples of 32, at least 64), got {x.shape[-2]}x{x.shape[-1]}")


def strip_data_parallel(state: dict) -> dict:
    """A state dict saved from ``torch.nn.DataParallel`` (the original's files) without ``module.``."""
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
