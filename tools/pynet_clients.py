"""Run the ORIGINAL PyNET data loaders on a Zurich RAW-to-RGB dataset that dpedkit built.

    python tools/pynet_clients.py --pynet DIR --pynet-pytorch DIR [--dataset DIR] [--workdir DIR]
                                  [--sensor 1344x1008] [--photos 3]

``--pynet`` (or ``$PYNET_DIR``) is a folder holding ``load_dataset.py`` of aiff22/PyNET (the
TensorFlow code), ``--pynet-pytorch`` (or ``$PYNET_PYTORCH_DIR``) one holding ``load_data.py``
of aiff22/PyNET-PyTorch. This script fetches nothing and the files are never committed: export
them from clones yourself, e.g.::

    git clone https://github.com/aiff22/PyNET /tmp/PyNET            # or: git --git-dir=MIRROR archive HEAD
    git clone https://github.com/aiff22/PyNET-PyTorch /tmp/PyNET-PyTorch
    python tools/pynet_clients.py --pynet /tmp/PyNET --pynet-pytorch /tmp/PyNET-PyTorch

The loader files run unmodified. Environment shims only, installed before they are imported
and only where the real module is missing or lacks the function: ``scipy.misc.imresize`` and
``scipy.misc.imread`` (removed from SciPy in 1.2/1.3; re-implemented with Pillow as SciPy 1.1
did), and ``torchvision.transforms`` (``Compose``/``ToTensor``, used by load_data.py at import
only) when torchvision is not installed. TensorFlow is not needed: ``load_dataset.py`` imports
NumPy, SciPy, Pillow and imageio only.

Without ``--dataset`` the script builds one in ``--workdir`` (a temporary folder by default)
as a user would: ``--photos`` simulated RAW phone photos (DNG, a 10-bit RGGB sensor of
``--sensor`` pixels with a black level of 64, tests/camera_writer.py) of DSLR JPEGs that cover
the whole sensor, then ``dpedkit align`` and ``dpedkit patches --layout zrr`` with default
options (``--test-photos 1`` so that the test split is not empty with a handful of photos).

It then calls, on that dataset: TF ``load_training_batch``, ``load_test_data`` and
``extract_bayer_channels`` on every ``test/huawei_full_resolution`` image followed by
``test_model.py``'s fixed crop ``[0:1472, 0:1984]`` (two lines of test_model.py, which needs
TensorFlow and a checkpoint to run); PyTorch ``LoadData`` (train and test) and
``LoadVisualData`` at level 0/1 and ``full_resolution=True``. It prints what each returned:
shapes, dtypes, value ranges.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- environment shims

def _imresize(arr, size, interp="bilinear", mode=None):
    """scipy.misc.imresize of SciPy ≤ 1.2: ``size`` an int (percent), a float (fraction) or (h, w)."""
    from PIL import Image
    im = Image.fromarray(np.asarray(arr))
    if isinstance(size, int):
        size = size / 100.0
    if isinstance(size, float):
        h, w = (np.array(np.asarray(arr).shape[:2]) * size).astype(int)
    else:
        h, w = size[:2]
    resample = {"nearest": Image.NEAREST, "lanczos": Image.LANCZOS, "bilinear": Image.BILINEAR,
                "bicubic": Image.BICUBIC, "cubic": Image.BICUBIC}[interp]
    return np.array(im.resize((int(w), int(h)), resample=resample))


def _imread(name, flatten=False, mode=None):
    from PIL import Image
    with Image.open(name) as im:
        return np.array(im.convert("F") if flatten else im)


def install_shims() -> list[str]:
    """Add what the 2020 loaders import but today's environment lacks; returns what was shimmed."""
    done = []
    import scipy
    try:
        from scipy import misc
    except ImportError:
        misc = types.ModuleType("scipy.misc")
    for name, fn in (("imresize", _imresize), ("imread", _imread)):
        if not hasattr(misc, name):
            setattr(misc, name, fn)
            done.append(f"scipy.misc.{name}")
    sys.modules["scipy.misc"] = misc
    scipy.misc = misc
    if importlib.util.find_spec("torchvision") is None:
        tv = types.ModuleType("torchvision")
        tr = types.ModuleType("torchvision.transforms")
        tr.Compose = lambda fs: (lambda x: [x := f(x) for f in fs][-1])
        tr.ToTensor = lambda: (lambda a: __import__("torch").from_numpy(np.asarray(a)))
        tv.transforms = tr
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tr})
        done.append("torchvision.transforms (Compose, ToTensor)")
    return done


def load_module(folder: Path, filename: str, name: str):
    path = Path(folder) / filename
    if not path.is_file():
        sys.exit(f"{path} not found: export {filename} of the original repository there (see --help)")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- the dataset

def build_dataset(work: Path, sensor: tuple[int, int], photos: int) -> Path:
    """raw/ (simulated RAW phone DNGs + DSLR JPEGs) → dpedkit align → dpedkit patches --layout zrr."""
    import cv2
    sys.path.insert(0, str(REPO))
    from dpedkit.imageio import write_image
    from dpedkit.testing.synth import sample_images
    from tests.camera_writer import simulate_raw_phone, write_dng
    pw, ph = sensor
    raw = work / "raw"
    (raw / "phone").mkdir(parents=True, exist_ok=True)
    (raw / "canon").mkdir(parents=True, exist_ok=True)
    samples = sample_images()
    rng = np.random.default_rng(0)
    scale = 0.75                      # phone px per DSLR px: the DSLR frame reaches beyond every side
    dw, dh = int(pw / scale * 1.08), int(ph / scale * 1.08)
    for k, name in enumerate(("coffee", "astronaut", "rocket", "motorcycle", "chelsea")[:photos]):
        dslr = cv2.resize(samples[name], (dw, dh), interpolation=cv2.INTER_CUBIC)
        t = np.deg2rad(rng.uniform(-1, 1))
        R = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        c_d, c_p = np.array([dw, dh]) / 2, np.array([pw, ph]) / 2 + rng.uniform(-8, 8, 2)
        H = np.r_[np.c_[R, c_p - R @ c_d], [[0, 0, 1]]]
        mosaic = simulate_raw_phone(dslr, H, (pw, ph), "RGGB", 10, 64, rng)
        write_dng(raw / "phone" / f"p{k}.dng", mosaic, "RGGB", 64, 1023)
        write_image(raw / "canon" / f"p{k}.jpg", dslr, quality=95)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for args in (["align", str(raw), str(work / "aligned")],
                 ["patches", "--layout", "zrr", "--test-photos", "1", str(work / "aligned"), str(work / "dataset")]):
        print("$ dpedkit " + " ".join(args), flush=True)
        r = subprocess.run([sys.executable, "-m", "dpedkit", *args], env=env, capture_output=True, text=True)
        print("  " + "\n  ".join((r.stdout + r.stderr).strip().splitlines()[-6:]))
        if r.returncode:
            sys.exit(f"dpedkit {args[0]} failed (exit {r.returncode})")
    return work / "dataset"


# ----------------------------------------------------------------------------- the clients

def describe(name: str, a) -> None:
    a = np.asarray(a.numpy() if hasattr(a, "numpy") else a)
    print(f"  {name:<44} shape {str(tuple(a.shape)):<22} {str(a.dtype):<8} range {float(a.min()):.4f} … "
          f"{float(a.max()):.4f}")


def run_tf_loader(pynet: Path, ds: Path, patch: int, n_train: int, n_test: int) -> None:
    import imageio
    ld = load_module(pynet, "load_dataset.py", "pynet_load_dataset")
    print(f"aiff22/PyNET load_dataset.py (TensorFlow code), dataset_dir={ds}/")
    for level in (0, 1):
        dslr_scale = 1.0 / 2 ** (level - 1)         # train_model.py / test_model.py: DSLR_SCALE
        x, y = ld.load_training_batch(str(ds) + "/", n_train, patch // 2, patch // 2, dslr_scale)
        describe(f"level {level} load_training_batch raw", x)
        describe(f"level {level} load_training_batch dslr", y)
        x, y = ld.load_test_data(str(ds) + "/", patch // 2, patch // 2, dslr_scale)
        describe(f"level {level} load_test_data raw", x)
        describe(f"level {level} load_test_data dslr", y)
    test_dir = str(ds) + "/test/huawei_full_resolution/"          # test_model.py's path
    for photo in sorted(f for f in os.listdir(test_dir) if os.path.isfile(test_dir + f)):
        mosaic = np.asarray(imageio.imread(test_dir + photo))
        describe(f"full_resolution {photo} (imageio.imread)", mosaic)
        packed = ld.extract_bayer_channels(mosaic)
        crop = packed[0:1472, 0:1984, :]                           # test_model.py: IMAGE_HEIGHT, IMAGE_WIDTH
        describe(f"full_resolution {photo} extract+crop", crop)
        if crop.shape[:2] != (1472, 1984):
            print(f"    test_model.py reshapes this to [1, 1472, 1984, 4]: it needs a mosaic of at least "
                  f"2944×3968 (a Huawei P20 sensor is 2976×3968); this one is {mosaic.shape[0]}×{mosaic.shape[1]}")


def run_torch_loader(pynet_pytorch: Path, ds: Path, n_train: int, n_test: int) -> None:
    ld = load_module(pynet_pytorch, "load_data.py", "pynet_load_data")
    print(f"aiff22/PyNET-PyTorch load_data.py, dataset_dir={ds}")
    for level in (0, 1):
        dslr_scale = float(1) / (2 ** (level - 1))                  # train_model.py: dslr_scale
        for test, n in ((False, n_train), (True, n_test)):
            data = ld.LoadData(str(ds), n, dslr_scale, test=test)
            raws, dslrs = zip(*(data[i] for i in range(len(data))))
            split = "test" if test else "train"
            describe(f"level {level} LoadData({split}) raw ×{len(raws)}", np.stack([r.numpy() for r in raws]))
            describe(f"level {level} LoadData({split}) dslr ×{len(dslrs)}", np.stack([d.numpy() for d in dslrs]))
    n_full = len(os.listdir(os.path.join(ds, "test", "huawei_full_resolution")))
    for level, full in ((0, False), (1, False), (0, True)):
        v = ld.LoadVisualData(str(ds), n_full, 1.0 / 2 ** (level - 1), level, full_resolution=full)
        for i in range(len(v)):
            want = (v.image_height, v.image_width)
            got = v[i]
            describe(f"LoadVisualData(level={level}, full={full}) {v.test_images[i]}", got)
            if tuple(got.shape[1:]) != want:
                print(f"    PyNET's visual test expects {want[0]}×{want[1]} here (a mosaic of at least "
                      f"{2 * want[0] + (480 if level == 0 and not full else 160 if level == 1 else 0)}×"
                      f"{2 * want[1] + (1024 if level == 0 and not full else 704 if level == 1 else 0)}); "
                      f"this sensor is smaller")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pynet", type=Path, default=os.environ.get("PYNET_DIR"),
                    help="folder with aiff22/PyNET's load_dataset.py (or $PYNET_DIR)")
    ap.add_argument("--pynet-pytorch", type=Path, default=os.environ.get("PYNET_PYTORCH_DIR"),
                    help="folder with aiff22/PyNET-PyTorch's load_data.py (or $PYNET_PYTORCH_DIR)")
    ap.add_argument("--dataset", type=Path, help="an existing ZRR dataset (default: build one)")
    ap.add_argument("--workdir", type=Path, help="where to build it (default: a temporary folder)")
    ap.add_argument("--sensor", default="1344x1008", help="simulated phone sensor, WxH (P20: 3968x2976)")
    ap.add_argument("--photos", type=int, default=3)
    a = ap.parse_args()
    if not a.pynet or not a.pynet_pytorch:
        ap.error("pass --pynet and --pynet-pytorch (or set $PYNET_DIR and $PYNET_PYTORCH_DIR)")
    print("shims:", ", ".join(install_shims()) or "none")
    ds = a.dataset
    if ds is None:
        work = a.workdir or Path(tempfile.mkdtemp(prefix="pynet_clients_"))
        w, h = (int(v) for v in a.sensor.lower().split("x"))
        ds = build_dataset(work, (w, h), a.photos)
    ds = Path(ds).resolve()
    import json
    meta = json.loads((ds / "raw.json").read_text())
    print(f"dataset {ds}: raw_values {meta['raw_values']}, folders {meta['folders']}, size {meta['size']}")
    count = lambda split: len(os.listdir(ds / split / "huawei_raw"))   # noqa: E731
    n_train, n_test = count("train"), count("test")
    print(f"  {n_train} train and {n_test} test patches; full resolution: "
          f"{sorted(os.listdir(ds / 'test' / 'huawei_full_resolution'))}")
    run_tf_loader(a.pynet, ds, meta["size"], n_train, n_test)
    run_torch_loader(a.pynet_pytorch, ds, n_train, n_test)


if __name__ == "__main__":
    main()
