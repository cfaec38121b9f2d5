"""How to enhance a photo exactly within a memory budget: whole, or in strips of how many rows.

The sizes come from the generator's layer description (:mod:`dpedkit.model.layers`): the
strips' halo is the network's receptive-field radius, the strip maps and the activation
cache are as wide as its widest map, and the cache holds one map per slot the statistics
passes keep (:func:`dpedkit.model.layers.segments`). :mod:`dpedkit.enhance.strips` runs
the plan. Budgets are bytes: a whole-process figure on a CPU (resident memory), the
allocated device memory on CUDA.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dpedkit.errors import DpedkitError, OptionError
from dpedkit.model.inference import available_bytes, bytes_needed
from dpedkit.model.layers import cached_channels, radius, widest
from dpedkit.model.networks import GENERATOR_STEPS

# float32 strips of the widest map alive at once, per strip row incl. halo, measured with
# ru_maxrss on CPU for the DPED generator (tests/enhance/test_bounded.py checks the plan
# holds); covers F.pad copies and oneDNN reorders
STRIP_MAPS = 7
OVERHEAD = 64 << 20         # oneDNN scratch and allocator slack, independent of the strip size
CACHE_ITEM = 2              # bytes per cached value (float16)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class BudgetError(DpedkitError, RuntimeError):
    """The budget cannot hold even the smallest strip of this photo."""


def parse_size(text: str | int) -> int:
    """Bytes from ``4G``, ``512M``, ``1.5GiB``, ``4GB`` or a plain number (binary units: G = 2**30)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", str(text).upper())
    if not m:
        raise OptionError(f"not a memory size: {text!r} (e.g. 4G, 512M, 1.5GiB)")
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
    pass_rows: tuple[int, ...] = ()     # a graph plan's strip height of each pass (plan_graph)


def strip_bytes(rows: int, width: int, item: int, steps=GENERATOR_STEPS) -> int:
    """Memory of the strip maps for output strips of ``rows`` rows (plus the halo on each side)."""
    return STRIP_MAPS * widest(steps) * (rows + 2 * radius(steps)) * width * item


def cache_bytes(height: int, width: int, steps=GENERATOR_STEPS) -> int:
    """The float16 activation cache of the statistics passes at its peak
    (:func:`dpedkit.model.layers.cached_channels` full-size maps)."""
    return cached_channels(steps) * height * width * CACHE_ITEM


def plan(height: int, width: int, budget: int, device: torch.device = torch.device("cpu"),
         dtype: torch.dtype = torch.float32, base: int | None = None, cache: str = "auto",
         steps=GENERATOR_STEPS) -> Plan:
    """Whole-image when it fits, else the tallest strips that do.

    ``base``: memory already in use (default: this process's resident memory on CPU, the
    allocated CUDA memory on a GPU). The input and output photos (uint8) count against the
    budget on a CPU; the activation cache goes to RAM when it takes at most half of what is
    left, else to disk (``cache="ram"``/``"disk"`` forces it). ``steps``: the network's
    (:attr:`dpedkit.model.layers.LayerNet.steps`).
    """
    item = torch.empty((), dtype=dtype).element_size()
    if base is None:
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else resident_bytes()
    photos = 2 * height * width * 3 if device.type == "cpu" else 0
    fixed = base + photos + OVERHEAD
    whole = fixed + bytes_needed(height, width, dtype, steps)
    if whole <= budget:
        return Plan("whole", height, "none", whole, budget)
    on_host = device.type == "cpu"
    cached = cache_bytes(height, width, steps)
    if cache == "auto":
        cache = "ram" if on_host and cached <= (budget - fixed) // 2 else "disk"
    fixed += cached if cache == "ram" and on_host else 0
    left = budget - fixed
    per_row = strip_bytes(1, width, item, steps) - strip_bytes(0, width, item, steps)
    rows = (left - strip_bytes(0, width, item, steps)) // per_row if left > 0 else 0
    thinnest = 2 * radius(steps)
    if rows < thinnest:
        need = fixed + strip_bytes(thinnest, width, item, steps)
        raise BudgetError(f"a {width}×{height} photo needs at least {need / 2**30:.2f} GiB to be enhanced exactly "
                          f"in strips; the budget is {budget / 2**30:.2f} GiB (--max-memory)")
    rows = min(rows, height)
    return Plan("strips", int(rows), cache, fixed + strip_bytes(rows, width, item, steps), budget)


def strip_rows(cost: Callable[[int], int], height: int, room: int) -> int:
    """The most rows (≤ ``height``) whose ``cost(rows)`` (bytes, non-decreasing) fits ``room``; 0 if none."""
    lo, hi = 0, height
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= room else (lo, mid - 1)
    return lo


def plan_graph(passes: list[tuple[int, Callable[[int], int]]], stored: int, whole: int, budget: int,
               base: int, cache: str = "auto", on_host: bool = True) -> Plan:
    """The plan of an out-of-core graph run (:mod:`dpedkit.enhance.outofcore`, the learned ISPs).

    ``passes``: each pass over a map, ``(height, cost)`` with ``cost(rows)`` the bytes of one
    strip's temporaries; ``stored``: bytes of the stored maps alive at once at the peak;
    ``whole``: the estimated peak of the whole-image forward; ``base``: memory already in use
    (the process, the photos). Whole-image when it fits; else every pass gets the tallest
    strips that fit, with the stored maps in RAM when they take at most half of what is left,
    else on disk (``cache`` forces it). ``on_host=False`` (a CUDA budget): the stored maps are
    host memory, outside the budget, and go to disk unless ``cache="ram"``."""
    fixed = base + OVERHEAD
    if fixed + whole <= budget:
        return Plan("whole", passes[-1][0], "none", fixed + whole, budget)
    if cache == "auto":
        cache = "ram" if on_host and stored <= (budget - fixed) // 2 else "disk"
    fixed += stored if cache == "ram" and on_host else 0
    rows = tuple(strip_rows(cost, h, budget - fixed) for h, cost in passes)
    if min(rows) == 0:
        need = fixed + max(cost(1) for _, cost in passes)
        raise BudgetError(f"this RAW file needs at least {need / 2**30:.2f} GiB to be rendered exactly in strips; "
                          f"the budget is {budget / 2**30:.2f} GiB (--max-memory)")
    estimate = fixed + max(cost(r) for r, (_, cost) in zip(rows, passes))
    return Plan("strips", min(rows), cache, estimate, budget, rows)
