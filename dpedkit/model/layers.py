"""A network written once, as data: the layer description every way of running it walks.

A network is a tuple of layers (:class:`Conv`, :class:`InstanceNorm`, :class:`ReLU`,
:class:`Residual`, :class:`ScaledTanh`); ``dpedkit.model.networks.generator_layers`` is
the DPED generator's. From the description come

- the PyTorch modules, at the dotted names the layers carry (so the state-dict keys are the
  layers' names: ``head.weight``, ``blocks.0.norm1.bias``), :func:`build_modules`;
- the flat steps, :func:`flatten`: a residual becomes ``Push`` (save the map), its body,
  ``Add`` (saved map + current map), so walkers need no recursion;
- every size that depends on the network: :func:`radius` (rows of context the whole network
  needs, the strips' halo), :func:`widest` (the widest map's channels),
  :func:`peak_channels` (channels alive at once in whole-image inference),
  :func:`segments` (the stretches between instance norms, which the exact strips stream)
  and :func:`cached_channels` (the full-size maps the strips' statistics passes cache).

:func:`walk` applies the steps to a map with an *ops* object that says what each kind of
step does: the autograd forward pass (:class:`AutogradOps` here), in-place whole-image
inference (``dpedkit.model.inference``) and the exact strips (``dpedkit.enhance.strips``).
A new kind of layer is a new dataclass here plus one method in each ops class.

Maps are NCHW tensors. Convolutions are stride 1 with zero 'same' padding (odd kernels),
so every map of the network has the input's height and width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Conv:
    """A ``kernel`` × ``kernel`` convolution, stride 1, zero 'same' padding, with bias."""
    name: str           # the module's dotted name (its state-dict prefix)
    cin: int
    cout: int
    kernel: int

    @property
    def radius(self) -> int:
        return self.kernel // 2


@dataclass(frozen=True)
class InstanceNorm:
    """Instance normalisation over the whole H × W of each channel (biased variance), with a
    learnable per-channel scale (``weight``) and shift (``bias``)."""
    name: str
    channels: int
    eps: float = 1e-3


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class ScaledTanh:
    """``tanh(x) * scale + shift``: the DPED generator's output mapping to about [0, 1]."""
    scale: float
    shift: float


@dataclass(frozen=True)
class Residual:
    """``x + body(x)``."""
    body: tuple


@dataclass(frozen=True)
class Push:
    """Flat step: save the current map (a residual's skip)."""


@dataclass(frozen=True)
class Add:
    """Flat step: the last saved map plus the current map."""


Layer = Union[Conv, InstanceNorm, ReLU, ScaledTanh, Residual]
Step = Union[Conv, InstanceNorm, ReLU, ScaledTanh, Push, Add]


def flatten(layers) -> tuple[Step, ...]:
    """The steps of ``layers`` in order, each residual as ``Push``, its body, ``Add``."""
    out: list[Step] = []
    for layer in layers:
        if isinstance(layer, Residual):
            out += [Push(), *flatten(layer.body), Add()]
        else:
            out.append(layer)
    return tuple(out)


# -- sizes derived from the description ----------------------------------------------------
def convs(steps) -> list[Conv]:
    return [s for s in steps if isinstance(s, Conv)]


def norms(steps) -> list[InstanceNorm]:
    return [s for s in steps if isinstance(s, InstanceNorm)]


def radius(steps) -> int:
    """Rows (and columns) of context one output pixel needs on each side: the sum of the
    convolution radii (a skip's path never needs more than its residual's body)."""
    return sum(c.radius for c in convs(steps))


def widest(steps) -> int:
    """Channels of the widest map."""
    return max(c.cout for c in convs(steps))


def in_channels(steps) -> int:
    return convs(steps)[0].cin


def out_channels(steps) -> int:
    return convs(steps)[-1].cout


def channels_along(steps) -> list[int]:
    """Channels of the current map *after* each step (the input's before the first)."""
    ch, out = in_channels(steps), []
    for s in steps:
        ch = s.cout if isinstance(s, Conv) else ch
        out.append(ch)
    return out


def peak_channels(steps) -> int:
    """Channels of the maps alive at once at the peak of in-place whole-image inference
    (``dpedkit.model.inference.generate``): the input (its caller holds it), the saved skips,
    the current map and, during a convolution, its output. A skip is the current map itself
    until a convolution replaces that; ``Add`` adds into the skip."""
    width = {"input": in_channels(steps)}       # map identity → channels
    current, stack, peak = "input", [], 0
    for i, s in enumerate(steps):
        if isinstance(s, Conv):
            alive = {"input", current, *stack}
            peak = max(peak, sum(width[m] for m in alive) + s.cout)
            current, width[i] = i, s.cout
        elif isinstance(s, Push):
            stack.append(current)
        elif isinstance(s, Add):
            current = stack.pop()
    return peak


@dataclass(frozen=True)
class Segment:
    """The steps from one instance norm (inclusive; the network's input for the first) up to
    the next one (exclusive), or to the end for the last.

    Depths count the saved skips: at depth ``d`` the skips are slots ``0 … d-1`` and the
    current map is slot ``d``. ``low`` is the least depth reached: the segment reads slots
    ``low … entry`` and writes slots ``low … exit``; slots below ``low`` stay untouched.
    """
    steps: tuple
    halo: int                   # rows of context the segment's convolutions need
    entry: int
    exit: int
    low: int
    channels: tuple[int, ...]   # channels of slots 0 … exit at the segment's end


def segments(steps) -> list[Segment]:
    """The network cut before every instance norm: ``len(norms(steps)) + 1`` segments."""
    cuts = [i for i, s in enumerate(steps) if isinstance(s, InstanceNorm)]
    bounds = list(zip([0] + cuts, cuts + [len(steps)]))
    along, depth, slots = channels_along(steps), 0, [in_channels(steps)]
    out = []
    for start, end in bounds:
        entry = low = depth
        for i in range(start, end):
            if isinstance(steps[i], Push):
                depth += 1
                slots = slots[:depth] + [slots[-1]]
            elif isinstance(steps[i], Add):
                depth -= 1
                slots = slots[:depth] + [slots[-1]]
            else:
                slots = slots[:-1] + [along[i]]
            low = min(low, depth)
        part = steps[start:end]
        out.append(Segment(part, radius(part), entry, depth, low, tuple(slots)))
    return out


def reuses_slot(before: Segment | None, seg: Segment, i: int) -> bool:
    """Whether the statistics pass of ``seg`` overwrites slot ``i`` in place: the slot held a
    map of the same width when the pass began (``before``: the previous segment, None for the
    first). Otherwise the pass writes the slot to a new store."""
    return before is not None and i < len(before.channels) and before.channels[i] == seg.channels[i]


def cached_channels(steps) -> int:
    """Channels of the full-size maps the statistics passes hold at once, at their peak: the
    slots cached when a pass begins plus the new stores it writes."""
    segs, peak = segments(steps)[:-1], 0
    for k, seg in enumerate(segs):
        before = segs[k - 1] if k else None
        held = sum(before.channels) if before else 0
        peak = max(peak, held + sum(seg.channels[i] for i in range(seg.low, seg.exit + 1)
                                    if not reuses_slot(before, seg, i)))
    return peak


# -- modules and walking ---------------------------------------------------------------------
def make_module(step: Conv | InstanceNorm) -> nn.Module:
    if isinstance(step, Conv):
        return nn.Conv2d(step.cin, step.cout, step.kernel, padding=step.radius)
    return nn.InstanceNorm2d(step.channels, eps=step.eps, affine=True)


def build_modules(root: nn.Module, steps) -> None:
    """Create each named step's module under ``root`` at its dotted name, in step order
    (the order random initialisation draws in). A part followed by a number is an
    ``nn.ModuleList`` (``blocks.0.conv1``: ``root.blocks[0].conv1``)."""
    for s in steps:
        if not isinstance(s, (Conv, InstanceNorm)):
            continue
        *parents, leaf = s.name.split(".")
        node = root
        for part, nxt in zip(parents, parents[1:] + [leaf]):
            if isinstance(node, nn.ModuleList):
                if int(part) == len(node):
                    node.append(nn.ModuleList() if nxt.isdigit() else nn.Module())
                node = node[int(part)]
            else:
                if not hasattr(node, part):
                    node.add_module(part, nn.ModuleList() if nxt.isdigit() else nn.Module())
                node = getattr(node, part)
        node.add_module(leaf, make_module(s))


def walk(steps, x, ops, stack: list | None = None, owned: bool = False):
    """Apply ``steps`` to ``x`` with ``ops``; returns ``(x, stack)``: the result and the saved
    skips left. ``stack`` (the skips saved before ``steps``, innermost last) is consumed:
    popped and appended to, so no map outlives its use through a caller's reference.

    ``ops`` has ``conv``, ``norm``, ``relu``, ``tanh`` (``op(step, x) → x``), ``add(skip, x,
    may_overwrite)`` and ``copy(x)``, and a flag ``in_place``. For in-place ops the walk keeps
    every map that is still needed intact: a map that is also a saved skip, or the caller's
    input (unless ``owned``), is copied before an in-place step changes it, and a skip is
    added into only when nothing else holds it.
    """
    stack = [] if stack is None else stack
    first = None if owned else x

    def shared(t) -> bool:
        return t is first or any(t is s for s in stack)

    for s in steps:
        if isinstance(s, Push):
            stack.append(x)
        elif isinstance(s, Add):
            skip = stack.pop()
            x = ops.add(skip, x, ops.in_place and not shared(skip))
        elif isinstance(s, Conv):
            x = ops.conv(s, x)
        else:
            if ops.in_place and shared(x):
                x = ops.copy(x)
            x = {InstanceNorm: ops.norm, ReLU: ops.relu, ScaledTanh: ops.tanh}[type(s)](s, x)
    return x, stack


class AutogradOps:
    """The training forward pass: the modules of ``net``, nothing in place."""
    in_place = False

    def __init__(self, net: nn.Module):
        self.net = net

    def conv(self, s: Conv, x: torch.Tensor) -> torch.Tensor:
        return self.net.get_submodule(s.name)(x)

    norm = conv

    def relu(self, s, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)

    def tanh(self, s: ScaledTanh, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * s.scale + s.shift

    def add(self, skip: torch.Tensor, x: torch.Tensor, may_overwrite: bool) -> torch.Tensor:
        return skip + x

    def copy(self, x):
        return x


class LayerNet(nn.Module):
    """A network built from, and run by walking, its layer description ``self.layers``."""

    def __init__(self, layers):
        super().__init__()
        self.layers = tuple(layers)
        self.steps = flatten(self.layers)
        build_modules(self, self.steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return walk(self.steps, x, AutogradOps(self))[0]
