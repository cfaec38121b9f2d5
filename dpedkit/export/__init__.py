"""``dpedkit export``: the generator as an ONNX or TFLite (LiteRT) model for phones and other runtimes.

The output's suffix chooses the format (:data:`FORMATS`); a writer per format:

- ``.onnx`` (:mod:`dpedkit.export.onnx`): ``input`` float32 ``(1, 3, H, W)`` RGB in [0, 1]
  (NCHW, any H and W) → ``output`` of the same shape. Instance normalisation is exported as
  ONNX ``InstanceNormalization``, whose statistics are over the whole H × W of each run — the
  whole-image result, as :func:`dpedkit.model.inference.generate` computes it.
- ``.tflite`` (:mod:`dpedkit.export.tflite`): a fixed input size ``(H, W)``
  (``--input-size``, default :data:`TFLITE_SIZE`), float32 **NHWC** ``(1, H, W, 3)`` RGB in
  [0, 1] → the same shape, whatever the quantisation (``none``, ``fp16``, or ``int8``
  calibrated on a folder of images; a learned ISP's ``(1, h, w, 4)`` packed Bayer →
  ``(1, 2h, 2w, 3)``, int8 calibrated on its RAW-to-RGB dataset's training mosaics,
  :func:`~dpedkit.export.tflite.calibration_mosaics`). Needs ``pip install 'dpedkit[tflite]'``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from dpedkit.export.errors import ExportError
from dpedkit.export.onnx import OPSET, export_onnx
from dpedkit.export.tflite import (CALIBRATION_LIMIT, QUANTIZE, calibration_images, calibration_mosaics, export_tflite,
                                   require)
from dpedkit.fs import sync_folders
from dpedkit.model.generator import load_model

__all__ = ["FORMATS", "OPSET", "TFLITE_SIZE", "ExportError", "ExportOptions", "check_options", "export_format",
           "export_model", "export_onnx", "export_tflite", "parse_size"]

FORMATS = {".onnx": "ONNX", ".tflite": "TFLite"}       # the output's suffix chooses its format
TFLITE_SIZE = (100, 100)    # the DPED patch size (training and test patches), (H, W)


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (``x`` or ``×``, e.g. ``100x100``, ``768x1024``) as ``(H, W)``, both positive."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise ExportError(f"{text!r} is not a size HxW (e.g. 100x100: height x width in pixels)") from None
    if h < 1 or w < 1:
        raise ExportError(f"{text!r}: height and width must be positive")
    return h, w


class SizeType(click.ParamType):
    name = "HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_size(value)
        except ExportError as e:
            self.fail(str(e), param, ctx)


@dataclass
class ExportOptions:
    """Options of ``dpedkit export``; each field is one command-line option (:mod:`dpedkit.options`)."""
    opset: int = field(default=OPSET, metadata={"help": "ONNX opset version (ONNX only).", "min": 9})
    input_size: tuple[int, int] | None = field(default=None, metadata={
        "help": f"TFLite only: the model's fixed input size, height x width in pixels (default: "
                f"{TFLITE_SIZE[0]}x{TFLITE_SIZE[1]}, the DPED patch size; a phone app runs at the size it feeds; a learned ISP's is the packed "
                f"mosaic's, half the RAW patch's: 224x224 for PyNET's 448 px patches).",
        "click_type": SizeType(), "metavar": "HxW"})
    quantize: str = field(default="none", metadata={
        "help": "TFLite only: none (float32), fp16 (float16 weights, half the file) or int8 (int8 weights and "
                "activations, calibrated on --calibration).", "choices": list(QUANTIZE)})
    calibration: Path | None = field(default=None, metadata={
        "help": f"int8 only (and needed there): a folder of images like the model's input, e.g. a DPED dataset's "
                f"phone patches (dataset/<phone>/training_data/<phone>); for a learned ISP, its RAW-to-RGB dataset "
                f"(--layout zrr), whose train/ mosaics are packed as training packs them; at most "
                f"{CALIBRATION_LIMIT} are used.",
        "click_type": click.Path(exists=True, file_okay=False, path_type=Path)})


def export_format(out: str | Path) -> str:
    """The format ``out``'s suffix names, or :class:`ExportError` listing those dpedkit writes."""
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(f"{k} ({v})" for k, v in FORMATS.items())
        what = f"'{suffix}'" if suffix else "no suffix"
        raise ExportError(f"{out}: {what} is not a format dpedkit exports; name the output with one of: {known}")
    return FORMATS[suffix]


def check_options(out: str | Path, opts: ExportOptions) -> str:
    """The format of ``out``, or :class:`ExportError` when ``opts`` do not fit it or its
    writer's packages are missing (checked before any model is read)."""
    fmt = export_format(out)
    if fmt == "ONNX":
        wrong = [name for name, given in (("--input-size", opts.input_size is not None),
                                          (f"--quantize {opts.quantize}", opts.quantize != "none"),
                                          ("--calibration", opts.calibration is not None)) if given]
        if wrong:
            raise ExportError(f"{' and '.join(wrong)}: TFLite only (an ONNX file takes any size in float32); "
                              f"name the output .tflite")
        import importlib.util
        if importlib.util.find_spec("onnx") is None:  # torch's exporter needs it
            raise ExportError("ONNX export needs the onnx package: pip install 'dpedkit[onnx]'")
    else:
        if opts.quantize == "int8" and opts.calibration is None:
            raise ExportError("--quantize int8 needs --calibration DIR: a folder of images like the model's input "
                              "(e.g. a DPED dataset's phone patches; for a learned ISP, its RAW-to-RGB dataset), to "
                              "measure each activation's range")
        if opts.calibration is not None and opts.quantize != "int8":
            raise ExportError(f"--calibration is for --quantize int8 only, not {opts.quantize}")
        require()
    return fmt


def export_model(model: str | Path, out: str | Path, opts: ExportOptions | None = None, log=print) -> Path:
    """Export a dpedkit checkpoint or an official DPED TensorFlow checkpoint to ``out``, in the
    format its suffix names (:data:`FORMATS`), with ``opts`` (:class:`ExportOptions`)."""
    opts = opts or ExportOptions()
    fmt = check_options(out, opts)
    g, what, channels = load_model(model)
    if fmt == "ONNX":
        path = export_onnx(g, out, opts.opset, channels=channels, example_size=(64, 96) if channels == 3 else (80, 80))
        detail = f"ONNX opset {opts.opset}, input (1, {channels}, H, W) " + (
            "RGB in [0, 1]" if channels == 3 else "packed Bayer (B, Gb, R, Gr) / 1020")
    else:
        h, w = opts.input_size or TFLITE_SIZE
        samples = calibration_mosaics if channels == 4 else calibration_images
        cal = samples(opts.calibration, (h, w)) if opts.quantize == "int8" else None
        path = export_tflite(g, out, (1, channels, h, w), opts.quantize, cal)
        kind = "packed mosaics" if channels == 4 else "images"
        how = {"none": "float32", "fp16": "float16 weights", "int8": f"int8, calibrated on {len(cal or ())} {kind}"}
        detail = f"TFLite, {how[opts.quantize]}, input (1, {h}, {w}, {channels}) NHWC " + (
            "RGB in [0, 1]" if channels == 3 else "packed Bayer (B, Gb, R, Gr) / 1020")
    sync_folders()
    log(f"{what} → {path} ({path.stat().st_size / 1e6:.1f} MB, {detail})")
    return path
