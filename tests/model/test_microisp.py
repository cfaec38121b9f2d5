"""MicroISP: shape and range, the published parameter count, independent colour branches
(the grouped convolutions compute three separate networks), the smallest input."""

from __future__ import annotations

import pytest
import torch

from dpedkit.model.microisp import MIN_SIDE, MicroISP
from dpedkit.model.pynet import count_parameters

PUBLISHED_FLOATS = 54_240 // 4     # aiff22/MicroISP pretrained_weights/MicroISP.ckpt.data-00000-of-00001: 54,240 bytes


def test_parameter_count_is_the_published_checkpoints():
    assert count_parameters(MicroISP()) == PUBLISHED_FLOATS == 13_560


def test_shape_and_range():
    torch.manual_seed(0)
    m = MicroISP()
    for p in m.parameters():            # away from the near-zero initialisation, so the output varies
        p.data.normal_(0, 0.3)
    y = m(torch.rand(2, 4, 80, 96))
    assert y.shape == (2, 3, 160, 192)
    assert -0.08 <= y.min() and y.max() <= 1.08 and y.std() > 0.01


def test_initial_output_is_mid_grey():
    y = MicroISP()(torch.rand(1, 4, 80, 80))
    assert torch.allclose(y, torch.full_like(y, 0.5), atol=1e-3)      # σ = 1e-3 kernels, tanh(≈0)·0.58 + 0.5


@pytest.mark.parametrize("stage, branch", [("stage1", 0), ("stage1", 2), ("stage2", 1)])
def test_branches_are_independent(stage, branch):
    """Changing one branch's weights (its 4 output channels of every convolution) changes
    that output colour only."""
    torch.manual_seed(1)
    m = MicroISP()
    for p in m.parameters():
        p.data.normal_(0, 0.3)
    x = torch.rand(1, 4, 80, 80)
    with torch.no_grad():
        before = m(x)
        for conv in getattr(m, stage).convs:
            conv.weight[4 * branch:4 * branch + 4] += 0.5
        after = m(x)
    changed = [(after[0, c] - before[0, c]).abs().max().item() > 1e-4 for c in range(3)]
    assert changed == [c == branch for c in range(3)]


def test_refuses_small_input():
    m = MicroISP()
    m(torch.rand(1, 4, MIN_SIDE, MIN_SIDE))
    with pytest.raises(ValueError, match="at least 79"):
        m(torch.rand(1, 4, MIN_SIDE - 1, 100))


def test_published_checkpoint_maps_onto_the_network():
    """Every value of the published checkpoint lands in exactly one parameter (set
    DPEDKIT_MICROISP to a checkout of aiff22/MicroISP). The outputs are not yet compared with
    TensorFlow's or with the published .tflite."""
    import os
    from pathlib import Path

    import numpy as np

    from dpedkit.model.microisp_tf import official_state_dict
    from dpedkit.model.tfbundle import read_bundle
    ckpt = Path(os.environ.get("DPEDKIT_MICROISP", "/nonexistent")) / "pretrained_weights" / "MicroISP.ckpt"
    if not ckpt.with_suffix(".ckpt.index").is_file():
        pytest.skip("set DPEDKIT_MICROISP to a checkout of aiff22/MicroISP")
    variables = read_bundle(ckpt)
    m = MicroISP()
    sd = official_state_dict(variables, m)
    m.load_state_dict(sd)
    ours = np.sort(np.concatenate([t.numpy().ravel() for t in sd.values()]))
    theirs = np.sort(np.concatenate([a.ravel() for a in variables.values()]))
    assert len(variables) == 342 and np.array_equal(ours, theirs)
