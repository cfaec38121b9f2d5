"""Exact enhancement of a photo of any size within a memory budget.

The DPED generator normalises each of its 8 instance-norm layers over the *whole* image, so
plain tiling changes the result. Here the photo is processed in full-width strips of rows
with halos for the convolutions, in two phases:

1. **Statistics** (8 streaming passes, one per normalisation layer). Each pass reads the
   previous layer's activations strip by strip, runs one convolution, accumulates that
   layer's per-channel mean and variance (strip moments merged in float64, Chan et al.) and
   writes the new activations back in place. Two full-size 64-channel maps are cached — the
   residual stream and the latest convolution output — in float16 (float32 if a value would
   overflow), in RAM when they fit the budget, otherwise in an unlinked temporary file read
   and written by rows. Each convolution runs once. Rounding the cache to float16 perturbs
   the activations by about 5e-4 relative, but a statistic averages millions of them: the
   means and variances stay within ~1e-6 relative of the whole-image ones.
2. **Output** (1 pass): the whole network again from the input photo in float32, strip by
   strip with an 18-row halo (4 + 10 × 1 + 4: the receptive field's radius), normalised with
   the global statistics. No cached value enters the output, so it equals
   ``generate(g, x)`` to float tolerance (max abs ~1e-6 on photos; the tests demand 1e-4).

Compute: ~1.8× one forward pass (the statistics passes skip the two 9×9 layers, conv10 and
conv11) plus the cache traffic. Memory: a few 64-channel float32 strips, planned from the
budget, plus the cache when it is in RAM.

Images are HWC uint8 RGB; rows are image rows (y, top = 0); a strip [r0, r1) is half-open.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dpedkit.model.inference import available_bytes, bytes_needed, generate, to_image, to_tensor
from dpedkit.model.networks import Generator

FINAL_HALO = 4 + 10 + 4     # rows of context the whole network needs on each side
STATS_HALO = 5              # the widest statistics pass: head (9×9) then conv1 (3×3)
# float32 64-channel strips alive at once, per strip row incl. halo, measured with ru_maxrss on
# CPU (tests/test_bounded.py checks the plan holds); covers F.pad copies and oneDNN reorders
STRIP_MAPS = 7
OVERHEAD = 64 << 20         # oneDNN scratch and allocator slack, independent of the strip size
PASSES = 9                  # 8 statistics passes + the output pass
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class BudgetError(RuntimeError):
    """The budget cannot hold even the smallest strip of this photo."""


def parse_size(text: str | int) -> int:
    """Bytes from ``4G``, ``512M``, ``1.5GiB``, ``4GB`` or a plain number (binary units: G = 2**30)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", str(text).upper())
    if not m:
        raise ValueError(f"not a memory size: {text!r} (e.g. 4G, 512M, 1.5GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def resident_bytes() -> int:
    """This process's resident memory now (bytes); 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def default_budget(device: torch.device) -> int:
    """A safe share of what the device has free: 3/4 of it (2 GiB when unknown)."""
    free = available_bytes(device)
    if free is None:
        return 2 * 2**30
    used = torch.cuda.memory_allocated(device) if device.type == "cuda" else resident_bytes()
    return used + free * 3 // 4


@dataclass
class Plan:
    """How one photo is enhanced within ``budget`` bytes (a whole-process figure on CPU)."""
    mode: str               # "whole" (one piece, fastest) or "strips" (exact, bounded)
    rows: int               # strip height (px) of the output pass; the photo's height when whole
    cache: str              # "none", "ram" or "disk"
    estimate: int           # estimated peak bytes of the process (CPU) or device memory (CUDA)
    budget: int


def _strip_bytes(rows: int, width: int, item: int) -> int:
    return STRIP_MAPS * 64 * (rows + 2 * FINAL_HALO) * width * item


def plan(height: int, width: int, budget: int, device: torch.device = torch.device("cpu"),
         dtype: torch.dtype = torch.float32, base: int | None = None, cache: str = "auto") -> Plan:
    """Whole-image when it fits, else the tallest strips that do.

    ``base``: memory already in use (default: this process's resident memory on CPU, the
    allocated CUDA memory on a GPU). The input and output photos (uint8) count against the
    budget on a CPU; the activation cache goes to RAM when it takes at most half of what is
    left, else to disk (``cache="ram"``/``"disk"`` forces it).
    """
    item = torch.empty((), dtype=dtype).element_size()
    if base is None:
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else resident_bytes()
    photos = 2 * height * width * 3 if device.type == "cpu" else 0
    whole = base + photos + OVERHEAD + bytes_needed(height, width, dtype)
    if whole <= budget:
        return Plan("whole", height, "none", whole, budget)
    left = budget - base - photos - OVERHEAD
    cache_bytes = 2 * height * width * 64 * 2          # two float16 maps
    on_host = device.type == "cpu"
    if cache == "auto":
        cache = "ram" if on_host and cache_bytes <= left // 2 else "disk"
    if cache == "ram" and on_host:
        left -= cache_bytes
    per_row = _strip_bytes(1, width, item) - _strip_bytes(0, width, item)
    rows = (left - _strip_bytes(0, width, item)) // per_row if left > 0 else 0
    if rows < 2 * FINAL_HALO:
        in_ram = cache_bytes if cache == "ram" and on_host else 0
        need = base + photos + OVERHEAD + in_ram + _strip_bytes(2 * FINAL_HALO, width, item)
        raise BudgetError(f"a {width}×{height} photo needs at least {need / 2**30:.2f} GiB to be enhanced exactly "
                          f"in strips; the budget is {budget / 2**30:.2f} GiB (--max-memory)")
    rows = min(rows, height)
    in_ram = cache_bytes if cache == "ram" and on_host else 0
    est = base + photos + OVERHEAD + in_ram + _strip_bytes(rows, width, item)
    return Plan("strips", int(rows), cache, est, budget)


class RowStore:
    """An (H, W, C) array kept in RAM or in an unlinked temporary file, read and written by rows.

    File reads and writes use pread/pwrite into private buffers (not mmap), so the cache
    occupies the page cache, which the kernel may drop, never this process's resident memory.
    """

    def __init__(self, height: int, width: int, channels: int, dtype, directory: str | None = None,
                 in_ram: bool = True, centred: bool = False):
        self.centred = centred
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
        """Rows read from now on hold the previous layer; rows written, the next one."""
        self.read_offset, self.write_offset = self.write_offset, None

    def put(self, r0: int, t: torch.Tensor) -> None:
        """Write a (1, C, h, W) tensor as rows [r0, r0 + h), minus the layer's per-channel offset.

        The offset (the first strip's channel means) keeps float16's relative rounding error
        on the deviation from the mean rather than on the value: pre-norm activations can sit
        far from zero with a small spread, and it is the spread that normalisation magnifies.
        A value beyond float16's range becomes inf, which makes every statistic that depends
        on it non-finite (checked by :func:`statistics`).
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


def _norm_relu_(x: torch.Tensor, moments: Moments, norm) -> torch.Tensor:
    scale, shift = moments.scale_shift(norm, x)
    return x.mul_(scale).add_(shift).relu_()


class _Overflow(Exception):
    pass


def _stream(height: int, rows: int, halo: int, stores: list[RowStore], step) -> None:
    """One in-place pass over ``stores``: ``step(r0, r1, a, b, inputs)`` gets rows [a, b) of
    every store (b - a ≤ rows + 2·halo) and returns each store's new rows [r0, r1)."""
    carry = [None] * len(stores)
    for store in stores:
        store.new_layer()
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        a, b = max(0, r0 - halo), min(height, r1 + halo)
        parts = []
        for i, store in enumerate(stores):
            fresh = store.read(r0, b)
            parts.append(fresh if a == r0 else np.concatenate([carry[i], fresh]))
        outs = step(r0, r1, a, b, parts)
        for i, store in enumerate(stores):
            carry[i] = parts[i][r1 - halo - a:r1 - a].copy()       # the original rows the next strip needs
            store.put(r0, outs[i])


@torch.inference_mode()
def statistics(g: Generator, img: np.ndarray, device: torch.device, rows: int, dtype=torch.float32,
               cache: str = "ram", cache_dir: str | None = None, cache_dtype=np.float16,
               progress=None) -> list[Moments]:
    """The global statistics of the generator's 8 instance-norm layers on ``img``, in order
    (block 1 norm1, norm2, block 2 norm1, …)."""
    height, width = img.shape[:2]
    rows = max(rows, STATS_HALO + 1)
    blocks = list(g.blocks)
    moments = [Moments() for _ in range(2 * len(blocks))]
    stream_dtype, latest_dtype = cache_dtype if isinstance(cache_dtype, tuple) else (cache_dtype, cache_dtype)
    stream = RowStore(height, width, 64, stream_dtype, cache_dir, cache == "ram")    # residual stream h
    latest = RowStore(height, width, 64, latest_dtype, cache_dir, cache == "ram", centred=True)
    done = [0]

    def tick():
        done[0] += 1
        if progress:
            progress(done[0], PASSES)

    try:
        for r0 in range(0, height, rows):                    # pass 1: head, block 1 conv1
            r1 = min(height, r0 + rows)
            a, b = max(0, r0 - STATS_HALO), min(height, r1 + STATS_HALO)
            h, ha, hb = conv_rows(g.head, to_tensor(img[a:b], device, dtype), a, b, height)
            h.relu_()
            y, ya, _ = conv_rows(blocks[0].conv1, h, ha, hb, height)
            y = y[:, :, r0 - ya:r1 - ya]
            moments[0].add(y)
            stream.put(r0, h[:, :, r0 - ha:r1 - ha])
            latest.put(r0, y)
        tick()
        for k, block in enumerate(blocks):
            def norm2_pass(r0, r1, a, b, parts, block=block, k=k):
                # latest = conv1 output of block k → conv2 output
                y = _norm_relu_(latest.tensor(parts[0], device, dtype), moments[2 * k], block.norm1)
                z, za, _ = conv_rows(block.conv2, y, a, b, height)
                z = z[:, :, r0 - za:r1 - za]
                moments[2 * k + 1].add(z)
                return [z]
            _stream(height, rows, 1, [latest], norm2_pass)
            tick()
            if k + 1 == len(blocks):
                break

            def norm1_pass(r0, r1, a, b, parts, block=block, k=k):
                # stream = block k's input, latest = its conv2 output → block k+1's input and conv1 output
                z = _norm_relu_(latest.tensor(parts[1], device, dtype), moments[2 * k + 1], block.norm2)
                h = stream.tensor(parts[0], device, dtype).add_(z)
                del z
                y, ya, _ = conv_rows(blocks[k + 1].conv1, h, a, b, height)
                y = y[:, :, r0 - ya:r1 - ya]
                moments[2 * k + 2].add(y)
                return [h[:, :, r0 - a:r1 - a], y]
            _stream(height, rows, 1, [stream, latest], norm1_pass)
            tick()
    finally:
        stream.close()
        latest.close()
    if not all(m.finite() for m in moments):
        raise _Overflow
    return moments


@torch.inference_mode()
def output_strip(g: Generator, img: np.ndarray, r0: int, r1: int, moments: list[Moments], device,
                 dtype=torch.float32) -> torch.Tensor:
    """Generator output rows [r0, r1) of ``img`` (1, 3, r1 - r0, W), from the input photo with
    an 18-row halo and the global normalisation statistics."""
    height = img.shape[0]
    a, b = max(0, r0 - FINAL_HALO), min(height, r1 + FINAL_HALO)
    h, a, b = conv_rows(g.head, to_tensor(img[a:b], device, dtype), a, b, height)
    h.relu_()
    for k, block in enumerate(g.blocks):
        y, ya, yb = conv_rows(block.conv1, h, a, b, height)
        _norm_relu_(y, moments[2 * k], block.norm1)
        z, za, zb = conv_rows(block.conv2, y, ya, yb, height)
        del y
        _norm_relu_(z, moments[2 * k + 1], block.norm2)
        h = h[:, :, za - a:zb - a].add(z)
        del z
        a, b = za, zb
    for conv in (g.conv10, g.conv11):
        h, a, b = conv_rows(conv, h, a, b, height)
        h.relu_()
    out, a, b = conv_rows(g.tail, h, a, b, height)
    del h
    return out[:, :, r0 - a:r1 - a].tanh_().mul_(0.58).add_(0.5)


def enhance_strips(g: Generator, img: np.ndarray, device: torch.device, rows: int, dtype=torch.float32,
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
        progress(PASSES, PASSES)
    return out


def enhance_exact(g: Generator, img: np.ndarray, device: torch.device, dtype=torch.float32,
                  max_bytes: int | None = None, cache_dir: str | None = None, progress=None,
                  log=None) -> np.ndarray:
    """Exact enhancement within ``max_bytes`` (default :func:`default_budget`): whole-image
    when it fits, else in strips. :class:`BudgetError` when not even a thin strip fits."""
    budget = default_budget(device) if max_bytes is None else max_bytes
    p = plan(img.shape[0], img.shape[1], budget, device, dtype)
    if p.mode == "whole":
        if log and img.shape[0] * img.shape[1] >= 4e6:      # a minute or more on a CPU: say what is going on
            log(f"{img.shape[1]}×{img.shape[0]}: whole photo in one piece, about {p.estimate / 2**30:.1f} of "
                f"{budget / 2**30:.1f} GiB")
        return to_image(generate(g, to_tensor(img, device, dtype)))
    if log:
        log(f"{img.shape[1]}×{img.shape[0]}: exact in strips of {p.rows} rows, cache in {p.cache}, "
            f"about {p.estimate / 2**30:.1f} of {budget / 2**30:.1f} GiB")
    return enhance_strips(g, img, device, p.rows, dtype, p.cache, cache_dir, progress)
