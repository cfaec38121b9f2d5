"""PyNET: output shapes per level, running only up to a level, the published parameter count,
and (where the original's model.py is given) identity with aiff22/PyNET-PyTorch's network."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from dpedkit.model.pynet import PyNET, count_parameters, strip_data_parallel

PUBLISHED_PARAMETERS = 47_554_738     # PyNET(level, instance_norm=True, instance_norm_level_1=True), measured


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return PyNET(level=0, width=4).eval()


def test_output_shape_of_every_level(small):
    x = torch.rand(2, 4, 32, 48)                 # a 64x96 mosaic
    with torch.no_grad():
        outs = small.forward_levels(x, 0)
        for k in range(6):
            assert outs[k].shape == (2, 3, 64 // 2 ** k, 96 // 2 ** k)
            assert torch.equal(small(x, k), outs[k])       # a level's output does not depend on finer levels
            assert 0 < outs[k].min() and outs[k].max() < 1  # sigmoid heads


def test_runs_only_up_to_the_level(small):
    x = torch.rand(1, 4, 32, 32)
    small.zero_grad(set_to_none=True)
    outs = small.forward_levels(x, 3)
    assert sorted(outs) == [3, 4, 5]
    outs[3].sum().backward()
    assert small.conv_l3_d8.conv_3a.conv2d.weight.grad is not None
    assert small.conv_l4_d3.conv_3a.conv2d.weight.grad is not None
    assert small.conv_l2_d3.conv_3a.conv2d.weight.grad is None        # level 2 never ran
    assert small.conv_l0_d1.conv2d.weight.grad is None
    small.level = 4
    assert small(x).shape == (1, 3, 4, 4)


def test_refuses_bad_input(small):
    with pytest.raises(ValueError, match="multiples of 16"):
        small(torch.rand(1, 4, 40, 32))
    with pytest.raises(ValueError, match="at least 32"):            # level 5 would be 1 px: no reflection pad
        small(torch.rand(1, 4, 16, 32))
    with pytest.raises(ValueError, match="packed Bayer"):
        small(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="levels 0"):
        small(torch.rand(1, 4, 32, 32), 6)


def test_published_parameter_count():
    m = PyNET()
    assert count_parameters(m) == PUBLISHED_PARAMETERS
    # widths scale every layer: the reduced networks of the CPU tests
    assert count_parameters(PyNET(width=4)) < PUBLISHED_PARAMETERS / 50


def test_strip_data_parallel():
    stripped = strip_data_parallel({"module.conv_l0_d1.conv2d.weight": 1, "x": 2})
    assert list(stripped) == ["conv_l0_d1.conv2d.weight", "x"]


def _original_module():
    path = os.environ.get("DPEDKIT_PYNET_PYTORCH")
    if not path or not (Path(path) / "model.py").is_file():
        pytest.skip("set DPEDKIT_PYNET_PYTORCH to a checkout of aiff22/PyNET-PyTorch to compare with the original")
    spec = importlib.util.spec_from_file_location("pynet_pytorch_model", Path(path) / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("level", [5, 2, 0])
def test_same_network_as_the_original(level):
    orig = _original_module().PyNET(level=level, instance_norm=True, instance_norm_level_1=True).eval()
    ours = PyNET(level=level).eval()
    assert count_parameters(orig) == count_parameters(ours) == PUBLISHED_PARAMETERS
    ours.load_state_dict(orig.state_dict(), strict=True)       # the published .pth files load as they are
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(orig(x), ours(x))
