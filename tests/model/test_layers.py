"""The layer description: the sizes derived from it, the modules and keys built from it, and
every walk of it (forward pass, whole-image inference, exact strips) agreeing, for DPED's
generator and for a network of another shape."""
import numpy as np
import torch

from dpedkit.enhance.planner import cache_bytes, plan
from dpedkit.enhance.strips import enhance_strips, output_strip, passes, statistics
from dpedkit.model.inference import bytes_needed, generate, prepare, to_image, to_tensor
from dpedkit.model.layers import (Conv, InstanceNorm, LayerNet, ReLU, Residual, ScaledTanh, flatten, norms,
                                  peak_channels, radius, segments, widest)
from dpedkit.model.networks import GENERATOR_STEPS, Generator, init_like_original

CPU = torch.device("cpu")


def test_dped_sizes_come_from_the_description():
    steps = GENERATOR_STEPS
    assert radius(steps) == 4 + 10 * 1 + 4 and widest(steps) == 64 and len(norms(steps)) == 8
    # three 64-channel maps at the peak of whole-image inference, plus the input and output photos
    assert bytes_needed(100, 200) == (3 * 64 + 2 * 3) * 100 * 200 * 4
    assert peak_channels(steps) == 3 * 64 + 3
    segs = segments(steps)
    assert [s.halo for s in segs] == [4 + 1] + [1] * 7 + [1 + 1 + 4]   # head + conv1 first; conv10, conv11, tail last
    assert [(s.entry, s.exit, s.low) for s in segs[:3]] == [(0, 1, 0), (1, 1, 1), (1, 1, 0)]
    assert cache_bytes(10, 20) == 2 * 64 * 10 * 20 * 2                       # two float16 maps
    assert passes(Generator()) == 9
    small = Generator(ch=8, blocks=1)
    assert radius(small.steps) == 4 + 2 + 1 + 1 + 4 and widest(small.steps) == 8


def test_state_dict_keys_are_those_of_every_saved_checkpoint():
    """The keys dpedkit has always written: old checkpoints load without a key map."""
    keys = [f"{m}.{p}" for m in ["head"] + [f"blocks.{i}.{c}" for i in range(4)
                                            for c in ("conv1", "norm1", "conv2", "norm2")]
            + ["conv10", "conv11", "tail"] for p in ("weight", "bias")]
    g = Generator()
    assert list(g.state_dict()) == keys
    assert g.blocks[2].norm1 is g.get_submodule("blocks.2.norm1") and g.tail.out_channels == 3
    assert g.load_state_dict({k: torch.zeros_like(v) for k, v in g.state_dict().items()}) is not None


def odd_net():
    """A network of another shape: a residual whose body begins with a norm (the skip is the
    map being normalised in place), nested residuals opening together, 5×5 and 3×3 kernels,
    a norm outside any residual, three-slot statistics."""
    layers = (Conv("a", 3, 8, 5), ReLU(),
              Residual((InstanceNorm("pre", 8), ReLU(), Conv("pc", 8, 8, 3))),
              Residual((Residual((Conv("r.0.c", 8, 8, 3), InstanceNorm("r.0.n", 8), ReLU())),
                        Conv("r.1", 8, 8, 3), InstanceNorm("r.n", 8))),
              InstanceNorm("post", 8), ReLU(),
              Conv("out", 8, 3, 3), ScaledTanh(0.5, 0.5))
    torch.manual_seed(3)
    net = LayerNet(layers)
    init_like_original(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return net.eval()


def test_every_walk_agrees_on_a_network_of_another_shape(samples):
    net = odd_net()
    steps = flatten(net.layers)
    assert radius(steps) == 2 + 1 + 1 + 1 + 1 and max(len(s.channels) for s in segments(steps)) == 3
    img = samples["coffee"][:61, :47]
    x = to_tensor(img, CPU)
    with torch.no_grad():
        ref = net(x.contiguous())
    whole = generate(prepare(net, CPU), x)
    torch.testing.assert_close(whole, ref, atol=1e-5, rtol=0)   # nn.InstanceNorm2d vs var_mean: rounding only
    assert torch.equal(x, to_tensor(img, CPU))                     # the caller's input is left alone
    # a float32 cache isolates the strips' logic (exact up to rounding); float16's rounding is
    # averaged over only 61 × 47 pixels here, not millions as on a photo
    for rows, cache, dtype, tol in [(7, "disk", np.float32, 2e-5), (25, "ram", np.float32, 2e-5),
                                    (25, "ram", np.float16, 1e-3)]:
        m = statistics(net, img, CPU, rows, cache=cache, cache_dtype=dtype)
        got = torch.cat([output_strip(net, img, r0, min(61, r0 + rows), m, CPU) for r0 in range(0, 61, rows)], 2)
        err = float((got - whole).abs().max())
        assert err <= tol, (rows, cache, err)
    assert np.abs(enhance_strips(net, img, CPU, 10).astype(int) - to_image(whole)).max() <= 1
    alone = generate(net, to_tensor(img[:10], CPU))                 # not vacuous: strips alone differ
    assert float((alone - whole[:, :, :10]).abs().max()) > 1e-2
    p = plan(2000, 3000, 200 << 20, base=0, steps=steps)
    assert p.mode == "strips" and p.rows >= 2 * radius(steps)


def test_a_skip_used_twice_is_not_overwritten():
    """Without the walk's aliasing guard, the nested residuals would add into the outer skip."""
    layers = (Conv("c", 3, 4, 1), Residual((Residual((ReLU(),)), ReLU())), Conv("d", 4, 3, 1))
    torch.manual_seed(0)
    net = LayerNet(layers).eval()
    x = torch.randn(1, 3, 5, 6)
    with torch.no_grad():
        h = net.c(x)
        inner = h + torch.relu(h)
        expect = net.d(h + torch.relu(inner))
        torch.testing.assert_close(net(x), expect)
    torch.testing.assert_close(generate(net, x), expect)


def test_strips_follow_a_network_whose_width_changes(samples):
    """A cached map that changes width between norms goes to a new store, sized by the planner."""
    torch.manual_seed(4)
    net = LayerNet((Conv("a", 3, 4, 3), InstanceNorm("n", 4), ReLU(), Conv("b", 4, 6, 3), InstanceNorm("m", 6),
                    ReLU(), Conv("c", 6, 3, 3))).eval()
    assert cache_bytes(10, 10, net.steps) == (4 + 6) * 10 * 10 * 2       # the 4-wide map is read while the 6-wide is written
    img = samples["chelsea"][:40, :30]
    whole = generate(net, to_tensor(img, CPU))
    m = statistics(net, img, CPU, 6, cache="disk", cache_dtype=np.float32)   # exact up to rounding
    got = torch.cat([output_strip(net, img, r0, min(40, r0 + 6), m, CPU) for r0 in range(0, 40, 6)], 2)
    assert float((got - whole).abs().max()) <= 2e-5
