"""The DPED networks, losses, VGG loaders and training loop (CPU, small)."""
import numpy as np
import pytest
import scipy.io
import scipy.signal
import scipy.stats
import torch

from tests.helpers import make_dataset, save_torchvision, tiny_config, tiny_vgg_weights
from dpedkit.model.checkpoint import CheckpointError, load_checkpoint
from dpedkit.model.networks import Discriminator, Generator, same_padding, to_gray
from dpedkit.model.vgg import CONV_NAMES, VGGWeightsError, load_vgg19
from dpedkit.train.loop import train
from dpedkit.train.losses import (color_loss, content_loss, discriminator_loss, dped_blur_kernel, tv_loss)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_network_sizes_match_the_original():
    g, d = Generator(), Discriminator()
    assert n_params(g) == 401_475                 # the official .data shard holds exactly this many floats
    # conv 11x11x1x48, 5x5x48x128, 3x3x128x192, 3x3x192x192, 3x3x192x128, IN scale+shift, FC 6272→1024→2
    expected = (11 * 11 * 48 + 48) + (25 * 48 * 128 + 128) + (9 * 128 * 192 + 192) + (9 * 192 * 192 + 192) \
        + (9 * 192 * 128 + 128) + 2 * (128 + 192 + 192 + 128) + (128 * 7 * 7 * 1024 + 1024) + (1024 * 2 + 2)
    assert n_params(d) == expected
    x = torch.rand(2, 3, 100, 100)
    y = g(x)
    assert y.shape == x.shape and y.min() >= 0.5 - 0.58 and y.max() <= 0.5 + 0.58
    assert same_padding(100, 11, 4) == (3, 4)     # TF 'SAME': asymmetric
    assert d.features[0](torch.zeros(1, 1, 100, 100)).shape[-1] == 25
    p = d(to_gray(x))
    assert p.shape == (2, 2) and torch.allclose(p.sum(1), torch.ones(2))


def test_blur_kernel_is_the_originals():
    k = dped_blur_kernel(21, 3)
    interval = 7 / 21
    x = np.linspace(-3 - interval / 2, 3 + interval / 2, 22)
    k1 = np.diff(scipy.stats.norm.cdf(x))
    ref = np.sqrt(np.outer(k1, k1))
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-5)
    marg = k.sum(0)
    sigma = np.sqrt((marg * (np.arange(21) - 10) ** 2).sum())
    assert sigma > 3.0  # wider than a textbook σ = 3 Gaussian, as the reference says


def test_losses_against_hand_computed_values():
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 3, 9, 9)), rng.random((2, 3, 9, 9))
    ta, tb = torch.tensor(a), torch.tensor(b)
    kern = dped_blur_kernel()
    blur = lambda x: np.array([[scipy.signal.convolve2d(c, kern, mode="same") for c in im] for im in x])  # noqa: E731
    assert float(color_loss(ta, tb, torch.tensor(kern, dtype=torch.float64))) == pytest.approx(
        ((blur(b) - blur(a)) ** 2).sum() / 4, rel=1e-6)
    tv = np.mean((a[:, :, 1:] - a[:, :, :-1]) ** 2) + np.mean((a[:, :, :, 1:] - a[:, :, :, :-1]) ** 2)
    assert float(tv_loss(ta)) == pytest.approx(tv)
    assert float(content_loss(ta, tb)) == pytest.approx(np.mean((a - b) ** 2))
    prob = torch.tensor([[0.8, 0.2], [0.3, 0.7], [1.0, 0.0]])
    adv = torch.tensor([[1.0], [0.0], [0.0]])
    assert float(discriminator_loss(prob, adv)) == pytest.approx(-np.log(0.8) - np.log(0.7) - np.log(1e-10))


def save_matconvnet(path, convs, old=False):
    """The .mat layout of MatConvNet's VGG files: a 1×N cell of layer structs; kernels [W, H, in, out]."""
    layers = np.empty((1, len(convs) * 2), dtype=object)
    for k, (name, (w, b)) in enumerate(zip(CONV_NAMES, convs)):
        kernel = w.transpose(3, 2, 1, 0)
        if old:
            layer = {"name": name, "type": "conv", "filters": kernel, "biases": b[None, :]}
        else:
            cell = np.empty((1, 2), dtype=object)
            cell[0, 0], cell[0, 1] = kernel, b[:, None]
            layer = {"name": name, "type": "conv", "weights": cell}
        layers[0, 2 * k] = layer
        layers[0, 2 * k + 1] = {"name": name.replace("conv", "relu"), "type": "relu"}
    scipy.io.savemat(path, {"layers": layers})


def test_vgg_loaders_agree_across_formats(tmp_path):
    convs = tiny_vgg_weights(np.random.default_rng(0))
    save_torchvision(tmp_path / "vgg.pth", convs)
    save_matconvnet(tmp_path / "new.mat", convs)
    save_matconvnet(tmp_path / "old.mat", convs, old=True)
    nets = [load_vgg19(tmp_path / n) for n in ("vgg.pth", "new.mat", "old.mat")]
    x = torch.rand(2, 3, 100, 100)
    feats = [n.features(x) for n in nets]      # the same network: same features on the same input
    assert feats[0].shape[-2:] == (7, 7)
    for f in feats[1:]:
        torch.testing.assert_close(f, feats[0])
    # each format gets its own preprocessing
    img = torch.rand(1, 3, 4, 4)
    tv = (img - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(nets[0].preprocess(img), tv)
    torch.testing.assert_close(nets[1].preprocess(img), img * 255 - torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1))
    with pytest.raises(VGGWeightsError, match="--content-loss none"):
        load_vgg19(tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(VGGWeightsError, match="not a torchvision VGG-19"):
        load_vgg19(tmp_path / "bad.pth")


def test_short_training_learns(tmp_path, samples):
    """With the original's initialisation the generator starts near a flat grey (the original
    logs ~10.8 dB at step 0) and needs thousands of batch-50 iterations to pass the identity
    baseline. Kept small: the colour/tone task alone (texture loss off, so no GAN noise), 40
    iterations of batch 4 on 20-px patches at lr 2e-3 gain 4.5 dB over the untrained model
    (seeds 1 and 2: 2.4 and 1.9 dB; 80 iterations at 1e-3 gained 4.2 in twice the time); an
    untrained or frozen generator gains nothing."""
    data = make_dataset(tmp_path / "ds", samples, n_train=16, n_test=8, size=20)
    rows = train(tiny_config(data, tmp_path / "run", iters=40, eval_every=40, batch_size=4, lr=2e-3, eval_patches=8,
                             w_texture=0.0), log=lambda *_: None, progress=False)
    assert rows[-1]["test_psnr"] > rows[0]["test_psnr"] + 2, (rows[0]["test_psnr"], rows[-1]["test_psnr"])


def test_resume_continues_exactly(tmp_path, samples):
    data = make_dataset(tmp_path / "ds", samples, n_train=8, n_test=4, size=20)
    full = train(tiny_config(data, tmp_path / "a", batch_size=4), log=lambda *_: None, progress=False)
    train(tiny_config(data, tmp_path / "b", iters=3, batch_size=4), log=lambda *_: None, progress=False)
    resumed = train(tiny_config(data, tmp_path / "b", resume=True, batch_size=4), log=lambda *_: None, progress=False)
    # a run killed just after its first checkpoint: iteration 0's state as last.pt
    train(tiny_config(data, tmp_path / "c", iters=3, keep_checkpoints=2, batch_size=4), log=lambda *_: None, progress=False)
    ck = tmp_path / "c" / "checkpoints"
    (ck / "iter_0.pt").replace(ck / "last.pt")
    from_zero = train(tiny_config(data, tmp_path / "c", resume=True, batch_size=4), log=lambda *_: None, progress=False)
    assert [r["iteration"] for r in full] == [0, 3, 6]
    for run in (resumed, from_zero):
        assert [int(r["iteration"]) for r in run] == [0, 3, 6]
        for a, b in zip(full, run):
            for k in ("loss_generator", "loss_discriminator", "test_psnr"):
                if k in a:
                    assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-6, abs=1e-9), k
    ga = load_checkpoint(tmp_path / "a")["generator"]
    for other in ("b", "c"):
        gb = load_checkpoint(tmp_path / other)["generator"]
        assert all(torch.equal(ga[k], gb[k]) for k in ga)
    # the same command on a finished run: resumed, nothing left to do, the rows as they were
    again = train(tiny_config(data, tmp_path / "a", batch_size=4), log=lambda *_: None, progress=False)
    assert [int(r["iteration"]) for r in again] == [0, 3, 6]


def test_checkpoints_load_safely_and_fail_clearly(tmp_path, samples):
    data = make_dataset(tmp_path / "ds", samples, n_train=16, n_test=8)
    train(tiny_config(data, tmp_path / "r", iters=1, eval_every=1), log=lambda *_: None, progress=False)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    ck = torch.load(last, weights_only=True)
    assert ck["iteration"] == 1 and set(ck) >= {"generator", "discriminator", "opt_g", "opt_d", "rng"}
    (tmp_path / "trunc.pt").write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no generator"):
        load_checkpoint(tmp_path / "other.pt")
    assert (tmp_path / "r" / "samples" / "1.png").is_file() and (tmp_path / "r" / "config.json").is_file()
