"""Parity with the original DPED TensorFlow trainer: losses, gradients and weights after K
iterations, dpedkit against a TF1-style re-implementation of the original graph (aiff22/DPED:
models.resnet / models.adversarial, vgg.net, the losses and two Adam optimisers of
train_model.py), given identical weights, VGG file, patches and swap vectors.

Needs TensorFlow, which is no dependency of dpedkit (keep it out of CI): install it in a
separate environment and run this script there, e.g.

    python3 -m venv /work/venv-tf && /work/venv-tf/bin/pip install tensorflow-cpu torch numpy scipy \\
        scikit-image opencv-contrib-python-headless pillow joblib click
    PYTHONPATH=$PWD /work/venv-tf/bin/python bench/dped_parity.py [--seeds 0 1 2] [--steps 3] [--batch 4]

The yardstick is the original's own float32 spread: the TF graph runs twice, in float64 (the
reference) and in float32 (the original as it is). dpedkit (float32) is at float32 noise
when its distance to the float64 reference is about the TF float32 graph's distance to it.
The generator's conv biases b2..b9 are left out of gradient and weight comparisons: they feed
instance normalisation, which removes them (zero gradient up to rounding, so Adam moves them
by ±lr in a direction set by noise).

VGG: a VGG-19-shaped network with random He-scaled weights and narrower layers, written by
this script as a MatConvNet .mat (read by dpedkit's loader and by the TF side as the
original's vgg.py reads it) — nothing is downloaded. ``--vgg PATH`` takes a real
imagenet-vgg-verydeep-19.mat instead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

PATCH = 100                       # the original graph is built for 100×100 patches (FC 128·7·7)
VGG_LAYERS = ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
              "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
              "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
              "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
              "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4")
VGG_MEAN = np.array([123.68, 116.779, 103.939])


# ---------------------------------------------------------------------------------------------
# inputs: a small VGG file, a DPED-layout folder of real photo patches, batches and swaps

def write_small_vgg(path: Path, rng: np.random.Generator, div: int = 8) -> None:
    """A MatConvNet-style VGG-19 file: a 1×N cell of layer structs, conv kernels [W, H, in, out]
    ('weights' first, as the original vgg.py indexes it)."""
    import scipy.io
    widths = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
    layers = np.empty((1, len(VGG_LAYERS)), dtype=object)
    cin = 3
    for i, name in enumerate(VGG_LAYERS):
        if name.startswith("conv"):
            cout = widths[int(name[4])] // div
            k = rng.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32)   # [H, W, in, out]
            cell = np.empty((1, 2), dtype=object)
            cell[0, 0], cell[0, 1] = k.transpose(1, 0, 2, 3), rng.normal(0, 0.05, (cout, 1)).astype(np.float32)
            layers[0, i] = {"weights": cell, "name": name, "type": "conv"}
            cin = cout
        else:
            layers[0, i] = {"weights": np.empty((0, 0)), "name": name, "type": name[:4]}
    scipy.io.savemat(path, {"layers": layers})


def write_patches(root: Path, n: int, rng: np.random.Generator) -> None:
    """``n`` training and test pairs of 100×100 patches of real photos; the phone patch a known
    tone/colour degradation of the DSLR one. PNG-free: JPEG q100, read back decoded."""
    from skimage import data
    from dpedkit.imageio import write_image
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for split in ("training_data", "test_data/patches"):
        for i in range(n):
            im = photos[rng.integers(len(photos))]
            y, x = rng.integers(0, im.shape[0] - PATCH), rng.integers(0, im.shape[1] - PATCH)
            d = im[y:y + PATCH, x:x + PATCH]
            p = np.clip(255 * ((d / 255.0) ** 1.4) * [0.85, 0.95, 1.1] + 8, 0, 255).astype(np.uint8)
            write_image(root / "p" / split / "p" / f"{i}.jpg", p, quality=100)
            write_image(root / "p" / split / "d" / f"{i}.jpg", d, quality=100)


# ---------------------------------------------------------------------------------------------
# the original graph, re-implemented in TF1 style (tf.compat.v1), for float32 or float64

def build_original(tf, vgg_path: Path, batch: int, lr: float, dtype, weights: dict[str, np.ndarray]):
    """The graph of train_model.py with variables initialised from ``weights`` (TF layouts).

    Returns placeholders, losses, per-variable gradients, train ops and variable handles."""
    import scipy.io
    v1 = tf.compat.v1
    size = PATCH * PATCH * 3
    phone_ = v1.placeholder(dtype, [None, size])
    dslr_ = v1.placeholder(dtype, [None, size])
    adv_ = v1.placeholder(dtype, [None, 1])
    phone_image = tf.reshape(phone_, [-1, PATCH, PATCH, 3])
    dslr_image = tf.reshape(dslr_, [-1, PATCH, PATCH, 3])
    handles: dict[str, object] = {}

    def var(name):
        handles[name] = tf.Variable(weights[name].astype(dtype.as_numpy_dtype), name=name.split("/")[-1])
        return handles[name]

    def conv(x, w, stride=1):
        return tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding="SAME")

    def inorm(x, prefix):
        mu, var_ = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return var(prefix + "/scale") * (x - mu) / (var_ + 1e-3) ** 0.5 + var(prefix + "/shift")

    def lrelu(x):
        return tf.maximum(0.2 * x, x)

    with v1.variable_scope("generator"):
        c1 = tf.nn.relu(conv(phone_image, var("generator/W1")) + var("generator/b1"))
        x = c1
        for r in range(4):
            a, b = 2 + 2 * r, 3 + 2 * r
            y = tf.nn.relu(inorm(conv(x, var(f"generator/W{a}")) + var(f"generator/b{a}"), f"generator/in{a}"))
            x = tf.nn.relu(inorm(conv(y, var(f"generator/W{b}")) + var(f"generator/b{b}"), f"generator/in{b}")) + x
        x = tf.nn.relu(conv(x, var("generator/W10")) + var("generator/b10"))
        x = tf.nn.relu(conv(x, var("generator/W11")) + var("generator/b11"))
        enhanced = tf.nn.tanh(conv(x, var("generator/W12")) + var("generator/b12")) * 0.58 + 0.5

    def gray(img):
        # tf.image.rgb_to_grayscale's weights and sum, kept in the graph's dtype (it would
        # convert float64 to float32 and spoil the reference)
        w = tf.constant([0.2989, 0.5870, 0.1140], dtype=dtype)
        return tf.reshape(tf.tensordot(img, w, [[-1], [-1]]), [-1, PATCH * PATCH])

    mixed = tf.reshape(gray(enhanced) * (1 - adv_) + gray(dslr_image) * adv_, [-1, PATCH, PATCH, 1])
    with v1.variable_scope("discriminator"):
        x = mixed
        for k, (stride, norm) in enumerate(((4, False), (2, True), (1, True), (1, True), (2, True)), 1):
            x = lrelu(conv(x, var(f"discriminator/conv{k}"), stride) + var(f"discriminator/bias{k}"))
            if norm:
                x = inorm(x, f"discriminator/in{k}")
        x = tf.reshape(x, [-1, 128 * 7 * 7])
        x = lrelu(tf.matmul(x, var("discriminator/W_fc")) + var("discriminator/bias_fc"))
        prob = tf.nn.softmax(tf.matmul(x, var("discriminator/W_out")) + var("discriminator/bias_out"))

    target = tf.concat([adv_, 1 - adv_], 1)
    loss_discrim = -tf.reduce_sum(target * v1.log(tf.clip_by_value(prob, 1e-10, 1.0)))
    loss_texture = -loss_discrim
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(prob, 1), tf.argmax(target, 1)), dtype))

    layers = scipy.io.loadmat(vgg_path)["layers"][0]

    def vgg_net(img):
        x = img - VGG_MEAN.astype(dtype.as_numpy_dtype)
        for i, name in enumerate(VGG_LAYERS):
            if name.startswith("conv"):
                kernels, bias = layers[i][0][0][0][0]
                kernels = np.transpose(kernels, (1, 0, 2, 3)).astype(dtype.as_numpy_dtype)
                x = tf.nn.bias_add(conv(x, tf.constant(kernels)), bias.reshape(-1).astype(dtype.as_numpy_dtype))
            elif name.startswith("relu"):
                x = tf.nn.relu(x)
            else:
                x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="SAME")
        return x

    fe, fd = vgg_net(enhanced * 255), vgg_net(dslr_image * 255)
    content_size = int(np.prod(fd.shape[1:])) * batch
    loss_content = 2 * tf.nn.l2_loss(fe - fd) / content_size

    from dpedkit.train.losses import dped_blur_kernel        # checked against the original's formula in tests
    kern = np.repeat(dped_blur_kernel()[:, :, None, None], 3, axis=2).astype(dtype.as_numpy_dtype)

    def blur(img):
        return tf.nn.depthwise_conv2d(img, kern, [1, 1, 1, 1], padding="SAME")
    loss_color = tf.reduce_sum((blur(dslr_image) - blur(enhanced)) ** 2) / (2 * batch)
    tv_y = tf.nn.l2_loss(enhanced[:, 1:, :, :] - enhanced[:, :-1, :, :]) / ((PATCH - 1) * PATCH * 3)
    tv_x = tf.nn.l2_loss(enhanced[:, :, 1:, :] - enhanced[:, :, :-1, :]) / (PATCH * (PATCH - 1) * 3)
    loss_tv = 2 * (tv_x + tv_y) / batch
    loss_generator = 10 * loss_content + 1 * loss_texture + 0.5 * loss_color + 2000 * loss_tv

    g_vars = [v for k, v in handles.items() if k.startswith("generator/")]
    d_vars = [v for k, v in handles.items() if k.startswith("discriminator/")]
    g_names = [k for k in handles if k.startswith("generator/")]
    d_names = [k for k in handles if k.startswith("discriminator/")]
    train_g = v1.train.AdamOptimizer(lr).minimize(loss_generator, var_list=g_vars)
    train_d = v1.train.AdamOptimizer(lr).minimize(loss_discrim, var_list=d_vars)
    return dict(phone=phone_, dslr=dslr_, adv=adv_,
                g_losses=[loss_generator, loss_content, loss_color, loss_texture, loss_tv],
                d_losses=[loss_discrim, accuracy],
                g_grads=dict(zip(g_names, tf.gradients(loss_generator, g_vars))),
                d_grads=dict(zip(d_names, tf.gradients(loss_discrim, d_vars))),
                train_g=train_g, train_d=train_d, handles=handles)


# ---------------------------------------------------------------------------------------------
# dpedkit's parameters ↔ the original's variables

def name_map(G, D) -> dict[str, tuple[torch.nn.Parameter, str]]:
    """TF variable name → (dpedkit parameter, layout kind)."""
    m = {}
    convs = [G.head] + [c for b in G.blocks for c in (b.conv1, b.conv2)] + [G.conv10, G.conv11, G.tail]
    norms = [n for b in G.blocks for n in (b.norm1, b.norm2)]
    for i, c in enumerate(convs, 1):
        m[f"generator/W{i}"] = (c.weight, "conv")
        m[f"generator/b{i}"] = (c.bias, "vec")
    for i, n in enumerate(norms, 2):
        m[f"generator/in{i}/shift"] = (n.bias, "vec")
        m[f"generator/in{i}/scale"] = (n.weight, "vec")
    dconvs = [x for x in D.features if isinstance(x, torch.nn.Conv2d)]
    dnorms = [x for x in D.features if isinstance(x, torch.nn.InstanceNorm2d)]
    for k, c in enumerate(dconvs, 1):
        m[f"discriminator/conv{k}"] = (c.weight, "conv")
        m[f"discriminator/bias{k}"] = (c.bias, "vec")
    for k, n in enumerate(dnorms, 2):
        m[f"discriminator/in{k}/shift"] = (n.bias, "vec")
        m[f"discriminator/in{k}/scale"] = (n.weight, "vec")
    m["discriminator/W_fc"] = (D.fc[1].weight, "fc_flat")
    m["discriminator/bias_fc"] = (D.fc[1].bias, "vec")
    m["discriminator/W_out"] = (D.fc[3].weight, "fc")
    m["discriminator/bias_out"] = (D.fc[3].bias, "vec")
    return m


def to_tf(t: torch.Tensor, kind: str) -> np.ndarray:
    a = t.detach().double().cpu().numpy()
    if kind == "conv":                       # [out, in, H, W] → [H, W, in, out]
        return a.transpose(2, 3, 1, 0)
    if kind == "fc":                         # [out, in] → [in, out]
        return a.T
    if kind == "fc_flat":                    # torch flattens (C, H, W), TF (H, W, C)
        return a.reshape(a.shape[0], 128, 7, 7).transpose(2, 3, 1, 0).reshape(-1, a.shape[0])
    return a


EXCLUDED = {f"generator/b{i}" for i in range(2, 10)}     # feed instance norm: no effect


def rel_err(a: dict, ref: dict, names) -> tuple[float, float]:
    """(max over tensors, whole-set) relative L2 error of ``a`` against ``ref``."""
    per = [np.linalg.norm(a[k] - ref[k]) / max(np.linalg.norm(ref[k]), 1e-30) for k in names]
    whole = np.sqrt(sum(np.sum((a[k] - ref[k]) ** 2) for k in names)) / np.sqrt(sum(np.sum(ref[k] ** 2) for k in names))
    return float(max(per)), float(whole)


def run_seed(tf, seed: int, steps: int, batch: int, vgg_path: Path | None, lr: float, work: Path,
             inject_swaps: bool = False) -> dict:
    from dpedkit.train.loop import TrainConfig, Trainer
    rng = np.random.default_rng(seed)
    data = work / f"data{seed}"
    write_patches(data, max(2 * batch, 8), rng)
    if vgg_path is None:
        vgg_path = work / f"vgg{seed}.mat"
        write_small_vgg(vgg_path, rng)
    cfg = TrainConfig(data_dir=str(data), phone="p", dslr="d", out=str(work / f"run{seed}"), vgg=str(vgg_path),
                      batch_size=batch, eval_patches=batch, lr=lr, seed=seed, device="cpu", precision="fp32")
    t = Trainer(cfg, log=lambda *_: None)
    names = name_map(t.G, t.D)
    init = {k: to_tf(p, kind) for k, (p, kind) in names.items()}
    train_p = t.train_phone.numpy().transpose(0, 2, 3, 1).reshape(len(t.train_phone), -1) / 255.0
    train_d = t.train_dslr.numpy().transpose(0, 2, 3, 1).reshape(len(t.train_dslr), -1) / 255.0
    # the original's draws: a generator batch, then a discriminator batch and its swaps
    plan = [(rng.integers(0, len(train_p), batch), rng.integers(0, len(train_p), batch),
             rng.integers(0, 2, (batch, 1)).astype(np.float64)) for _ in range(steps)]

    # --- the original, float64 and float32 ----------------------------------------------------
    results = {}
    for label, dtype in (("tf64", tf.float64), ("tf32", tf.float32)):
        g = tf.Graph()
        with g.as_default():
            net = build_original(tf, vgg_path, batch, lr, dtype, init)
            with tf.compat.v1.Session(graph=g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                rec = {"g_losses": [], "d_losses": []}
                for it, (ig, idd, swaps) in enumerate(plan):
                    feed_g = {net["phone"]: train_p[ig], net["dslr"]: train_d[ig], net["adv"]: np.zeros((batch, 1))}
                    if it == 0:
                        rec["g_grads"] = sess.run(net["g_grads"], feed_g)
                    rec["g_losses"].append(sess.run(net["g_losses"], feed_g))
                    sess.run(net["train_g"], feed_g)
                    feed_d = {net["phone"]: train_p[idd], net["dslr"]: train_d[idd], net["adv"]: swaps}
                    if it == 0:
                        rec["d_grads"] = sess.run(net["d_grads"], feed_d)
                    rec["d_losses"].append(sess.run(net["d_losses"], feed_d))
                    sess.run(net["train_d"], feed_d)
                rec["weights"] = sess.run(net["handles"])
        results[label] = rec

    # --- dpedkit: its own step(), fed the same batches; the generator step's adv is dpedkit's ---
    it_plan = iter(plan)
    real_batch = t._batch
    current = {}

    def planned_batch(swaps: bool):
        _, _, adv = real_batch(swaps)                     # dpedkit's own choice for this step
        if not swaps:
            current["ig"], current["idd"], current["swaps"] = next(it_plan)
            idx = current["ig"]
            if inject_swaps:          # the deliberate error: random swaps in the generator step too
                adv = torch.from_numpy(current["swaps"]).float()
        else:
            idx, adv = current["idd"], torch.from_numpy(current["swaps"]).float()
        phone = t.train_phone[idx].float() / 255
        dslr = t.train_dslr[idx].float() / 255
        return phone, dslr, adv
    t._batch = planned_batch
    rec = {"g_losses": [], "d_losses": []}
    for it in range(steps):
        out = t.step().double().numpy()
        rec["g_losses"].append(out[:5])
        rec["d_losses"].append(out[5:7])
        if it == 0:
            # after the step the .grad fields hold the step's gradients (taken before the update)
            rec["g_grads"] = {k: to_tf(p.grad, kind) for k, (p, kind) in names.items() if k.startswith("generator/")}
            rec["d_grads"] = {k: to_tf(p.grad, kind) for k, (p, kind) in names.items()
                              if k.startswith("discriminator/")}
    rec["weights"] = {k: to_tf(p, kind) for k, (p, kind) in names.items()}
    results["dpedkit"] = rec

    ref = results["tf64"]
    report = {}
    for label in ("tf32", "dpedkit"):
        r = results[label]
        loss_rel = [np.max(np.abs(np.array(r[k]) - np.array(ref[k])) / np.maximum(np.abs(np.array(ref[k])), 1e-6))
                    for k in ("g_losses", "d_losses")]
        step0 = np.max(np.abs(np.array(r["g_losses"][0]) - np.array(ref["g_losses"][0]))
                       / np.maximum(np.abs(np.array(ref["g_losses"][0])), 1e-6))
        gnames = [k for k in ref["g_grads"] if k not in EXCLUDED]
        dnames = list(ref["d_grads"])
        wnames = [k for k in ref["weights"] if k not in EXCLUDED]
        delta = {k: r["weights"][k] - init[k] for k in wnames}
        delta_ref = {k: ref["weights"][k] - init[k] for k in wnames}
        report[label] = {
            "step-0 generator losses (max rel)": step0,
            f"losses over {steps} iterations (max rel)": max(loss_rel),
            "step-0 G gradients (max per-tensor rel / whole)": rel_err({k: r["g_grads"][k] for k in gnames},
                                                                       ref["g_grads"], gnames),
            "step-0 D gradients (max per-tensor rel / whole)": rel_err({k: r["d_grads"][k] for k in dnames},
                                                                       ref["d_grads"], dnames),
            f"weight change after {steps} iterations (max per-tensor rel / whole)": rel_err(delta, delta_ref, wnames),
        }
    report["losses"] = {"tf64 step-0 generator losses [total, content, colour, texture, tv]":
                        np.array(ref["g_losses"][0]).round(6).tolist(),
                        "dpedkit": np.array(results["dpedkit"]["g_losses"][0]).round(6).tolist()}
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=3, help="iterations K (each: a generator and a discriminator step)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--vgg", type=Path, default=None, help="a real imagenet-vgg-verydeep-19.mat (default: small random)")
    ap.add_argument("--inject-generator-swaps", action="store_true",
                    help="deliberate error, to see that the check catches it: dpedkit's generator step is fed "
                         "the discriminator step's random swaps instead of its own all-zeros")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")      # TF's start-up chatter
    import tensorflow as tf
    tf.compat.v1.disable_eager_execution()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"TensorFlow {tf.__version__}, torch {torch.__version__}; batch {args.batch}, {args.steps} iterations, "
          f"lr {args.lr}; reference: the original graph in float64. Generator biases b2..b9 excluded."
          + (" DELIBERATE ERROR: random swaps in dpedkit's generator step." if args.inject_generator_swaps else ""))
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            rep = run_seed(tf, seed, args.steps, args.batch, args.vgg, args.lr, Path(work), args.inject_generator_swaps)
            print(f"\nseed {seed}")
            for line, (v0, v1) in ((k, (rep["tf32"][k], rep["dpedkit"][k])) for k in rep["tf32"]):
                fmt = (lambda v: f"{v[0]:.2e} / {v[1]:.2e}") if isinstance(v0, tuple) else (lambda v: f"{v:.2e}")
                print(f"  {line:70s} original fp32 {fmt(v0):>20s}   dpedkit {fmt(v1):>20s}")
            for k, v in rep["losses"].items():
                print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
