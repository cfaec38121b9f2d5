"""``dpedkit export``: the generator as an ONNX model for phones and other runtimes.

The graph takes ``input``: float32 ``(1, 3, H, W)`` RGB in [0, 1] (NCHW, any H and W) and
gives ``output`` of the same shape. Instance normalisation is exported as ONNX
``InstanceNormalization``, whose statistics are over the whole H × W of each run — the
whole-image result, as :func:`dpedkit.model.inference.generate` computes it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

from dpedkit.model.generator import load_generator
from dpedkit.model.networks import Generator

OPSET = 17


def export_onnx(g: Generator, path: str | Path, opset: int = OPSET, example_size: tuple[int, int] = (64, 96)) -> Path:
    """Write ``g`` (fp32, CPU) to ``path`` as ONNX with dynamic height and width, atomically."""
    path = Path(path)
    g = g.float().cpu().eval().to(memory_format=torch.contiguous_format)
    x = torch.rand(1, 3, *example_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # the TorchScript exporter's deprecation notice
            torch.onnx.export(g, (x,), tmp, input_names=["input"], output_names=["output"], opset_version=opset,
                              dynamic_axes={"input": {2: "height", 3: "width"}, "output": {2: "height", 3: "width"}},
                              dynamo=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def export_model(model: str | Path, out: str | Path, opset: int = OPSET, log=print) -> Path:
    """Export a dpedkit checkpoint or an official DPED TensorFlow checkpoint to ``out``."""
    g, what = load_generator(model)
    path = export_onnx(g, out, opset)
    log(f"{what} → {path} ({path.stat().st_size / 1e6:.1f} MB, ONNX opset {opset}, input (1, 3, H, W) RGB in [0, 1])")
    return path
