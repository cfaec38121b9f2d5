"""``dpedkit enhance`` with a learned ISP: a camera RAW/DNG file rendered to sRGB by the
network, fed as the dataset it was trained on was packed.

The input: the file's Bayer mosaic (:func:`dpedkit.raw.read_mosaic`, sensor orientation),
cropped to start on an R site and to even sides (one row and/or column dropped for BGGR,
GRBG, GBRG sensors, as ``patches --layout zrr`` phases its windows), in the values the
training dataset holds (its ``raw.json`` ``raw_values``: ``zurich`` — the raw values with the
black level on a 10-bit scale, the default — or ``normalized``: black 0, white 1020), packed
as PyNET's loader packs it (:func:`dpedkit.raw.pack_bayer`). The output is sRGB at the
mosaic's resolution, clipped to [0, 1] and rounded to 8 bits.

The rendering is exact in bounded memory (:func:`render_exact`), as for DPED: the network's
instance norms (PyNET) and attention means (MicroISP) see the whole photo, as they saw the
whole patch in training. When the planner's estimate of the whole-image forward fits the
budget (``--max-memory``, default ¾ of the free memory) the network runs on the whole image
(:func:`render`); otherwise out of core (:mod:`dpedkit.enhance.outofcore`): the forward is
traced into its convolutions and global means, each computed once in full-width strips
with its kernel's halo and stored (in RAM or, when the stored maps take over half the
budget, in an unlinked file in ``--cache-dir``), norms and means from the whole map's
statistics. Same pixels as the whole image (float max abs ≈ 1e-5; 8-bit outputs at most one
level apart, rarely); slower (≈ 5× for PyNET at a tight budget on a CPU: thin strips).
``--tile`` (approximate tiles) is refused for an ISP.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dpedkit.enhance import outofcore
from dpedkit.enhance.planner import default_budget, plan_graph, resident_bytes
from dpedkit.errors import DpedkitError
from dpedkit.layout import RAW_JSON
from dpedkit.raw import Mosaic, pack_bayer, quick_rgb, read_mosaic, rggb_offset, to_pynet_values, to_zurich_values

RAW_VALUES = ("zurich", "normalized")


class RawIspError(DpedkitError, ValueError):
    """A RAW file cannot be rendered with this learned ISP; the message says why."""


def training_values(checkpoint_config: dict) -> str:
    """The value convention of the dataset a run trained on (``raw.json``), else ``zurich``
    (``patches --layout zrr``'s default)."""
    try:
        d = json.loads((Path(checkpoint_config["data_dir"]) / RAW_JSON).read_text())
        values = d.get("raw_values", "zurich")
        return "normalized" if values == "pynet" else values      # "pynet": an earlier name of normalized
    except (OSError, ValueError, KeyError, TypeError):
        return "zurich"


def rggb_crop(m: Mosaic) -> Mosaic:
    """``m`` cropped to start on an R site and to even sides."""
    ox, oy = rggb_offset(m.pattern)
    data = m.data[oy:, ox:]
    data = data[: data.shape[0] // 2 * 2, : data.shape[1] // 2 * 2]
    black = tuple(np.roll(np.asarray(m.black).reshape(2, 2), (-oy, -ox), axis=(0, 1)).ravel())
    return Mosaic(data, "RGGB", black, m.white, m.wb, m.flip)


def network_input(path: str | Path, raw_values: str) -> tuple[np.ndarray, Mosaic]:
    """The packed network input ``(4, H/2, W/2)`` float32 of a RAW file, and its RGGB mosaic."""
    if raw_values not in RAW_VALUES:
        raise RawIspError(f"the model was trained on mosaics in {raw_values!r} values; dpedkit renders RAW files "
                          f"for {' or '.join(RAW_VALUES)} datasets")
    m = rggb_crop(read_mosaic(path))
    if raw_values == "zurich":
        values = to_zurich_values(m.data, m.white)
    else:
        values = to_pynet_values(m.data, m.black, m.white)
    return pack_bayer(values), m


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """Network output rows ``(1, 3, h, W)`` → ``(h, W, 3)`` uint8: clipped to [0, 1], rounded."""
    return (t[0].float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@torch.inference_mode()
def render(net: torch.nn.Module, packed: np.ndarray, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    """The network's sRGB rendering ``(H, W, 3)`` uint8 of a packed mosaic (whole image)."""
    return to_uint8(net(torch.from_numpy(packed)[None].to(device, dtype)))


def render_exact(net: torch.nn.Module, packed: np.ndarray, device: torch.device, dtype: torch.dtype,
                 max_bytes: int | None = None, cache_dir: str | None = None, cache: str = "auto",
                 progress=None, log=None) -> np.ndarray:
    """:func:`render` within ``max_bytes`` (default :func:`~dpedkit.enhance.planner.default_budget`):
    whole when the estimate fits, else out of core in strips (:mod:`dpedkit.enhance.outofcore`),
    the same pixels. :class:`~dpedkit.enhance.planner.BudgetError` when not even one-row strips fit."""
    budget = default_budget(device) if max_bytes is None else max_bytes
    try:
        out = outofcore.trace(net, torch.from_numpy(packed)[None], device, dtype)
    except outofcore.OutOfCoreError:
        if max_bytes is not None:
            raise
        return render(net, packed, device, dtype)       # a network the tracer does not know: whole, unplanned
    order, frees = outofcore.schedule(out)
    h, w = out.shape[2:]
    used = torch.cuda.memory_allocated(device) if device.type == "cuda" else resident_bytes()
    p = plan_graph(outofcore.passes(out, order), outofcore.stored_peak(order, frees),
                   outofcore.whole_estimate(out, order, frees), budget, used + h * w * 3, cache,
                   on_host=device.type == "cpu")
    if p.mode == "whole":
        return render(net, packed, device, dtype)
    if log:
        log(f"{w}×{h}: exact out of core, {len(order)} operations in strips of {min(p.pass_rows)}–"
            f"{max(p.pass_rows)} rows, maps in {p.cache}, about {p.estimate / 2**30:.2f} of {budget / 2**30:.2f} GiB")
    img = np.empty((h, w, 3), np.uint8)

    def sink(r0: int, t: torch.Tensor) -> None:
        img[r0:r0 + t.shape[2]] = to_uint8(t)
    outofcore.run(out, order, frees, list(p.pass_rows), p.cache == "ram", cache_dir, sink, progress)
    return img


def quick_look(m: Mosaic) -> np.ndarray:
    """The quick rendering of the mosaic (the "before" of a side-by-side)."""
    return quick_rgb(m)
