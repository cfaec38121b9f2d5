"""``dpedkit export``: the generator as an ONNX model for phones and other runtimes.

The graph takes ``input``: float32 ``(1, 3, H, W)`` RGB in [0, 1] (NCHW, any H and W) and
gives ``output`` of the same shape. Instance normalisation is exported as ONNX
``InstanceNormalization``, whose statistics are over the whole H × W of each run — the
whole-image result, as :func:`dpedkit.model.inference.generate` computes it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from dpedkit.errors import DpedkitError
from dpedkit.fs import commit, sync_folders, temp_path
from dpedkit.model.generator import load_generator
from dpedkit.model.networks import Generator

OPSET = 17
FORMATS = {".onnx": "ONNX"}       # the output's suffix chooses its format


class ExportError(DpedkitError, ValueError):
    """The model cannot be exported as asked (an output format dpedkit does not write)."""


def export_format(out: str | Path) -> str:
    """The format ``out``'s suffix names, or :class:`ExportError` listing those dpedkit writes."""
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(f"{k} ({v})" for k, v in FORMATS.items())
        what = f"'{suffix}'" if suffix else "no suffix"
        raise ExportError(f"{out}: {what} is not a format dpedkit exports; name the output with one of: {known}")
    return FORMATS[suffix]


def export_onnx(g: Generator, path: str | Path, opset: int = OPSET, example_size: tuple[int, int] = (64, 96)) -> Path:
    """Write ``g`` (fp32, CPU) to ``path`` as ONNX with dynamic height and width, atomically."""
    path = Path(path)
    g = g.float().cpu().eval().to(memory_format=torch.contiguous_format)
    x = torch.rand(1, 3, *example_size)
    tmp = temp_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # the TorchScript exporter's deprecation notice
            torch.onnx.export(g, (x,), tmp, input_names=["input"], output_names=["output"], opset_version=opset,
                              dynamic_axes={"input": {2: "height", 3: "width"}, "output": {2: "height", 3: "width"}},
                              dynamo=False)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_model(model: str | Path, out: str | Path, opset: int = OPSET, log=print) -> Path:
    """Export a dpedkit checkpoint or an official DPED TensorFlow checkpoint to ``out``, in the
    format its suffix names (:data:`FORMATS`)."""
    export_format(out)
    g, what = load_generator(model)
    path = export_onnx(g, out, opset)
    sync_folders()
    log(f"{what} → {path} ({path.stat().st_size / 1e6:.1f} MB, ONNX opset {opset}, input (1, 3, H, W) RGB in [0, 1])")
    return path
