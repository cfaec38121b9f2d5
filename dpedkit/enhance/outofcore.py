"""Exact inference of a learned ISP (PyNET, MicroISP) in bounded memory: out of core, layer by layer.

Both networks have operations over the whole image — PyNET's instance norms, MicroISP's
channel attention (a mean over a stride-3 convolution chain) — so independent tiles change
the result. Here the network's own ``forward`` runs once on a *traced* input
(:class:`Lazy`): every torch call on it records an operation instead of computing it
(``__torch_function__``), building a graph; nothing about the networks is written twice.

- A convolution is a **node**: it is computed once, strip by strip of output rows, from the
  rows of its input it needs (its kernel's halo, the stride), and its output map is stored
  whole in a :class:`~dpedkit.enhance.strips.RowStore` (float32, in RAM or in an unlinked
  file read and written by rows). Padding (reflection, replication or zeros) is applied to
  a strip only at the map's true borders: inside, the halo is the neighbouring rows.
- An **instance norm** of a convolution's output needs that output's per-channel mean and
  variance: they are gathered while the convolution's strips are written (float64,
  :class:`~dpedkit.model.inference.Moments`) and applied when the map is read.
- A **global mean** (``x.mean(dim=(2, 3))``, MicroISP's attention) is a node too: a streamed
  sum; what follows it on ``(1, C, 1, 1)`` values (the attention's 1×1 convolutions,
  sigmoid) is computed once, when first needed (:class:`Small`).
- Everything else is a **view**, computed on the fly from its inputs' rows whenever a
  node reads it: concatenation, sums and products, LeakyReLU/PReLU/sigmoid/tanh, 2×2
  max-pooling, bilinear ×2 upsampling (``align_corners=True``), depth-to-space.

:func:`run` computes the nodes the output needs, in the order the forward created them,
and frees each stored map once its last reader is done; the output view is then rendered
strip by strip. Strip heights come from the memory plan (:func:`dpedkit.enhance.planner.plan_graph`),
from each operation's :meth:`Lazy.cost`. An operation the tracer does not know raises
:class:`OutOfCoreError`, never a silent approximation.

The result equals the whole-image forward up to float rounding (summation order in the
statistics; max abs ≈ 1e-6 on [0, 1] outputs, the tests demand 1e-4). Maps are NCHW with
N = 1; rows are map rows (top = 0) and a range [a, b) is half-open.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from dpedkit.enhance.strips import RowStore
from dpedkit.model.inference import Moments
from dpedkit.errors import DpedkitError

STORE = np.float32          # stored maps: float32 (exact)


class OutOfCoreError(DpedkitError, RuntimeError):
    """The network uses an operation the out-of-core executor cannot run exactly."""


class Graph:
    """The nodes a trace created, in creation order (a valid evaluation order)."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype, self.nodes = device, dtype, []

    def add(self, node: "Node") -> None:
        node.index = len(self.nodes)
        self.nodes.append(node)


def _flat(args):
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from _flat(a)
        else:
            yield a


class Traced:
    """Base of the traced values; their torch calls are routed to :func:`_dispatch`."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})

    def __add__(self, other):
        return _dispatch(torch.add, (self, other), {})

    def __radd__(self, other):
        return _dispatch(torch.add, (other, self), {})

    def __mul__(self, other):
        return _dispatch(torch.mul, (self, other), {})

    def __rmul__(self, other):
        return _dispatch(torch.mul, (other, self), {})

    def __sub__(self, other):
        return _dispatch(torch.sub, (self, other), {})


class Small(Traced):
    """A small value ``(1, C, 1, 1)`` that depends on global means: ``func(*args)``, computed
    once when first needed (after the nodes it depends on have run)."""

    def __init__(self, func, args, kwargs, node: "Node | None" = None):
        self.func, self.args, self.kwargs, self.node, self._value = func, args, kwargs, node, None

    def deps(self) -> list:
        return ([self.node] if self.node is not None else []) + [a for a in _flat(self.args) if isinstance(a, Traced)]

    def value(self) -> torch.Tensor:
        if self._value is None:
            self._value = self.func(*_resolve(self.args), **self.kwargs)
        return self._value

    def release(self) -> None:
        pass


def _resolve(args):
    return [(_resolve(a) if isinstance(a, (list, tuple)) else a.value() if isinstance(a, (Small, MeanNode)) else a)
            for a in args]


class Lazy(Traced):
    """A map ``(1, C, H, W)`` computed by rows on demand. ``rows(a, b)`` gives rows [a, b)
    exactly; ``cost(n)`` estimates the bytes of the temporaries producing ``n`` rows takes."""

    def __init__(self, graph: Graph, shape):
        self.graph, self.shape = graph, torch.Size(shape)

    # what module code asks of its input
    @property
    def ndim(self) -> int:
        return 4

    def dim(self) -> int:
        return 4

    def size(self, d: int | None = None):
        return self.shape if d is None else self.shape[d]

    @property
    def channels(self) -> int:
        return self.shape[1]

    def row_bytes(self) -> int:
        """Bytes of one row of this map in the compute dtype."""
        return self.shape[1] * self.shape[3] * torch.empty((), dtype=self.graph.dtype).element_size()

    def deps(self) -> list:
        return []

    def rows(self, a: int, b: int) -> torch.Tensor:
        raise NotImplementedError

    def cost(self, n: int) -> int:
        return n * self.row_bytes()

    def mean(self, dim=None, keepdim: bool = False, dtype=None):
        if dim is None or sorted(d % 4 for d in ((dim,) if isinstance(dim, int) else dim)) != [2, 3] or dtype:
            raise OutOfCoreError("out of core, only means over the whole H × W are supported")
        node = MeanNode(self)
        return Small((lambda m: m) if keepdim else (lambda m: m.flatten(1)), (node,), {}, node)


class Input(Lazy):
    """The network's input, a CPU tensor ``(1, C, H, W)`` (rows moved to the device as read)."""

    def __init__(self, graph: Graph, x: torch.Tensor):
        super().__init__(graph, x.shape)
        self.x = x

    def rows(self, a, b):
        return self.x[:, :, a:b].to(self.graph.device, self.graph.dtype)


# -- views: computed from their inputs' rows whenever read -------------------------------------
class Elementwise(Lazy):
    """``func(*args)`` applied to rows: maps of one shape, scalars, fixed tensors (a PReLU's
    slopes) and :class:`Small` values (broadcast over rows and columns)."""

    def __init__(self, func, args, kwargs, shape):
        maps = [a for a in args if isinstance(a, Lazy)]
        super().__init__(maps[0].graph, shape)
        self.func, self.args, self.kwargs = func, args, kwargs

    def deps(self):
        return [a for a in self.args if isinstance(a, Traced)]

    def rows(self, a, b):
        args = [x.rows(a, b) if isinstance(x, Lazy) else x.value() if isinstance(x, Small) else x for x in self.args]
        return self.func(*args, **self.kwargs)

    def cost(self, n):
        return sum(x.cost(n) for x in self.args if isinstance(x, Lazy)) + n * self.row_bytes()


class Cat(Lazy):
    """Maps concatenated along channels."""

    def __init__(self, maps):
        h, w = maps[0].shape[2:]
        if any(tuple(m.shape[2:]) != (h, w) for m in maps):
            raise OutOfCoreError("torch.cat of maps of different sizes")
        super().__init__(maps[0].graph, (1, sum(m.channels for m in maps), h, w))
        self.maps = maps

    def deps(self):
        return list(self.maps)

    def rows(self, a, b):
        return torch.cat([m.rows(a, b) for m in self.maps], 1)

    def cost(self, n):
        return sum(m.cost(n) for m in self.maps) + n * self.row_bytes()


class Pool(Lazy):
    """``k × k`` max-pooling with stride ``k``, no padding (the last rows/columns that do not
    fill a window are dropped, as PyTorch does)."""

    def __init__(self, x: Lazy, k: int):
        super().__init__(x.graph, (1, x.channels, x.shape[2] // k, x.shape[3] // k))
        self.x, self.k = x, k

    def deps(self):
        return [self.x]

    def rows(self, a, b):
        return F.max_pool2d(self.x.rows(a * self.k, b * self.k), self.k)

    def cost(self, n):
        return self.x.cost(n * self.k) + n * self.row_bytes()


class Upsample(Lazy):
    """Bilinear upsampling with ``align_corners=True`` to ``size``: columns by PyTorch on the
    strip (whose rows it leaves as they are), rows as PyTorch's kernel computes them
    (source row ``i · (H − 1)/(H' − 1)`` in float32, linear between its two neighbours)."""

    def __init__(self, x: Lazy, size: tuple[int, int]):
        super().__init__(x.graph, (1, x.channels) + tuple(size))
        self.x = x
        self.scale = (x.shape[2] - 1) / (size[0] - 1) if size[0] > 1 else 0.0

    def deps(self):
        return [self.x]

    def _sources(self, a, b):
        src = torch.arange(a, b, dtype=torch.float32) * torch.tensor(self.scale, dtype=torch.float32)
        i0 = src.long().clamp(max=self.x.shape[2] - 1)
        lam = (src - i0).clamp(0, 1)
        return i0, (i0 + 1).clamp(max=self.x.shape[2] - 1), lam

    def rows(self, a, b):
        i0, i1, lam = self._sources(a, b)
        lo, hi = int(i0[0]), int(i1[-1]) + 1
        x = F.interpolate(self.x.rows(lo, hi), size=(hi - lo, self.shape[3]), mode="bilinear", align_corners=True)
        dev = x.device
        lam = lam.to(dev, x.dtype).view(1, 1, -1, 1)
        return x.index_select(2, (i0 - lo).to(dev)) * (1 - lam) + x.index_select(2, (i1 - lo).to(dev)) * lam

    def cost(self, n):
        src = math.ceil(n * self.scale) + 2
        return self.x.cost(src) + src * self.row_bytes() + 4 * n * self.row_bytes()


class Shuffle(Lazy):
    """Depth-to-space (``F.pixel_shuffle``) by ``r``."""

    def __init__(self, x: Lazy, r: int):
        c, h, w = x.shape[1:]
        super().__init__(x.graph, (1, c // (r * r), h * r, w * r))
        self.x, self.r = x, r

    def deps(self):
        return [self.x]

    def rows(self, a, b):
        ia, ib = a // self.r, -(-b // self.r)
        return F.pixel_shuffle(self.x.rows(ia, ib), self.r)[:, :, a - ia * self.r:b - ia * self.r]

    def cost(self, n):
        return self.x.cost(n // self.r + 2) + (n + 2 * self.r) * self.row_bytes()


class Padded(Lazy):
    """``F.pad`` of a map, pending: only a convolution may read it (it pads each strip at the
    map's true borders only)."""

    def __init__(self, x: Lazy, pad: tuple[int, int, int, int], mode: str):
        l, r, t, b = pad
        super().__init__(x.graph, (1, x.channels, x.shape[2] + t + b, x.shape[3] + l + r))
        self.x, self.pad, self.mode = x, pad, mode

    def deps(self):
        return [self.x]

    def rows(self, a, b):
        raise OutOfCoreError("a padded map is only supported as a convolution's input")


class Normed(Lazy):
    """Instance norm of a convolution's output: ``x · scale + shift`` from the node's global
    per-channel statistics, the layer's weight and bias (None: 1 and 0) and eps."""

    def __init__(self, node: "ConvNode", weight, bias, eps: float):
        super().__init__(node.graph, node.shape)
        self.node, self.eps, self._affine = node, eps, None
        c = node.channels
        self.weight = torch.ones(c) if weight is None else weight.detach()
        self.bias = torch.zeros(c) if bias is None else bias.detach()
        node.moments = node.moments or Moments()

    def deps(self):
        return [self.node]

    def rows(self, a, b):
        x = self.node.rows(a, b)
        if self._affine is None:
            norm = SimpleNamespace(weight=self.weight, bias=self.bias, eps=self.eps)
            self._affine = self.node.moments.scale_shift(norm, x)
        scale, shift = self._affine
        return x * scale + shift

    def cost(self, n):
        return self.node.cost(n) + n * self.row_bytes()


# -- nodes: computed once, in creation order -----------------------------------------------------
class Node:
    """A graph node: ``compute(rows, ...)`` runs it once over its input in strips of ``rows``
    output rows; ``release()`` frees what it holds."""
    index = -1

    def input_rows(self, n: int) -> int:
        """Rows of its input one strip of ``n`` output rows reads."""
        return n

    def pass_cost(self, n: int) -> int:
        """Bytes of the temporaries of one strip of ``n`` output rows while computing the node."""
        raise NotImplementedError


class ConvNode(Node, Lazy):
    """A 2-D convolution (any kernel, stride and groups; dilation 1), its output stored."""

    def __init__(self, x: Lazy, weight, bias, stride, pad: tuple[int, int, int, int], mode: str, groups: int):
        kh, kw = weight.shape[-2:]
        l, r, t, b = pad
        sh, sw = stride
        h, w = (x.shape[2] + t + b - kh) // sh + 1, (x.shape[3] + l + r - kw) // sw + 1
        if h < 1 or w < 1:
            raise OutOfCoreError(f"a {kh}×{kw} convolution of a {x.shape[2]}×{x.shape[3]} map has no output")
        Lazy.__init__(self, x.graph, (1, weight.shape[0], h, w))
        g = x.graph
        self.x, self.pad, self.mode, self.stride, self.groups = x, pad, mode, (sh, sw), groups
        self.weight = weight.detach().to(g.device, g.dtype)
        self.bias = None if bias is None else bias.detach().to(g.device, g.dtype)
        self.kernel, self.moments, self.store = (kh, kw), None, None
        g.add(self)

    def deps(self):
        return [self.x]

    def input_rows(self, n):
        return (n - 1) * self.stride[0] + self.kernel[0]

    def strip(self, r0: int, r1: int) -> torch.Tensor:
        """Output rows [r0, r1) computed from the input's rows (padded at the true borders only)."""
        l, r, t, b = self.pad
        lo = r0 * self.stride[0] - t
        hi = (r1 - 1) * self.stride[0] + self.kernel[0] - t
        a, z = max(0, lo), min(self.x.shape[2], hi)
        x = self.x.rows(a, z)
        pads = (l, r, a - lo, hi - z)
        if any(pads):
            x = F.pad(x, pads, mode=self.mode) if self.mode != "constant" else F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)

    def compute(self, rows: int, in_ram: bool, cache_dir: str | None) -> None:
        h, w = self.shape[2:]
        self.store = RowStore(h, w, self.channels, STORE, cache_dir, in_ram)
        for r0 in range(0, h, rows):
            out = self.strip(r0, min(h, r0 + rows))
            if self.moments is not None:
                self.moments.add(out)
            self.store.write(r0, out[0].permute(1, 2, 0).to("cpu", torch.float32).numpy())
            del out

    def rows(self, a, b):
        if self.store is None:
            raise OutOfCoreError("internal: a convolution read before it was computed")
        t = torch.from_numpy(self.store.read(a, b)).permute(2, 0, 1)[None]
        return t.to(self.graph.device, self.graph.dtype)

    def cost(self, n):
        return 2 * n * self.shape[3] * self.channels * 4 + n * self.row_bytes()

    def pass_cost(self, n):
        inp, x = self.input_rows(n), self.x
        padded_row = (x.shape[3] + self.pad[0] + self.pad[1]) * x.channels * self.graph.dtype.itemsize
        # the input strip and its padded copy, oneDNN's reorder of it; the output, its copy for
        # the store and the statistics' temporaries
        return x.cost(inp) + 2 * (inp + self.pad[2] + self.pad[3]) * padded_row + 5 * n * self.row_bytes()

    def stored_bytes(self) -> int:
        return self.shape[2] * self.shape[3] * self.channels * 4

    def release(self):
        if self.store is not None:
            self.store.close()
            self.store = None


class MeanNode(Node):
    """The per-channel mean of a map over all its rows and columns: a streamed float64 sum."""

    def __init__(self, x: Lazy):
        self.x, self.graph, self.shape, self._value = x, x.graph, (1, x.channels, x.shape[2], x.shape[3]), None
        x.graph.add(self)

    def deps(self):
        return [self.x]

    def compute(self, rows: int, in_ram: bool, cache_dir: str | None) -> None:
        total = torch.zeros(self.x.channels, dtype=torch.float64)
        h = self.x.shape[2]
        for r0 in range(0, h, rows):
            total += self.x.rows(r0, min(h, r0 + rows)).double().sum(dim=(0, 2, 3)).cpu()
        mean = total / (h * self.x.shape[3])
        self._value = mean.view(1, -1, 1, 1).to(self.graph.device, self.graph.dtype)

    def value(self) -> torch.Tensor:
        if self._value is None:
            raise OutOfCoreError("internal: a mean read before it was computed")
        return self._value

    def pass_cost(self, n):
        return self.x.cost(n) + n * self.x.row_bytes() * 2

    def stored_bytes(self) -> int:
        return 0

    def release(self):
        pass


# -- the tracer: torch calls on traced values become views and nodes ---------------------------
def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if _pair(dilation) != (1, 1) or isinstance(padding, str):
        raise OutOfCoreError("out of core, convolutions need dilation 1 and numeric padding")
    ph, pw = _pair(padding)
    if isinstance(input, Padded):
        if ph or pw:
            raise OutOfCoreError("a convolution with both F.pad and its own padding")
        return ConvNode(input.x, weight, bias, _pair(stride), input.pad, input.mode, groups)
    return ConvNode(input, weight, bias, _pair(stride), (pw, pw, ph, ph), "constant", groups)


def _pad(input, pad, mode="constant", value=None):
    if len(pad) != 4 or mode not in ("constant", "reflect", "replicate") or (mode == "constant" and value):
        raise OutOfCoreError(f"out of core, F.pad takes 4 sides in reflect, replicate or zero mode, not {mode!r}")
    return Padded(input, tuple(pad), mode)


def _instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                   momentum=0.1, eps=1e-5):
    if not isinstance(input, ConvNode) or not use_input_stats:
        raise OutOfCoreError("out of core, an instance norm must follow a convolution and use the input's statistics")
    return Normed(input, weight, bias, eps)


def _max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    k, s = _pair(kernel_size), _pair(stride if stride else kernel_size)
    if k != s or k[0] != k[1] or _pair(padding) != (0, 0) or _pair(dilation) != (1, 1) or ceil_mode or return_indices:
        raise OutOfCoreError("out of core, max-pooling must be k × k with stride k, no padding")
    return Pool(input, k[0])


def _interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None, antialias=False):
    if mode != "bilinear" or not align_corners or antialias:
        raise OutOfCoreError("out of core, upsampling must be bilinear with align_corners=True")
    if size is None:
        fh, fw = (scale_factor, scale_factor) if not isinstance(scale_factor, (tuple, list)) else scale_factor
        size = (math.floor(input.shape[2] * fh), math.floor(input.shape[3] * fw))
    return Upsample(input, tuple(_pair(size)))


def _cat(tensors, dim=0):
    if dim % 4 != 1:
        raise OutOfCoreError("out of core, torch.cat joins channels (dim=1) only")
    return Cat(list(tensors))


def _elementwise(func):
    def build(*args, **kwargs):
        kwargs.pop("inplace", None)
        maps = [a for a in args if isinstance(a, Lazy)]
        if any(m.shape != maps[0].shape for m in maps):
            raise OutOfCoreError(f"{getattr(func, '__name__', func)} of maps of different sizes")
        return Elementwise(func, args, kwargs, maps[0].shape)
    return build


BUILDERS = {torch.conv2d: _conv2d, F.pad: _pad, F.instance_norm: _instance_norm, F.max_pool2d: _max_pool2d,
            F.interpolate: _interpolate, torch.cat: _cat, torch.pixel_shuffle: lambda x, r: Shuffle(x, r)}
ELEMENTWISE = (torch.add, torch.sub, torch.mul, torch.sigmoid, torch.tanh, torch.relu, torch.prelu, F.relu,
               F.leaky_relu, F.sigmoid, F.tanh)


def _dispatch(func, args, kwargs):
    """A view or node for ``func(*args, **kwargs)`` on traced maps; a :class:`Small` when no
    map is among the arguments (only values after a global mean)."""
    if not any(isinstance(a, Lazy) for a in _flat(args)):
        return Small(func, args, kwargs)
    if func in BUILDERS:
        return BUILDERS[func](*args, **kwargs)
    if func in ELEMENTWISE:
        return _elementwise(func)(*args, **kwargs)
    raise OutOfCoreError(f"out of core, {getattr(func, '__name__', func)} is not supported (exact bounded-memory "
                         f"inference knows convolutions, instance norms, pools, bilinear upsampling, "
                         f"concatenation, global means and elementwise operations)")


def _trimmer():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):        # not glibc: nothing to trim
        return None


_TRIM = _trimmer()


def return_freed_memory() -> None:
    """Hand the heap's freed pages back to the system (glibc ``malloc_trim``): strips of many
    sizes otherwise fragment the heap and the resident memory creeps up node after node."""
    if _TRIM is not None:
        _TRIM(0)


# -- tracing, scheduling, running ------------------------------------------------------------------
def trace(net: torch.nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> Lazy:
    """The graph of ``net(x)`` (``x``: a CPU tensor ``(1, C, H, W)``), its output view."""
    graph = Graph(device, dtype)
    with torch.inference_mode():
        out = net(Input(graph, x))
    if not isinstance(out, Lazy):
        raise OutOfCoreError(f"the network's output is a {type(out).__name__}, not a traced map")
    return out


def _readers_of(value) -> list[Node]:
    """The nodes a value reads directly (through views, not through other nodes)."""
    found, todo, seen = [], [value], set()
    while todo:
        v = todo.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, Node) and v is not value:
            found.append(v)
        else:
            todo += v.deps()
    return found


def schedule(out: Lazy) -> tuple[list[Node], dict[int, list[Node]]]:
    """The nodes ``out`` needs, in evaluation order, and for each (by index) the nodes whose
    last reader it is (freed once it has run); the output view's are freed at the end."""
    needed, todo = {}, [out]
    while todo:
        for n in _readers_of(todo.pop()):
            if n.index not in needed:
                needed[n.index] = n
                todo.append(n)
    order = [needed[i] for i in sorted(needed)]
    last = {}
    for reader in order + [out]:
        for n in _readers_of(reader):
            last[n.index] = reader
    frees: dict[int, list[Node]] = {}
    for n in order:
        frees.setdefault(getattr(last[n.index], "index", -1), []).append(n)
    return order, frees


def stored_peak(order: list[Node], frees: dict[int, list[Node]]) -> int:
    """Bytes of stored maps alive at once at the peak of :func:`run`."""
    live = peak = 0
    for n in order:
        live += n.stored_bytes()
        peak = max(peak, live)
        live -= sum(m.stored_bytes() for m in frees.get(n.index, []))
    return peak


@torch.inference_mode()
def run(out: Lazy, order: list[Node], frees: dict[int, list[Node]], rows: list[int], in_ram: bool,
        cache_dir: str | None, sink, progress=None) -> None:
    """Compute the nodes in order (node ``i`` in strips of ``rows[i]`` output rows), then the
    output in strips of ``rows[-1]``: ``sink(r0, t)`` receives each ``(1, C, h, W)`` strip."""
    try:
        for i, n in enumerate(order):
            n.compute(rows[i], in_ram, cache_dir)
            for m in frees.get(n.index, []):
                m.release()
            return_freed_memory()
            if progress:
                progress(i + 1, len(order) + 1)
        h = out.shape[2]
        for r0 in range(0, h, rows[-1]):
            sink(r0, out.rows(r0, min(h, r0 + rows[-1])))
        if progress:
            progress(len(order) + 1, len(order) + 1)
    finally:
        for n in order:
            n.release()


def output_row_cost(out: Lazy) -> int:
    """Bytes per output row the rendering adds (float32 clamp and scale, uint8 HWC copy)."""
    return out.shape[3] * out.channels * (2 * 4 + 2)


def passes(out: Lazy, order: list[Node]) -> list[tuple[int, object]]:
    """``(height, cost)`` of each pass of :func:`run`: every node's, then the output's."""
    per_row = output_row_cost(out)
    return [(n.shape[2], n.pass_cost) for n in order] + [(out.shape[2], lambda r: out.cost(r) + r * per_row)]


# the whole-image forward's peak over (maps alive at once + the largest convolution's padded
# input and three outputs: conv, norm, activation), measured with VmHWM on a CPU: 1.5 for
# PyNET (0.23 MP mosaic), 1.26 for MicroISP (1 MP): its concatenations and sums are tensors too
WHOLE_FACTOR = 2


def whole_estimate(out: Lazy, order: list[Node], frees: dict[int, list[Node]]) -> int:
    """Estimated peak bytes of the whole-image forward (:data:`WHOLE_FACTOR`)."""
    item = out.graph.dtype.itemsize
    temps = max((n.x.shape[2] + n.pad[2] + n.pad[3]) * (n.x.shape[3] + n.pad[0] + n.pad[1]) * n.x.channels * item
                + 3 * n.shape[2] * n.shape[3] * n.channels * item for n in order if isinstance(n, ConvNode))
    return WHOLE_FACTOR * (stored_peak(order, frees) * item // 4 + temps)
