"""VGG-19 up to relu5_4 for the content loss, from a local weight file (never downloaded).

Two formats, each with its own preprocessing of an RGB input in [0, 1]:

- torchvision's state dict (``vgg19-dcbb9e9d.pth``): ``(x − mean) / std`` with the ImageNet
  mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225);
- MatConvNet's ``imagenet-vgg-verydeep-19.mat`` (what the DPED code uses; layers with a
  ``weights`` cell, or ``filters``/``biases`` in the older release): ``x·255 − (123.68,
  116.779, 103.939)``. MatConvNet kernels are [W, H, in, out].

Max pooling uses ``ceil_mode=True`` (TensorFlow 'SAME'), so relu5_4 is 7×7 on a 100×100 patch.
The channel widths are read from the file, so tests can use tiny networks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dpedkit.errors import DpedkitError

# conv layers per block up to conv5_4; a pool follows blocks 1-4
BLOCKS = (2, 2, 4, 4, 4)
CONV_NAMES = [f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCKS) for i in range(n)]
TORCHVISION_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MATCONVNET_MEAN = (123.68, 116.779, 103.939)
WEIGHT_HELP = ("VGG-19 weights are needed for the content loss, and dpedkit never downloads: pass --vgg PATH "
               "or set $DPEDKIT_VGG to one of\n"
               "  imagenet-vgg-verydeep-19.mat  MatConvNet's VGG-19, the file the original DPED code uses "
               "(published on MatConvNet's pretrained-models page, https://www.vlfeat.org/matconvnet/pretrained/)\n"
               "  vgg19-dcbb9e9d.pth  torchvision's VGG-19 "
               "(published at https://download.pytorch.org/models/vgg19-dcbb9e9d.pth; torch hub's "
               "checkpoints folder is also searched)\n"
               "or train with --content-loss none")


class VGGWeightsError(DpedkitError, ValueError):
    pass


class VGG19Relu54(nn.Module):
    """relu5_4 features of VGG-19. ``kind`` selects the preprocessing: 'torchvision' or
    'matconvnet'."""

    def __init__(self, convs: list[tuple[torch.Tensor, torch.Tensor]], kind: str):
        super().__init__()
        if len(convs) != len(CONV_NAMES):
            raise VGGWeightsError(f"expected {len(CONV_NAMES)} conv layers up to conv5_4, got {len(convs)}")
        self.convs = nn.ModuleList()
        for w, b in convs:
            conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2)
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)
            self.convs.append(conv)
        self.kind = kind
        if kind == "torchvision":
            scale, shift = 1 / torch.tensor(IMAGENET_STD), -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
        elif kind == "matconvnet":
            scale, shift = torch.full((3,), 255.0), -torch.tensor(MATCONVNET_MEAN)
        else:
            raise ValueError(kind)
        self.register_buffer("scale", scale.view(1, 3, 1, 1))
        self.register_buffer("shift", shift.view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """relu5_4 of an already preprocessed input."""
        k = 0
        for b, n in enumerate(BLOCKS):
            for _ in range(n):
                x = F.relu(self.convs[k](x))
                k += 1
            if b < len(BLOCKS) - 1:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        return x

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        return self.features(self.preprocess(rgb01))


def _from_torchvision(path: Path) -> VGG19Relu54:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise VGGWeightsError(f"{path} is not a state dict")
    try:
        convs = [(sd[f"features.{i}.weight"].float(), sd[f"features.{i}.bias"].float()) for i in TORCHVISION_INDICES]
    except KeyError as e:
        raise VGGWeightsError(f"{path} is not a torchvision VGG-19 state dict (no {e.args[0]})") from None
    return VGG19Relu54(convs, "torchvision")


def _unwrap(a):
    """Strip the 1×1 object/struct arrays that MATLAB cells and structs load as."""
    while isinstance(a, np.ndarray) and a.size == 1 and (a.dtype == object or a.dtype.names):
        if a.dtype.names and a.ndim == 0:
            break
        a = a.ravel()[0] if a.dtype == object else a.reshape(())
    return a


def _field(layer, name):
    return _unwrap(layer[name]) if name in (layer.dtype.names or ()) else None


def _from_matconvnet(path: Path) -> VGG19Relu54:
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
        layers = data["layers"].ravel()
    except Exception as e:
        raise VGGWeightsError(f"{path} is not a MatConvNet VGG file: {e}") from None
    by_name = {}
    for entry in layers:
        layer = _unwrap(entry)
        if not getattr(layer, "dtype", None) or not layer.dtype.names:
            continue
        name = str(np.ravel(_field(layer, "name"))[0]) if _field(layer, "name") is not None else ""
        weights = _field(layer, "weights")
        if weights is not None and np.size(weights) == 2:
            kernel, bias = (_unwrap(c) for c in np.ravel(weights))
        elif _field(layer, "filters") is not None:
            kernel, bias = _field(layer, "filters"), _field(layer, "biases")
        else:
            continue
        by_name[name] = (np.asarray(kernel, np.float32), np.asarray(bias, np.float32).ravel())
    missing = [n for n in CONV_NAMES if n not in by_name]
    if missing:
        raise VGGWeightsError(f"{path} lacks the VGG-19 layers {', '.join(missing)}")
    convs = []
    for n in CONV_NAMES:
        k, b = by_name[n]
        if k.ndim == 3:  # MATLAB drops a trailing singleton dimension
            k = k[..., None]
        convs.append((torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 1, 0))), torch.from_numpy(b)))
    return VGG19Relu54(convs, "matconvnet")


def find_vgg_weights(path: str | os.PathLike | None) -> Path | None:
    """``path``, else ``$DPEDKIT_VGG``, else torchvision's file in torch hub's cache."""
    if path:
        return Path(path)
    if os.environ.get("DPEDKIT_VGG"):
        return Path(os.environ["DPEDKIT_VGG"])
    hub = Path(torch.hub.get_dir()) / "checkpoints" / "vgg19-dcbb9e9d.pth"
    return hub if hub.is_file() else None


def load_vgg19(path: str | os.PathLike) -> VGG19Relu54:
    """Load VGG-19 (up to relu5_4) from a torchvision ``.pth`` or a MatConvNet ``.mat`` file."""
    path = Path(path)
    if not path.is_file():
        raise VGGWeightsError(f"no VGG-19 weight file at {path}. {WEIGHT_HELP}")
    with open(path, "rb") as f:
        head = f.read(128)
    if path.suffix.lower() == ".mat" or head.startswith(b"MATLAB"):
        return _from_matconvnet(path)
    return _from_torchvision(path)
