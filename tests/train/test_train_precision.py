"""The GPU path's switches run on a CPU as the same code: bf16 autocast (--precision bf16),
channels_last, fused Adam and torch.compile (inductor). A few tiny steps each, compared with
the plain fp32 eager run from the same seed."""
import numpy as np
import pytest
import torch

import dpedkit.train.loop as loop
import dpedkit.train.trainer as trainer
from dpedkit.model.networks import Discriminator, Generator
from tests.helpers import make_dataset, save_torchvision, tiny_config

STEPS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory, samples):
    root = tmp_path_factory.mktemp("prec")
    make_dataset(root, samples, n_train=8, n_test=2, size=20)
    # a small VGG-shaped network with He-scaled weights (activations stay O(1), as a trained VGG's)
    rng = np.random.default_rng(0)
    convs, cin = [], 3
    for w in [4, 4, 8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32, 32, 32]:
        convs.append((rng.normal(0, np.sqrt(2 / (9 * cin)), (w, cin, 3, 3)).astype(np.float32),
                      np.zeros(w, np.float32)))
        cin = w
    save_torchvision(root / "vgg.pth", convs)
    return root


def losses(data, tmp_path, **kw):
    """``STEPS`` × 7 losses (G, content, colour, texture, TV, D, D accuracy) and the trainer."""
    cfg = tiny_config(data, tmp_path / "r", **{"batch_size": 2, "eval_patches": 2, "content_loss": "vgg",
                                               "vgg": str(data / "vgg.pth"), **kw})
    t = loop.Trainer(cfg, log=lambda *_: None)
    return torch.stack([t.step() for _ in range(STEPS)]).double(), t


def rel(a, b):
    return ((a - b).abs() / a.abs().clamp_min(1e-2)).max(dim=0).values


def test_bf16_autocast_on_cpu_tracks_fp32(data, tmp_path):
    ref, _ = losses(data, tmp_path, precision="fp32")
    bf16, t = losses(data, tmp_path, precision="bf16")
    assert t.precision == "bf16" and t.device.type == "cpu"
    with t._autocast():                 # the same autocast as on CUDA, on device.type
        assert t.G(torch.rand(1, 3, 20, 20)).dtype == torch.bfloat16
    first = rel(ref[:1, :5], bf16[:1, :5])     # measured ≤ 1e-3 here
    assert torch.all(first < 5e-3), first
    d = rel(ref[:, :6], bf16[:, :6])            # measured ≤ 0.054 here
    # stated tolerance: every loss within 10 % of fp32 over 3 steps (bf16 keeps 8 bits of
    # mantissa, 0.4 % per value; Adam's first steps move every weight by ±lr whatever the
    # gradient's size, which amplifies it); content and colour losses within 5 % (measured
    # 0.030 on an AMD EPYC without bf16 instructions, whose bf16 kernels accumulate differently)
    assert torch.all(d < 0.10), d
    assert d[1] < 0.05 and d[2] < 0.05, d
    assert torch.all(rel(ref[:, :6], bf16[:, :6]) > 0)          # not secretly fp32


def test_channels_last_and_fused_adam_on_cpu_match_fp32(data, tmp_path):
    ref, _ = losses(data, tmp_path)
    fast, t = losses(data, tmp_path, channels_last=True, fused_adam=True)
    assert t.channels_last and t.opt_g.defaults["fused"]
    assert t.G.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert t._batch(swaps=True)[0].is_contiguous(memory_format=torch.channels_last)
    # fp32 both, only the summation order differs: the first generator step's losses (before
    # any update) agree closely; later ones drift as Adam moves near-zero-gradient weights by ±lr
    first = rel(ref[:1, :5], fast[:1, :5])
    assert torch.all(first < 1e-4), first
    d = rel(ref[:, :6], fast[:, :6])
    assert torch.all(d < 1e-2), d


class TinyDiscriminator(Discriminator):
    SPEC = ((8, 3, 2, False), (8, 3, 2, True))


def test_compiled_networks_take_the_eager_steps(data, tmp_path):
    """--compile wraps every network the steps run through; with the aot_eager backend (the
    graphs dynamo captures and AOT autograd traces, no code generation: seconds) the losses
    are the eager ones. Inductor's generated kernels: the next test."""
    from torch._dynamo.utils import counters
    ref, _ = losses(data, tmp_path, content_loss="none")
    counters.clear()
    compiled, t = losses(data, tmp_path, content_loss="none", compile=True, compile_backend="aot_eager")
    assert counters["stats"]["unique_graphs"] >= 2                  # the generator and the discriminator
    assert hasattr(t.G_step, "_orig_mod") and hasattr(t.D_step, "_orig_mod")
    first = rel(ref[:1, :5], compiled[:1, :5])
    assert torch.all(first < 1e-4), first
    d = rel(ref[:, :6], compiled[:, :6])
    assert torch.all(d < 1e-2), d


def test_inductor_compiles_the_generator_step_on_cpu(data, tmp_path, monkeypatch):
    """The default backend's C++ kernels for the generator's forward and backward, on a
    one-block, 8-channel generator (inductor builds each fused kernel with the C++ compiler:
    the full networks take minutes on a small CPU, this one ~15 s with a cold cache)."""
    import torch._inductor.config as inductor_config
    monkeypatch.setattr(trainer, "Generator", lambda: Generator(ch=8, blocks=1))
    monkeypatch.setattr(trainer, "Discriminator", TinyDiscriminator)
    # kernels built in this process: a pool of compile workers costs more to start than it saves here
    monkeypatch.setattr(inductor_config, "compile_threads", 1)
    cfg = tiny_config(data, tmp_path / "r", batch_size=2, eval_patches=2, compile=True)
    t = loop.Trainer(cfg, log=lambda *_: None)
    x = torch.rand(2, 3, 20, 20, requires_grad=True)
    out = t.G_step(x)
    out.sum().backward()
    eager_x = x.detach().clone().requires_grad_()
    ref = t.G(eager_x)
    ref.sum().backward()
    assert (out - ref).abs().max() < 1e-5
    assert (x.grad - eager_x.grad).abs().max() < 1e-4
