"""``dpedkit evaluate``: score a generator on a dataset's test patches, beside the identity baseline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from dpedkit.layout import dataset_cameras
from dpedkit.metrics import score_patches
from dpedkit.model.device import resolve_device
from dpedkit.model.generator import load_model
from dpedkit.train.data import load_split


@dataclass
class EvaluateOptions:
    """Options of ``dpedkit evaluate``; each field is one command-line option (:mod:`dpedkit.options`)."""
    phone: str | None = field(default=None, metadata={
        "help": "Phone folder name in the DPED layout (default: from the dataset's dataset.json, or "
                "DATA_DIR's only sub-folder)."})
    dslr: str | None = field(default=None, metadata={
        "help": "DSLR folder name in the DPED layout (default: from dataset.json, else canon)."})
    limit: int | None = field(default=None, metadata={"help": "Use at most this many test patches.", "min": 1})
    device: str = field(default="auto", metadata={
        "help": "auto: CUDA when available, else the CPU.", "choices": ["auto", "cpu", "cuda"]})


def evaluate_model(model: str | Path, data_dir: str | Path, phone: str | None = None, dslr: str | None = None,
                   device: str = "auto", limit: int | None = None, log=print) -> dict:
    """Scores of the enhanced test patches and of the phone patches as they are (identity).

    Conventions: RGB in [0, 1] (data range 1); PSNR and SSIM/MS-SSIM as :mod:`dpedkit.metrics`
    states them, per batch of 50 patches and averaged; fp32 on every device. ``phone`` and
    ``dslr`` name the DPED layout's folders; by default they come from the dataset
    (:func:`dpedkit.layout.dataset_cameras`).
    """
    dev = resolve_device(device)
    g, what, channels = load_model(model)
    if channels == 4:
        return _evaluate_isp(model, g, what, data_dir, phone, dslr, dev, limit, log)
    g = g.to(dev)
    root, phone, dslr = dataset_cameras(data_dir, phone, dslr)
    ph, ds = load_split(root, phone, dslr, "test", limit, size=None)
    log(f"evaluating {what} on {ph.shape[0]} test patches of {root}")
    t0 = time.perf_counter()
    enhanced = score_patches(g, ph, ds, dev)
    identity = score_patches(lambda x: x, ph, ds, dev)
    return {"model": str(model), "source": what, "data": str(root), "phone": phone, "dslr": dslr,
            "patches": int(ph.shape[0]), "device": dev.type, "seconds": round(time.perf_counter() - t0, 2),
            "enhanced": enhanced, "identity": identity}


def _evaluate_isp(model, net, what, data_dir, raw, dslr, dev, limit, log) -> dict:
    """A learned ISP on a RAW-to-RGB dataset's test patches, as PyNET's test scores them (PSNR
    of the unclipped output per patch, averaged; MS-SSIM where the patches hold its five
    scales), beside the quick rendering (:func:`dpedkit.train.raw_data.baseline_renderer`)."""
    import numpy as np
    import torch

    from dpedkit.metrics import psnr
    from dpedkit.train.isp_trainer import MS_SSIM_MIN_SIDE, evaluate_isp
    from dpedkit.train.raw_data import ZrrPatches, baseline_renderer
    test = ZrrPatches(data_dir, "test", raw=raw, dslr=dslr, limit=limit)
    level = getattr(net, "level", 0)
    log(f"evaluating {what} on {len(test)} test patches of {data_dir} at level {level}")
    t0 = time.perf_counter()
    side = min(test.read_pair(0)[0].shape) >> level
    scores = evaluate_isp(net, test, level, dev, with_ms_ssim=side >= MS_SSIM_MIN_SIDE)
    render = baseline_renderer(data_dir)
    quick = []
    for k in range(len(test)):
        mosaic, rgb = test.read_pair(k)
        q = torch.from_numpy(render("test", test.indices[k], mosaic)).float() / 255
        quick.append(float(psnr(q, torch.from_numpy(rgb).float() / 255)))
    return {"model": str(model), "source": what, "data": str(data_dir), "phone": test.folders.raw,
            "dslr": test.folders.dslr, "patches": len(test), "device": dev.type, "level": level,
            "seconds": round(time.perf_counter() - t0, 2),
            "enhanced": {"psnr": scores["psnr"], **({"ms_ssim": scores["ms_ssim"]} if "ms_ssim" in scores else {})},
            "quick_rendering": {"psnr": float(np.mean(quick))}}


def default_json_path(model: str | Path, phone: str, out: str | Path | None = None) -> Path:
    """Where ``evaluate`` writes its scores: ``out`` when it names a file; else, inside ``out``
    (a folder) or — without ``out`` — inside the run folder, one file per model:
    ``<run>/evaluate_<phone>.json`` for a run folder, ``<run>/evaluate_<phone>_<stem>.json`` for a
    ``.pt`` file in ``<run>/checkpoints/``, ``./evaluate_<phone>_<name>.json`` for an official
    checkpoint (its folder is often read-only)."""
    model = Path(model)
    if model.is_dir():
        folder, name = model, f"evaluate_{phone}.json"
    elif model.suffix == ".pt":
        folder = model.parent.parent if model.parent.name == "checkpoints" else model.parent
        name = f"evaluate_{phone}_{model.stem}.json"
    else:
        folder, name = Path("."), f"evaluate_{phone}_{model.name.removesuffix('.index')}.json"
    if out is None:
        return folder / name
    folder_like = str(out).endswith(("/", "\\"))
    out = Path(out)
    return out / name if folder_like or out.is_dir() else out


def table(result: dict) -> list[str]:
    if "quick_rendering" in result:          # a learned ISP
        e, q = result["enhanced"], result["quick_rendering"]
        ssim = f", MS-SSIM {e['ms_ssim']:.4f}" if "ms_ssim" in e else " (patches too small for MS-SSIM)"
        return [f"quick rendering  PSNR {q['psnr']:.2f} dB",
                f"learned ISP      PSNR {e['psnr']:.2f} dB{ssim}",
                f"{result['patches']} test patches at level {result['level']}; "
                f"{e['psnr'] - q['psnr']:+.2f} dB PSNR over the quick rendering"]
    lines = [f"{'':10s}{'PSNR (dB)':>11s}{'SSIM':>9s}{'MS-SSIM':>10s}"]
    for row in ("identity", "enhanced"):
        r = result[row]
        lines.append(f"{row:10s}{r['psnr']:11.2f}{r['ssim']:9.4f}{r['ms_ssim']:10.4f}")
    gain = result["enhanced"]["psnr"] - result["identity"]["psnr"]
    lines.append(f"{result['patches']} test patches; enhancement {gain:+.2f} dB PSNR over the phone patches")
    return lines

