"""One PyNET training step of dpedkit against the original PyNET-PyTorch code, side by side.

    python bench/pynet_parity.py --pynet-pytorch DIR [--side 224] [--levels 4 0]

``DIR`` is a checkout of aiff22/PyNET-PyTorch (its ``model.py`` and ``msssim.py`` are imported
unmodified; nothing is copied). Per level: the original network is built as its
``train_model.py`` builds it (``PyNET(level, instance_norm=True, instance_norm_level_1=True)``),
dpedkit's network gets its weights, and both take one step on the same random batch — the
original's loss written as ``train_model.py`` writes it (``MSELoss``, ``MSSSIM``; the VGG
content term is left out on both sides, since the original's ``vgg_19`` downloads
torchvision's weights), Adam at 5e-5 — and dpedkit's
:class:`~dpedkit.train.isp_trainer.IspTrainer` loss (:class:`~dpedkit.train.isp_losses.IspLoss`
with the level's weights, content off). Printed: the two losses, the largest output
difference, and the largest weight difference after the step. Never run in CI (it needs the
original's checkout).
"""

from __future__ import annotations

import argparse
import sys

import torch

from dpedkit.model.pynet import PyNET
from dpedkit.train.isp_losses import IspLoss
from dpedkit.train.recipes import PYNET


def original_loss(level: int, enhanced, target, mse, ms_ssim):
    """``total_loss`` of the original's ``train_model.py`` without its VGG term."""
    loss_mse = mse(enhanced, target)
    if level in (5, 4):
        return loss_mse
    if level in (3, 2, 1):
        return loss_mse * 10
    return loss_mse + (1 - ms_ssim(enhanced, target)) * 0.4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pynet-pytorch", required=True, help="a checkout of aiff22/PyNET-PyTorch")
    ap.add_argument("--side", type=int, default=224, help="mosaic side in px (a multiple of 32; ≥ 176 for MS-SSIM)")
    ap.add_argument("--levels", type=int, nargs="+", default=[4, 0])
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    sys.path.insert(0, a.pynet_pytorch)
    from model import PyNET as OriginalPyNET      # noqa: E402  (the original's files)
    from msssim import MSSSIM                     # noqa: E402
    torch.manual_seed(0)
    raw = torch.rand(a.batch, 4, a.side // 2, a.side // 2)
    for level in a.levels:
        theirs = OriginalPyNET(level=level, instance_norm=True, instance_norm_level_1=True)
        ours = PyNET(level=level)
        missing = ours.load_state_dict(theirs.state_dict(), strict=True)
        target = torch.rand(a.batch, 3, a.side >> level, a.side >> level)
        stage = next(s for s in PYNET.stages if s.level == level)
        opt_t = torch.optim.Adam(theirs.parameters(), lr=stage.lr)
        opt_o = torch.optim.Adam(ours.parameters(), lr=stage.lr)
        out_t, out_o = theirs(raw), ours(raw)
        loss_t = original_loss(level, out_t, target, torch.nn.MSELoss(), MSSSIM())
        loss_o = IspLoss(stage.weights.without_content()).terms(out_o, target)[0]
        for opt, loss in ((opt_t, loss_t), (opt_o, loss_o)):
            opt.zero_grad()
            loss.backward()
        gt = torch.cat([p.grad.flatten() for p in theirs.parameters() if p.grad is not None])
        go = torch.cat([p.grad.flatten() for p in ours.parameters() if p.grad is not None])
        for opt in (opt_t, opt_o):
            opt.step()
        st, so = theirs.state_dict(), ours.state_dict()
        dw = max(float((st[k] - so[k]).abs().max()) for k in st)
        lt, lo = float(loss_t.detach()), float(loss_o.detach())
        print(f"level {level}: loss original {lt:.8f}, dpedkit {lo:.8f} (relative difference "
              f"{abs(lt - lo) / abs(lt):.2e}); output max |diff| {float((out_t - out_o).abs().max()):.2e}; "
              f"gradients max |diff| / max |g| {float((gt - go).abs().max() / gt.abs().max()):.2e}; after one Adam "
              f"step (lr {stage.lr:g}: a first step moves a weight by about ±lr whatever its gradient's size) weights "
              f"max |diff| {dw:.2e}; state dict {'identical keys' if not missing.missing_keys else missing}")


if __name__ == "__main__":
    main()
