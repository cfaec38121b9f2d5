"""The trainer computes what the original DPED TensorFlow code computes: what each step feeds
the discriminator, the initial weights, and PSNR on the raw output."""
import numpy as np
import pytest
import torch
from torch import nn

from dpedkit.metrics import psnr, score_patches
from dpedkit.train.loop import Trainer
from dpedkit.model.networks import DISCRIMINATOR_CONV_SEED, Discriminator, Generator, to_gray
from tests.helpers import make_dataset, tiny_config


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, samples):
    return make_dataset(tmp_path_factory.mktemp("fid"), samples, n_train=12, n_test=4)


def test_generator_step_shows_the_discriminator_every_enhanced_patch(tiny_data, tmp_path):
    """The original feeds its generator step ``adv_ = all_zeros``; only the discriminator step
    draws swaps. Rebuild both batches and the swap vector by hand from the same seeded stream
    and check, sample by sample, what the discriminator was shown in each step."""
    t = Trainer(tiny_config(tiny_data, tmp_path / "r", batch_size=8, seed=3), log=lambda *_: None)
    B, n = 8, t.train_phone.shape[0]
    # distinct patches, so a DSLR patch can never pass for an enhanced one
    hand = torch.Generator().manual_seed(3)
    idx_g = torch.randint(n, (B,), generator=hand)
    idx_d = torch.randint(n, (B,), generator=hand)
    swaps = torch.randint(0, 2, (B, 1), generator=hand).float()
    assert 0 < swaps.sum() < B            # this seed's swap vector has both kinds (else pick another)

    seen, made = [], []
    h1 = t.D.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
    h2 = t.G.register_forward_hook(lambda m, inp, out: made.append(out.detach().clone()))
    g_before = Generator()
    g_before.load_state_dict(t.G.state_dict())
    t.step()
    h1.remove(), h2.remove()
    assert len(seen) == 2 and len(made) == 2     # one discriminator call per step

    phone_g, dslr_g = t.train_phone[idx_g].float() / 255, t.train_dslr[idx_g].float() / 255
    enhanced_g = g_before(phone_g)
    torch.testing.assert_close(made[0], enhanced_g)                   # the generator step's batch is idx_g
    torch.testing.assert_close(seen[0], to_gray(enhanced_g))          # every sample: the enhanced patch
    assert all((seen[0][i] - to_gray(dslr_g)[i]).abs().max() > 1e-3 for i in range(B))

    # the discriminator step: the generator after its update, the DSLR patch where swaps = 1
    phone_d, dslr_d = t.train_phone[idx_d].float() / 255, t.train_dslr[idx_d].float() / 255
    with torch.no_grad():
        enhanced_d = t.G(phone_d)
    expected = to_gray(enhanced_d) * (1 - swaps[:, :, None, None]) + to_gray(dslr_d) * swaps[:, :, None, None]
    torch.testing.assert_close(seen[1], expected)
    assert torch.equal(t._batch(swaps=False)[2], torch.zeros(B, 1))


def truncated_normal_std(std=0.01, cut=2.0):
    """σ of a normal truncated at ±cut·σ."""
    from scipy.stats import truncnorm
    return float(truncnorm(-cut, cut).std()) * std


def test_initial_weights_are_the_originals():
    torch.manual_seed(0)
    g, d = Generator(), Discriminator()
    expected = truncated_normal_std()            # 0.00880
    for net in (g, d):
        for name, m in net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight.detach()
                assert w.abs().max() <= 0.02 + 1e-9, name                    # cut at ±2σ
                if w.numel() > 5000:
                    assert w.std().item() == pytest.approx(expected, rel=0.05), name
                    assert abs(w.mean().item()) < 3 * expected / np.sqrt(w.numel()) + 1e-6, name
                assert torch.all(m.bias == 0.01), name
            elif isinstance(m, nn.InstanceNorm2d):
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0), name
    # the first layer: σ 0.0088 (PyTorch's default gives 0.037)
    assert g.head.weight.std().item() == pytest.approx(0.0088, abs=0.0005)
    # a small, grey initial output, as the original's (σ ≈ 0.016 on a photo; PyTorch's default 0.07-0.10)
    from skimage import data
    photo = torch.from_numpy(data.astronaut()[:100, 200:300].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = g(photo)
    assert 0.002 < out.std().item() < 0.04 and abs(out.mean().item() - 0.5) < 0.05
    # the discriminator's convs from a fixed seed: the same whatever the run's seed; its FC layers not
    torch.manual_seed(1234)
    d2 = Discriminator()
    for a, b in zip(d.features.parameters(), d2.features.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(d.fc[1].weight, d2.fc[1].weight)
    assert DISCRIMINATOR_CONV_SEED == 1


def test_psnr_is_on_the_raw_output():
    rng = np.random.default_rng(0)
    dslr = torch.from_numpy(rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8))
    phone = dslr.clone()

    def overshoot(x):          # values beyond [0, 1], as the generator's tanh·0.58 + 0.5 can give
        return x * 1.16 - 0.08
    target = dslr.float() / 255
    raw = overshoot(target)
    scores = score_patches(overshoot, phone, dslr, torch.device("cpu"))
    mse = ((raw - target) ** 2).mean().item()
    assert scores["psnr"] == pytest.approx(20 * np.log10(1 / np.sqrt(mse)), rel=1e-5)
    clipped = score_patches(overshoot, phone, dslr, torch.device("cpu"), clamp=True)["psnr"]
    assert clipped > scores["psnr"] + 0.3          # clipping removes part of the error: a different number
    assert float(psnr(raw, target)) == pytest.approx(scores["psnr"], rel=1e-5)
