"""Whole-image inference with the DPED generator, in bounded memory.

The generator normalises each feature map over the whole image (instance normalisation),
so cutting a photo into tiles changes the result: by default a photo is enhanced in one
piece. :func:`generate` runs the same network as ``Generator.forward`` but in place wherever
it can and frees each activation as soon as it is used, so at most three full-size 64-channel
maps are alive at once (about 3 × 64 × H × W × 4 bytes in fp32: 9.2 GB for 12 MP).
:func:`enhance_tiled` is an explicit, approximate alternative for photos that do not fit.

Images are HWC uint8 RGB arrays; tensors NCHW in [0, 1].
"""

from __future__ import annotations

import os

import numpy as np
import torch

from dpedkit.model.networks import Generator

LIVE_MAPS = 3  # full-size 64-channel activations alive at the peak of generate()


class EnhanceError(RuntimeError):
    pass


def _stats32(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (biased variance, mean) of one image, in fp32 whatever x's dtype."""
    if x.dtype == torch.float32:
        return torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
    # one channel at a time in fp32: no full-size fp32 copy, and no fp16 overflow of the variance
    vm = [torch.var_mean(c.float(), correction=0) for c in x[0]]
    return torch.stack([v for v, _ in vm]).view(1, -1, 1, 1), torch.stack([m for _, m in vm]).view(1, -1, 1, 1)


def _norm_relu_(x: torch.Tensor, norm: torch.nn.InstanceNorm2d) -> torch.Tensor:
    """relu(instance_norm(x)) in place."""
    var, mean = _stats32(x)
    scale = norm.weight.view(1, -1, 1, 1) / torch.sqrt(var + norm.eps)
    shift = norm.bias.view(1, -1, 1, 1) - mean * scale
    return x.mul_(scale.to(x.dtype)).add_(shift.to(x.dtype)).relu_()


@torch.inference_mode()
def generate(g: Generator, x: torch.Tensor) -> torch.Tensor:
    """``g(x)`` for one image, with activations freed as soon as they are used."""
    if x.shape[0] != 1:
        raise ValueError("generate() takes one image at a time")
    h = g.head(x).relu_()
    for block in g.blocks:
        y = _norm_relu_(block.conv1(h), block.norm1)
        z = _norm_relu_(block.conv2(y), block.norm2)
        del y
        h += z
        del z
    y = g.conv10(h).relu_()
    del h
    h = g.conv11(y).relu_()
    del y
    out = g.tail(h)
    del h
    return out.tanh_().mul_(0.58).add_(0.5)


def prepare(g: Generator, device: torch.device, dtype: torch.dtype = torch.float32) -> Generator:
    """The generator in eval mode on ``device`` in ``dtype``, channels_last (what enhance runs)."""
    return g.eval().to(device=device, dtype=dtype).to(memory_format=torch.channels_last)


def to_tensor(img: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(img)).to(device).permute(2, 0, 1)[None]
    return (t.to(dtype) / 255).contiguous(memory_format=torch.channels_last)


def to_image(t: torch.Tensor) -> np.ndarray:
    return (t[0].float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def bytes_needed(height: int, width: int, dtype: torch.dtype = torch.float32) -> int:
    """Peak memory of :func:`generate` on an image, estimated from its live activations."""
    item = torch.empty((), dtype=dtype).element_size()
    return (LIVE_MAPS * 64 + 2 * 3) * height * width * item


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


def enhance_whole(g: Generator, img: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32,
                  check_memory: bool = True) -> np.ndarray:
    """Enhance a whole photo exactly; :class:`EnhanceError` when it cannot fit in memory."""
    h, w = img.shape[:2]
    if check_memory:
        need, free = bytes_needed(h, w, dtype), available_bytes(device)
        if free is not None and need > free:
            raise EnhanceError(
                f"a {w}×{h} photo needs about {need / 2**30:.1f} GiB for exact whole-image enhancement on "
                f"{device.type} and {free / 2**30:.1f} GiB is free; use --tile 1024 for an approximate tiled "
                f"result (instance normalisation then sees one tile at a time)")
    return to_image(generate(g, to_tensor(img, device, dtype)))


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
        raise ValueError("--overlap must be at most half of --tile")
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
