"""Whole-image inference with the DPED generator, in bounded memory.

The generator normalises each feature map over the whole image (instance normalisation),
so cutting a photo into tiles changes the result: by default a photo is enhanced in one
piece. :func:`generate` walks the same layer description as ``Generator.forward``
(:mod:`dpedkit.model.layers`) but in place wherever it can, freeing each activation as soon
as it is used: for the DPED generator three full-size 64-channel maps are alive at the peak
(about 3 × 64 × H × W × 4 bytes in fp32: 9.2 GB for 12 MP; :func:`bytes_needed`).
:func:`enhance_tiled` is an explicit, approximate alternative for photos that do not fit.

Images are HWC uint8 RGB arrays; tensors NCHW in [0, 1].
"""

from __future__ import annotations

import os

import numpy as np
import torch

from dpedkit.errors import OptionError
from dpedkit.model.layers import Conv, InstanceNorm, LayerNet, ScaledTanh, out_channels, peak_channels, walk
from dpedkit.model.networks import GENERATOR_STEPS, Generator


def _colsum(v: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Column sums of a (N, C) tensor in float64: float32 sums of ``chunk`` rows (relative
    error ~1e-8), added in float64 — as fast as a float32 sum, unlike sum(dtype=float64)."""
    n = v.shape[0] // chunk * chunk
    return v[:n].view(-1, chunk, v.shape[1]).sum(1).double().sum(0) + v[n:].double().sum(0)


class Moments:
    """Per-channel mean and biased variance of a stream of strips, merged in float64."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, x: torch.Tensor) -> None:
        """Add a (1, C, h, w) strip: its mean, then its centred sum of squares (two passes,
        no cancellation), merged into the running moments in float64."""
        v = x[0].permute(1, 2, 0).reshape(-1, x.shape[1])     # pixels × channels: a view for channels_last
        n = v.shape[0]
        if n == 0:
            return
        mean = _colsum(v) / n
        d = v - mean.to(v.device, v.dtype)
        m2 = _colsum(d * d) - _colsum(d) ** 2 / n
        self._merge(n, mean.cpu(), m2.cpu())

    def _merge(self, n: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        if self.mean is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * n / total)
        self.n = total

    def finite(self) -> bool:
        return self.mean is not None and bool(torch.isfinite(self.mean).all() and torch.isfinite(self.m2).all())

    def scale_shift(self, norm: torch.nn.InstanceNorm2d, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) with ``norm(x) == x * scale + shift`` for this stream's statistics."""
        var = self.m2 / self.n
        scale = norm.weight.detach().double().cpu() / torch.sqrt(var + norm.eps)
        shift = norm.bias.detach().double().cpu() - self.mean * scale
        return (scale.view(1, -1, 1, 1).to(like.device, like.dtype),
                shift.view(1, -1, 1, 1).to(like.device, like.dtype))


def image_moments(x: torch.Tensor) -> Moments:
    """The per-channel moments of one image ``(1, C, H, W)``, gathered over row chunks, each
    in float32 whatever x's dtype (no float16 overflow): exact two-pass moments with only a
    chunk-sized temporary, and 5–10× faster than ``torch.var_mean`` on CPU. Chunks of 2^16
    pixels on CPU (cache-sized); of 2^22 on a GPU, where each chunk's merge is a sync."""
    m, rows = Moments(), max(1, (1 << (22 if x.is_cuda else 16)) // x.shape[3])
    for r in range(0, x.shape[2], rows):
        m.add(x[:, :, r:r + rows].float())
    return m


class InPlaceOps:
    """Whole-image inference: in place wherever the walk allows (:func:`dpedkit.model.layers.walk`)."""
    in_place = True

    def __init__(self, net: LayerNet):
        self.net = net

    def conv(self, s: Conv, x: torch.Tensor) -> torch.Tensor:
        return self.net.get_submodule(s.name)(x)

    def norm(self, s: InstanceNorm, x: torch.Tensor) -> torch.Tensor:
        scale, shift = image_moments(x).scale_shift(self.net.get_submodule(s.name), x)
        return x.mul_(scale).add_(shift)

    def relu(self, s, x: torch.Tensor) -> torch.Tensor:
        return x.relu_()

    def tanh(self, s: ScaledTanh, x: torch.Tensor) -> torch.Tensor:
        return x.tanh_().mul_(s.scale).add_(s.shift)

    def add(self, skip: torch.Tensor, x: torch.Tensor, may_overwrite: bool) -> torch.Tensor:
        return skip.add_(x) if may_overwrite else skip + x

    def copy(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


@torch.inference_mode()
def generate(g: LayerNet, x: torch.Tensor) -> torch.Tensor:
    """``g(x)`` for one image, in place where it can, each activation freed as soon as it is used."""
    if x.shape[0] != 1:
        raise ValueError("generate() takes one image at a time")
    return walk(g.steps, x, InPlaceOps(g))[0]


def prepare(g: Generator, device: torch.device, dtype: torch.dtype = torch.float32) -> Generator:
    """The generator in eval mode on ``device`` in ``dtype``, channels_last (what enhance runs)."""
    return g.eval().to(device=device, dtype=dtype).to(memory_format=torch.channels_last)


def to_tensor(img: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(img)).to(device).permute(2, 0, 1)[None]
    return (t.to(dtype) / 255).contiguous(memory_format=torch.channels_last)


def to_image(t: torch.Tensor) -> np.ndarray:
    return (t[0].float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def bytes_needed(height: int, width: int, dtype: torch.dtype = torch.float32, steps=GENERATOR_STEPS) -> int:
    """Peak memory of :func:`generate` on an image, estimated from its live activations
    (:func:`dpedkit.model.layers.peak_channels`) and the output."""
    item = torch.empty((), dtype=dtype).element_size()
    return (peak_channels(steps) + out_channels(steps)) * height * width * item


def available_bytes(device: torch.device) -> int | None:
    """Memory free for the generator on ``device`` (None where unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    r = np.ones(n, np.float32)
    if overlap:
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if not at_start:
            r[:overlap] = np.minimum(r[:overlap], ramp)
        if not at_end:
            r[-overlap:] = np.minimum(r[-overlap:], ramp[::-1])
    return r


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering ``[0, length)`` with at least ``overlap`` shared pixels."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return starts


def enhance_tiled(g: Generator, img: np.ndarray, device: torch.device, tile: int = 1024, overlap: int = 64,
                  dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Approximate enhancement tile by tile, cross-faded linearly over ``overlap`` pixels.

    Each tile is normalised on its own statistics, so the result differs from the whole-image
    one (most where tiles differ in content); memory is that of one tile.
    """
    if overlap * 2 > tile:
        raise OptionError("--overlap must be at most half of --tile")
    h, w = img.shape[:2]
    acc = np.zeros((h, w, 3), np.float32)
    weight = np.zeros((h, w, 1), np.float32)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    for y in ys:
        for x in xs:
            part = img[y:y + tile, x:x + tile]
            out = generate(g, to_tensor(part, device, dtype))[0].float().permute(1, 2, 0).cpu().numpy()
            wy = _ramp(part.shape[0], overlap, y == 0, y == ys[-1])
            wx = _ramp(part.shape[1], overlap, x == 0, x == xs[-1])
            wgt = (wy[:, None] * wx[None, :])[..., None]
            acc[y:y + tile, x:x + tile] += out * wgt
            weight[y:y + tile, x:x + tile] += wgt
    return (np.clip(acc / weight, 0, 1) * 255 + 0.5).astype(np.uint8)
