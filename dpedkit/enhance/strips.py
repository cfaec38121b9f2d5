"""Exact enhancement of a photo of any size within a memory budget, in strips.

The generator normalises each of its instance-norm layers over the *whole* image, so plain
tiling changes the result. Here the photo is processed in full-width strips of rows with
halos for the convolutions, in two phases, both walking the generator's layer description
(:mod:`dpedkit.model.layers`; for DPED: 8 instance norms, a halo of 4 + 10 × 1 + 4 rows):

1. **Statistics** (one streaming pass per normalisation layer: the description's
   :func:`~dpedkit.model.layers.segments`). Each pass reads the maps cached at the previous
   norm strip by strip (the pre-norm map and the residual skips), runs the steps up to the
   next norm, accumulates that norm's per-channel mean and variance (strip moments merged in
   float64, Chan et al.) and writes the new maps back in place. For DPED two full-size
   64-channel maps are cached — the residual stream and the latest convolution output — in
   float16 (float32 if a value would overflow), in RAM when they fit the budget, otherwise
   in an unlinked temporary file read and written by rows. Each convolution runs once.
   Rounding the cache to float16 perturbs the activations by about 5e-4 relative, but a
   statistic averages millions of them: the means and variances stay within ~1e-6 relative
   of the whole-image ones.
2. **Output** (1 pass): the whole network again from the input photo in float32, strip by
   strip with a halo of the receptive field's radius, normalised with the global
   statistics. No cached value enters the output, so it equals ``generate(g, x)`` to float
   tolerance (max abs ~1e-6 on photos; the tests demand 1e-4).

Compute: ~1.8× one forward pass for DPED (the statistics passes skip the two 9×9 layers,
conv10 and conv11) plus the cache traffic. Memory: a few strips of the widest map,
planned from the budget (:mod:`dpedkit.enhance.planner`), plus the cache when it is in RAM.

Images are HWC uint8 RGB; rows are image rows (y, top = 0); a strip [r0, r1) is half-open.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dpedkit.enhance.planner import default_budget, plan
from dpedkit.model.inference import Moments, generate, to_image, to_tensor
from dpedkit.model.layers import (Conv, InstanceNorm, LayerNet, ScaledTanh, Segment, norms, radius, reuses_slot,
                                  segments, walk)

class RowStore:
    """An (H, W, C) array kept in RAM or in an unlinked temporary file, read and written by rows.

    File reads and writes use pread/pwrite into private buffers (not mmap), so the cache
    occupies the page cache, which the kernel may drop, never this process's resident memory.
    """

    def __init__(self, height: int, width: int, channels: int, dtype, directory: str | None = None,
                 in_ram: bool = True):
        self.centred = False
        self.shape, self.dtype = (height, width, channels), np.dtype(dtype)
        self.row_bytes = width * channels * self.dtype.itemsize
        self.read_offset = self.write_offset = None
        if in_ram:
            self.array, self.file = np.empty(self.shape, self.dtype), None
        else:
            self.array = None
            self.file = tempfile.TemporaryFile(prefix="dpedkit-cache-", dir=directory)
            self.file.truncate(height * self.row_bytes)

    def read(self, r0: int, r1: int) -> np.ndarray:
        if self.file is None:
            return self.array[r0:r1].copy()
        buf = np.empty((r1 - r0,) + self.shape[1:], self.dtype)
        view, offset, done = memoryview(buf).cast("B"), r0 * self.row_bytes, 0
        while done < len(view):
            n = os.preadv(self.file.fileno(), [view[done:]], offset + done)
            if n <= 0:
                raise OSError("short read from the activation cache")
            done += n
        return buf

    def write(self, r0: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, self.dtype)
        if self.file is None:
            self.array[r0:r0 + rows.shape[0]] = rows
            return
        view, offset, done = memoryview(rows).cast("B"), r0 * self.row_bytes, 0
        while done < len(view):
            done += os.pwritev(self.file.fileno(), [view[done:]], offset + done)

    def new_layer(self) -> None:
        """Rows read from now on hold the previous layer; rows written, the next one (stored
        centred when ``self.centred``, see :meth:`put`)."""
        self.read_offset, self.write_offset = self.write_offset, None

    def put(self, r0: int, t: torch.Tensor) -> None:
        """Write a (1, C, h, W) tensor as rows [r0, r0 + h), minus the layer's per-channel offset.

        The offset (the first strip's channel means) keeps float16's relative rounding error
        on the deviation from the mean rather than on the value: pre-norm activations can sit
        far from zero with a small spread, and it is the spread that normalisation magnifies.
        A value beyond float16's range becomes inf, which makes every statistic that depends
        on it non-finite (checked by :func:`statistics`). Pre-norm maps are stored centred, skips not.
        """
        if self.write_offset is None:
            self.write_offset = (t.mean(dim=(0, 2, 3), keepdim=True) if self.dtype == np.float16 and self.centred
                                 else torch.zeros(1, t.shape[1], 1, 1, device=t.device, dtype=t.dtype))
        rows = (t - self.write_offset)[0].permute(1, 2, 0)
        self.write(r0, rows.to("cpu", torch.float16 if self.dtype == np.float16 else torch.float32).numpy())

    def tensor(self, rows: np.ndarray, device, dtype) -> torch.Tensor:
        """(h, W, C) rows read from this store → (1, C, h, W) channels_last tensor with the offset added back."""
        t = torch.from_numpy(rows).to(device).permute(2, 0, 1)[None].to(dtype, copy=True)
        return t.add_(self.read_offset.to(dtype))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.array = None


def conv_rows(conv: torch.nn.Conv2d, x: torch.Tensor, a: int, b: int, height: int) -> tuple[torch.Tensor, int, int]:
    """``conv`` (stride 1, zero 'same' padding) on rows [a, b) of a map ``height`` rows tall.

    Returns the output and the rows [a', b') it is exact for: at the image's top and bottom
    the zero padding is the whole-image convolution's own; at an interior edge the ``k // 2``
    rows that saw padding instead of the neighbouring rows are cropped (a view, no copy).
    """
    p = conv.kernel_size[0] // 2
    y = F.conv2d(x, conv.weight, conv.bias, padding=p)
    top, bottom = (p if a > 0 else 0), (p if b < height else 0)
    return y[:, :, top:y.shape[2] - bottom], a + top, b - bottom


@dataclass
class Rows:
    """Rows [a, b) of a map (1, C, b - a, W): the rows it holds exact values for."""
    t: torch.Tensor
    a: int
    b: int

    def crop(self, r0: int, r1: int) -> torch.Tensor:
        return self.t[:, :, r0 - self.a:r1 - self.a]


class StripOps:
    """The layer steps on strips (:func:`dpedkit.model.layers.walk`): convolutions crop the
    rows their padding spoiled, norms use the global ``moments`` (one per norm, in order;
    those not yet computed are never reached)."""
    in_place = True

    def __init__(self, net: LayerNet, moments: list["Moments"], height: int):
        self.net, self.moments, self.height = net, moments, height
        self.index = {n.name: i for i, n in enumerate(norms(net.steps))}

    def conv(self, s: Conv, x: Rows) -> Rows:
        return Rows(*conv_rows(self.net.get_submodule(s.name), x.t, x.a, x.b, self.height))

    def norm(self, s: InstanceNorm, x: Rows) -> Rows:
        scale, shift = self.moments[self.index[s.name]].scale_shift(self.net.get_submodule(s.name), x.t)
        x.t.mul_(scale).add_(shift)
        return x

    def relu(self, s, x: Rows) -> Rows:
        x.t.relu_()
        return x

    def tanh(self, s: ScaledTanh, x: Rows) -> Rows:
        x.t.tanh_().mul_(s.scale).add_(s.shift)
        return x

    def add(self, skip: Rows, x: Rows, may_overwrite: bool) -> Rows:
        if may_overwrite and (skip.a, skip.b) == (x.a, x.b):
            skip.t.add_(x.t)
            return skip
        return Rows(skip.crop(x.a, x.b).add(x.t), x.a, x.b)

    def copy(self, x: Rows) -> Rows:
        return Rows(x.t.clone(), x.a, x.b)


class _Overflow(Exception):
    """A cached activation beyond float16's range (internal: the cache is redone in float32)."""


def _stream(height: int, rows: int, halo: int, read: list[RowStore], write: list[RowStore], step) -> None:
    """One in-place pass: ``step(r0, r1, a, b, parts)`` gets rows [a, b) of every ``read``
    store (b - a ≤ rows + 2·halo) and returns each ``write`` store's new rows [r0, r1)."""
    carry = [None] * len(read)
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        a, b = max(0, r0 - halo), min(height, r1 + halo)
        parts = []
        for i, store in enumerate(read):
            fresh = store.read(r0, b)
            parts.append(fresh if a == r0 else np.concatenate([carry[i], fresh]))
        outs = step(r0, r1, a, b, parts)
        for i in range(len(read)):
            carry[i] = parts[i][r1 - halo - a:r1 - a].copy()       # the original rows the next strip needs
        for store, out in zip(write, outs):
            store.put(r0, out)


def _pass_stores(k: int, segs: list[Segment], stores: list[RowStore], new_store) -> tuple[list, list]:
    """The stores pass ``k`` reads (slots ``low … entry``) and writes (``low … exit``): a slot
    of unchanged width is rewritten in place, any other gets ``new_store(channels)``."""
    seg, before = segs[k], segs[k - 1] if k else None
    read = stores[seg.low:seg.entry + 1] if k else []
    write = [stores[i] if reuses_slot(before, seg, i) else new_store(seg.channels[i])
             for i in range(seg.low, seg.exit + 1)]
    for store in read:
        store.new_layer()
    for i, store in enumerate(write, seg.low):
        if store not in read:
            store.new_layer()
        store.centred = i == seg.exit          # the pre-norm map centred, the skips not
    return read, write


def _stats_pass(k: int, segs: list[Segment], ops: StripOps, img: np.ndarray, stores: list[RowStore], rows: int,
                device, dtype, new_store) -> list[RowStore]:
    """Pass ``k``: segment ``k`` over the photo, strip by strip; norm ``k``'s moments from its
    input. Returns the stores holding the maps at norm ``k`` (slots ``0 … exit``)."""
    seg = segs[k]
    read, write = _pass_stores(k, segs, stores, new_store)

    def step(r0, r1, a, b, parts):
        # slots below seg.low are never reached; the current map is the last slot read. It is
        # handed to walk() without a reference kept here, so it is freed as soon as it is used.
        stack = [None] * seg.low + [Rows(store.tensor(p, device, dtype), a, b) for store, p in zip(read, parts)]
        x, stack = walk(seg.steps, stack.pop() if k else Rows(to_tensor(img[a:b], device, dtype), a, b), ops,
                        stack, owned=True)
        out = [m.crop(r0, r1) for m in stack[seg.low:]] + [x.crop(r0, r1)]
        ops.moments[k].add(out[-1])
        return out
    _stream(img.shape[0], rows, seg.halo, read, write, step)
    for store in read:
        if store not in write:
            store.close()
    return stores[:seg.low] + write


@torch.inference_mode()
def statistics(g: LayerNet, img: np.ndarray, device: torch.device, rows: int, dtype=torch.float32,
               cache: str = "ram", cache_dir: str | None = None, cache_dtype=np.float16,
               progress=None) -> list[Moments]:
    """The global statistics of the generator's instance-norm layers on ``img``, in the
    order of its layer description (DPED: block 1 norm1, norm2, block 2 norm1, …)."""
    height, width = img.shape[:2]
    segs = segments(g.steps)[:-1]                     # the last segment has no norm at its end
    rows = max(rows, max(s.halo for s in segs) + 1)
    moments = [Moments() for _ in segs]
    ops = StripOps(g, moments, height)
    stores: list[RowStore] = []
    try:
        for k in range(len(segs)):
            stores = _stats_pass(k, segs, ops, img, stores, rows, device, dtype,
                                 lambda ch: RowStore(height, width, ch, cache_dtype, cache_dir, cache == "ram"))
            if progress:
                progress(k + 1, passes(g))
    finally:
        for store in stores:
            store.close()
    if not all(m.finite() for m in moments):
        raise _Overflow
    return moments


def passes(g: LayerNet) -> int:
    """Passes over the photo in strips: one per instance norm, and the output pass."""
    return len(norms(g.steps)) + 1


@torch.inference_mode()
def output_strip(g: LayerNet, img: np.ndarray, r0: int, r1: int, moments: list[Moments], device,
                 dtype=torch.float32) -> torch.Tensor:
    """Generator output rows [r0, r1) of ``img`` (1, C, r1 - r0, W), from the input photo with
    a halo of the network's radius and the global normalisation statistics."""
    height, halo = img.shape[0], radius(g.steps)
    a, b = max(0, r0 - halo), min(height, r1 + halo)
    x, _ = walk(g.steps, Rows(to_tensor(img[a:b], device, dtype), a, b), StripOps(g, moments, height), owned=True)
    return x.crop(r0, r1)


def enhance_strips(g: LayerNet, img: np.ndarray, device: torch.device, rows: int, dtype=torch.float32,
                   cache: str = "ram", cache_dir: str | None = None, progress=None) -> np.ndarray:
    """The enhanced photo (uint8 RGB), exactly, in strips of ``rows`` rows."""
    try:
        moments = statistics(g, img, device, rows, dtype, cache, cache_dir, np.float16, progress)
    except _Overflow:   # an activation beyond float16's range: cache in float32 instead
        moments = statistics(g, img, device, rows, dtype, cache, cache_dir, np.float32, progress)
    height = img.shape[0]
    out = np.empty(img.shape, np.uint8)
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        out[r0:r1] = to_image(output_strip(g, img, r0, r1, moments, device, dtype))
    if progress:
        progress(passes(g), passes(g))
    return out


def enhance_exact(g: LayerNet, img: np.ndarray, device: torch.device, dtype=torch.float32,
                  max_bytes: int | None = None, cache_dir: str | None = None, progress=None,
                  log=None) -> np.ndarray:
    """Exact enhancement within ``max_bytes`` (default :func:`default_budget`): whole-image
    when it fits, else in strips. :class:`BudgetError` when not even a thin strip fits."""
    budget = default_budget(device) if max_bytes is None else max_bytes
    p = plan(img.shape[0], img.shape[1], budget, device, dtype, steps=g.steps)
    if p.mode == "whole":
        if log and img.shape[0] * img.shape[1] >= 4e6:      # a minute or more on a CPU: say what is going on
            log(f"{img.shape[1]}×{img.shape[0]}: whole photo in one piece, about {p.estimate / 2**30:.1f} of "
                f"{budget / 2**30:.1f} GiB")
        return to_image(generate(g, to_tensor(img, device, dtype)))
    if log:
        log(f"{img.shape[1]}×{img.shape[0]}: exact in strips of {p.rows} rows, cache in {p.cache}, "
            f"about {p.estimate / 2**30:.1f} of {budget / 2**30:.1f} GiB")
    return enhance_strips(g, img, device, p.rows, dtype, p.cache, cache_dir, progress)
