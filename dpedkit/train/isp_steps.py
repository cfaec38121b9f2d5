"""A minimal stand-alone training loop for one stage of a learned-ISP recipe, and the test
metrics PyNET reports; the shared trainer (:mod:`dpedkit.train`) is meant to absorb it.

One step, as PyNET-PyTorch ``train_model.py``: ``zero_grad``, the network's output at the
stage's level, the stage's loss against the DSLR target at that level, ``backward``,
``Adam.step``. Batches come from a shuffling ``DataLoader`` with ``drop_last``; when it runs
out (an epoch) a new epoch starts. A new Adam per stage, as the original starts a new
process per level; the network object carries the weights from one stage to the next.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dpedkit.metrics import ms_ssim
from dpedkit.train.isp_losses import IspLoss, isp_loss
from dpedkit.train.recipes import Stage


def set_level(model: nn.Module, dataset: Dataset, level: int) -> None:
    """Make the network output, and the dataset load targets for, ``level`` (MicroISP has level 0 only)."""
    if hasattr(model, "level"):
        model.level = level
    elif level != 0:
        raise ValueError(f"{type(model).__name__} has only the full-resolution level 0, not {level}")
    if hasattr(dataset, "level"):
        dataset.level = level


def _batches(loader: DataLoader):
    while True:
        yield from loader


def train_isp_steps(model: nn.Module, dataset: Dataset, stage: Stage, steps: int | None = None,
                    device: torch.device | str = "cpu", loss: IspLoss | None = None, seed: int = 0,
                    num_workers: int = 0) -> dict:
    """Run ``steps`` optimisation steps of ``stage`` (default: ``stage.num_steps(len(dataset))``).

    ``loss`` defaults to the stage's weights without a VGG model (``isp_loss(..., content=False)``
    drops the content term; pass an :class:`IspLoss` with VGG for the published loss). Returns
    ``{"losses": [total per step], "terms": last step's terms, "seconds": wall time,
    "it_per_s": steps / seconds}``."""
    device = torch.device(device)
    steps = stage.num_steps(len(dataset)) if steps is None else steps
    if len(dataset) < stage.batch_size:
        raise ValueError(f"{len(dataset)} training patches are fewer than the batch size {stage.batch_size}")
    set_level(model, dataset, stage.level)
    loss = (loss or isp_loss(stage.weights, content=False)).to(device)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=stage.lr)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=stage.batch_size, shuffle=True, drop_last=True, generator=gen,
                        num_workers=num_workers, pin_memory=device.type == "cuda")
    batches, losses, terms = _batches(loader), [], {}
    t0 = time.perf_counter()
    for _ in range(steps):
        raw, dslr = (t.to(device, non_blocking=True) for t in next(batches))
        opt.zero_grad(set_to_none=True)
        total, terms = loss(model(raw), dslr)
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    seconds = time.perf_counter() - t0
    return {"losses": losses, "terms": terms, "seconds": seconds, "it_per_s": steps / max(seconds, 1e-9)}


@torch.no_grad()
def evaluate_isp(model: nn.Module, dataset: Dataset, level: int = 0, device: torch.device | str = "cpu",
                 with_ms_ssim: bool = True) -> dict[str, float]:
    """PSNR and MS-SSIM on the test patches as PyNET-PyTorch's evaluation: batch 1, the raw
    output (not clipped), ``20·log10(1/√MSE)`` per patch, averaged over patches."""
    device = torch.device(device)
    set_level(model, dataset, level)
    model.to(device).eval()
    psnrs, ssims = [], []
    for k in range(len(dataset)):
        raw, dslr = (t[None].to(device) for t in dataset[k])
        out = model(raw).float()
        psnrs.append(20 * math.log10(1 / math.sqrt(max(float(((out - dslr) ** 2).mean()), 1e-12))))
        if with_ms_ssim:
            ssims.append(float(ms_ssim(out, dslr)))
    model.train()
    res = {"psnr": sum(psnrs) / len(psnrs)}
    if with_ms_ssim:
        res["ms_ssim"] = sum(ssims) / len(ssims)
    return res
