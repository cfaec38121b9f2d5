"""The ONNX writer: any height and width, NCHW float32 in and out (torch's TorchScript exporter)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from dpedkit.fs import commit, temp_path

OPSET = 17


def export_onnx(g: nn.Module, path: str | Path, opset: int = OPSET, example_size: tuple[int, int] = (64, 96),
                channels: int = 3) -> Path:
    """Write ``g`` (fp32, CPU) to ``path`` as ONNX with dynamic height and width, atomically:
    ``input`` ``(1, channels, H, W)`` → ``output``."""
    path = Path(path)
    g = g.float().cpu().eval().to(memory_format=torch.contiguous_format)
    x = torch.rand(1, channels, *example_size)
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
