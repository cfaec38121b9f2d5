"""Builders of test data shared by several test files (test files never import each other).

Images are RGB uint8 arrays; homographies and warps map pixel coordinates (x right, y down).
"""

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from dpedkit.imageio import write_image
from dpedkit.layout import Journal
from dpedkit.model.vgg import TORCHVISION_INDICES
from dpedkit.train.loop import TrainConfig

ANGLE = 0.4

# Files dpedkit did not write, kept outside the repository (tests skip without them): the
# official DPED checkpoints (models_orig/ of github.com/aiff22/DPED) and real camera files.
EXTERNAL = Path(__file__).resolve().parents[2] / "shared"
OFFICIAL = Path(os.environ.get("DPEDKIT_OFFICIAL") or EXTERNAL / "dped_official")


def upscaled(img, f=1.6):
    return cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)


def warp_with_field(dslr, angle=ANGLE, amp=1.5, seed=0):
    """phone(M(q)) = dslr(q), M(q) = o + R(q − o) + t(q): a rotation plus a smooth shift
    field of up to ``amp`` px, and a colour/contrast change. Returns (phone, M)."""
    h, w = dslr.shape[:2]
    o = np.array([(w - 1) / 2, (h - 1) / 2])
    a = np.deg2rad(angle)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    ph = np.random.default_rng(seed).uniform(0, 2 * np.pi, 2)

    def t(q):
        return amp * np.stack([np.sin(q[..., 1] / h * np.pi + ph[0]), np.cos(q[..., 0] / w * np.pi + ph[1])], -1)

    def M(q):
        return o + (q - o) @ R.T + t(q)
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    p = np.stack([xs, ys], -1)
    q = p.copy()
    for _ in range(6):  # invert M by fixed-point iteration (the field is smooth and small)
        q = o + (p - t(q) - o) @ R
    phone = cv2.remap(dslr, q[..., 0].astype(np.float32), q[..., 1].astype(np.float32), cv2.INTER_CUBIC,
                      borderMode=cv2.BORDER_REFLECT)
    phone = np.clip(phone.astype(np.float32) * [1.1, 0.95, 0.85] * 0.9 + 12, 0, 255).astype(np.uint8)
    return phone, M


def make_aligned(root, samples, names, broken=None):
    """An aligned/ folder with a manifest; ``broken`` maps a name to a function that edits
    its phone image."""
    root.mkdir(parents=True, exist_ok=True)
    j = Journal(root / "manifest.jsonl")
    for i, (name, sample) in enumerate(names.items()):
        dslr = upscaled(samples[sample], 1.6)
        phone, _ = warp_with_field(dslr, angle=0.2, amp=1.0, seed=i)
        if broken and name in broken:
            phone, dslr = broken[name](phone, dslr)
        write_image(root / "phone" / f"{name}.png", phone)
        write_image(root / "dslr" / f"{name}.png", dslr)
        j.append({"name": name, "status": "ok"})
    j.append({"name": "gone", "status": "failed", "reason": "x"})
    j.close()


def scramble_half(phone, dslr):
    phone = phone.copy()
    h = phone.shape[0] // 2
    phone[:h] = np.ascontiguousarray(phone[:h][::-1, ::-1])   # a broken correspondence
    return phone, dslr


def flatten_half(phone, dslr):
    dslr = dslr.copy()
    dslr[:, : dslr.shape[1] // 2] = 128
    return phone, dslr


def dped_loader(root, phone, dslr, split):
    """A minimal re-implementation of the original DPED loader (load_dataset.py): count the
    files, read <i>.jpg for i in range(count)."""
    base = os.path.join(root, "training_data" if split == "train" else "test_data/patches")
    n = len([f for f in os.listdir(os.path.join(base, phone)) if os.path.isfile(os.path.join(base, phone, f))])
    xs = np.array([cv2.imread(os.path.join(base, phone, f"{i}.jpg")) for i in range(n)])
    ys = np.array([cv2.imread(os.path.join(base, dslr, f"{i}.jpg")) for i in range(n)])
    return xs, ys


def make_dataset(root, samples, n_train=64, n_test=16, size=24):
    """Patches of real photos; the phone patch is a known colour/tone degradation of the DSLR patch."""
    rng = np.random.default_rng(0)
    imgs = [samples[k] for k in ("astronaut", "coffee", "rocket", "chelsea")]
    for split, n in (("train", n_train), ("test", n_test)):
        base = root / "p" / ("training_data" if split == "train" else "test_data/patches")
        for i in range(n):
            im = imgs[rng.integers(len(imgs))]
            y, x = rng.integers(0, im.shape[0] - size), rng.integers(0, im.shape[1] - size)
            d = im[y:y + size, x:x + size]
            p = np.clip(255 * ((d / 255.0) ** 1.6) * [0.8, 0.95, 1.15] + 10, 0, 255).astype(np.uint8)
            write_image(base / "p" / f"{i}.jpg", p, quality=98)
            write_image(base / "d" / f"{i}.jpg", d, quality=98)
    return root


def tiny_config(data, out, **kw):
    base = dict(data_dir=str(data), phone="p", dslr="d", out=str(out), content_loss="none", iters=6,
                batch_size=8, eval_every=3, eval_patches=16, lr=5e-4, keep_checkpoints=0)
    base.update(kw)
    return TrainConfig(**base)





def tiny_vgg_weights(rng, div=16):
    widths = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    convs, cin = [], 3
    for w in widths:
        w //= div
        convs.append((rng.normal(0, 0.3, (w, cin, 3, 3)).astype(np.float32), rng.normal(0, 0.1, w).astype(np.float32)))
        cin = w
    return convs


def save_torchvision(path, convs):
    torch.save({f"features.{i}.{k}": torch.from_numpy(v) for i, (w, b) in zip(TORCHVISION_INDICES, convs)
                for k, v in (("weight", w), ("bias", b))}, path)
