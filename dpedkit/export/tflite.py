"""The TFLite (LiteRT) writer: litert-torch converts, ai-edge-quantizer quantises to int8.

:func:`export_tflite` takes any ``nn.Module`` with one NCHW input and one NCHW output and
the input's shape ``(1, C, H, W)`` (the DPED generator's ``(1, 3, H, W)``; PyNET's and
MicroISP's packed Bayer ``(1, 4, h, w)``). The file has

- a **fixed** input shape: litert-torch traces the module at that shape (the DPED
  generator's instance norms then average over exactly that H × W). Dynamic H and W do not
  convert in litert-torch 0.10: torch.export accepts them, but the lowering of
  ``aten._unsafe_view`` (the instance norms' reshapes) through its JAX bridge needs
  concrete sizes;
- **NHWC** input and output, float32 (``(1, H, W, C)``, the generator's RGB in [0, 1]): a
  TFLite model's native layout, what Android's Bitmap/TensorImage buffers hold, so the file
  starts and ends with a convolution, not a transpose (litert-torch's layout pass turns the
  traced NCHW graph into NHWC). Its one layout cost: litert-torch has no fused instance
  norm, it lowers each to MEAN / SUB / MUL / RSQRT with transposes around the statistics
  (18 TRANSPOSE ops in the DPED generator, 20 with NCHW input and output);
- the signature ``serving_default``, one input and one output.

Quantisation, post-training (``quantize``):

- ``none``: float32 weights and arithmetic.
- ``fp16``: litert-torch's fp16 recipe: weights stored as float16 (half the file),
  dequantised when the interpreter loads them; arithmetic float32 on the CPU (a GPU delegate
  may run fp16).
- ``int8``: ai-edge-quantizer's static quantisation of every convolution (:data:`INT8_OPS`):
  weights int8, symmetric per output channel; the convolutions' input and output activations
  int8, asymmetric, each tensor's range the min and max it takes over the whole calibration
  set (ai-edge-quantizer's default is a moving average that lets the first samples decide; a
  global min/max is the usual post-training calibration). Everything else stays float32:
  instance normalisation, the residual adds, tanh, and the file's input and output (so the
  three files are used alike). Quantising the instance norms too (their mean, variance and
  rsqrt in int8) ruins the DPED generator: 13 dB PSNR against the float model for the
  official iPhone checkpoint, against 47 dB with them in float32 (100 × 100, the setup of
  ``bench/export.py``). Calibration runs the float model on every sample, keeping its
  intermediate tensors: memory grows with the input size (12.5 GB at the peak for the
  generator at 384 × 512, 89 s on 2 cores).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from dpedkit.export.errors import ExportError
from dpedkit.fs import write_bytes_atomic
from dpedkit.imageio import list_images, read_image

QUANTIZE = ("none", "fp16", "int8")
SIGNATURE = "serving_default"
REQUIRES = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
INSTALL = "pip install 'dpedkit[tflite]'"
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "FULLY_CONNECTED")   # what int8 quantises
CALIBRATION_LIMIT = 100     # images read from a calibration folder at most (evenly spread over its sorted list)


def missing_packages() -> list[str]:
    """The TFLite writer's packages that are not installed."""
    return [m for m in REQUIRES if importlib.util.find_spec(m) is None]


def require() -> None:
    if missing := missing_packages():
        raise ExportError(f"TFLite export needs litert-torch and ai-edge-litert ({', '.join(missing)} missing): {INSTALL}")


QUIET_LOGGERS = ("torchao", "torch.utils._pytree")   # import-time notices (CUDA kernels absent, Enum registration)


@contextlib.contextmanager
def _quiet():
    """For the block: litert-torch's progress lines off; torch.export's deprecation warnings,
    the import-time notices of :data:`QUIET_LOGGERS` and what the converter and quantizer
    print from Python silenced; the C++ converter's INFO lines off unless
    ``$TF_CPP_MIN_LOG_LEVEL`` says otherwise (set for the process: its library reads it once)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")     # the C++ converter's INFO lines (read once, at load)
    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):      # ai-edge-quantizer's reports and progress bars
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old


def nhwc(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """An NCHW array or tensor as the contiguous float32 NHWC array the TFLite file takes."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)


def convert(module: nn.Module, input_shape: Sequence[int], quantize: str = "none",
            calibration: Iterable[np.ndarray | torch.Tensor] | None = None) -> bytes:
    """The TFLite flatbuffer of ``module`` at the NCHW ``input_shape`` (see the module's
    docstring for layout and quantisation); ``calibration``: NCHW samples of that shape, for
    ``int8`` only (required there)."""
    require()
    with _quiet():
        import litert_torch
        from litert_torch.generative.quantize.quant_recipes import full_fp16_recipe
    if quantize not in QUANTIZE:
        raise ExportError(f"quantize must be one of {', '.join(QUANTIZE)}, not {quantize!r}")
    if (quantize == "int8") != (calibration is not None):
        raise ExportError("int8 needs calibration samples" if quantize == "int8" else
                          f"calibration samples are for int8 only, not {quantize}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise ExportError(f"the input shape must be (1, C, H, W) with positive sizes, not {shape}")
    module = module.float().cpu().eval().to(memory_format=torch.contiguous_format)
    wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=[0]).eval()
    sample = torch.rand(shape[0], shape[2], shape[3], shape[1])
    with _quiet(), torch.no_grad():
        model = litert_torch.convert(wrapped, (sample,), quant_config=full_fp16_recipe() if quantize == "fp16" else None)
        data = bytes(model.model_content())
        if quantize == "int8":
            data = quantize_int8(data, [nhwc(c) for c in calibration], shape)
    return data


def _widen(old: dict, new: dict) -> dict:
    """One calibration step's ranges merged into the ranges so far: the elementwise min of the
    minima and max of the maxima."""
    if not old:
        return new
    return {"min": np.minimum(old["min"], new["min"]), "max": np.maximum(old["max"], new["max"])}


def quantize_int8(float_model: bytes, samples: list[np.ndarray], shape: tuple[int, ...]) -> bytes:
    """``float_model``'s convolutions statically quantised to int8 (weights per channel,
    activations per tensor from the min/max over ``samples``, NHWC float32 arrays); the rest,
    input and output included, float32."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe_manager
    from ai_edge_quantizer.qtyping import TFLOperationName as Op

    want = (shape[0], shape[2], shape[3], shape[1])
    if not samples:
        raise ExportError("int8 calibration needs at least one sample")
    if bad := next((s.shape for s in samples if s.shape != want), None):
        raise ExportError(f"a calibration sample has the NHWC shape {bad}, not the model's {want}")
    rm = recipe_manager.RecipeManager()
    for op in INT8_OPS:            # the rest (and the input and output) stay float32
        rm.add_static_config(regex=".*", operation_name=Op(op), activation_num_bits=8, weight_num_bits=8)
    name = Interpreter(model_content=float_model).get_signature_list()[SIGNATURE]["inputs"][0]
    cal = calibrator.Calibrator(float_model, num_threads=os.cpu_count() or 1, qsv_update_func=_widen)
    cal.calibrate({SIGNATURE: [{name: s} for s in samples]}, rm)
    q = quantizer.Quantizer(float_model, rm.get_quantization_recipe())
    result = q.quantize(cal.get_model_qsvs(), enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model)


def export_tflite(module: nn.Module, path: str | Path, input_shape: Sequence[int], quantize: str = "none",
                  calibration: Iterable[np.ndarray | torch.Tensor] | None = None) -> Path:
    """Write ``module`` at the NCHW ``input_shape`` to ``path`` as TFLite (:func:`convert`), atomically."""
    path = Path(path)
    write_bytes_atomic(path, convert(module, input_shape, quantize, calibration))
    return path


def calibration_images(folder: str | Path, size: tuple[int, int], limit: int = CALIBRATION_LIMIT) -> list[np.ndarray]:
    """RGB samples for int8 calibration from the photos directly inside ``folder`` (e.g. a
    DPED dataset's ``training_data/<phone>`` patches): at most ``limit``, evenly spread over
    the sorted list; each scaled to cover ``size`` ``(H, W)`` (area interpolation when
    shrinking) and centre-cropped to it; NCHW ``(1, 3, H, W)`` float32 in [0, 1]."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"calibration folder {folder} does not exist")
    files = list_images(folder)
    if not files:
        raise ExportError(f"{folder} has no images to calibrate int8 on (a DPED dataset's phone patches, say)")
    files = [files[i * len(files) // limit] for i in range(limit)] if len(files) > limit else files
    h, w = size
    out = []
    for f in files:
        img = read_image(f)
        s = max(h / img.shape[0], w / img.shape[1])
        if s != 1:
            nh, nw = max(h, round(img.shape[0] * s)), max(w, round(img.shape[1] * s))
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        out.append(np.ascontiguousarray(img[top:top + h, left:left + w].transpose(2, 0, 1))[None].astype(np.float32) / 255)
    return out


def calibration_mosaics(root: str | Path, size: tuple[int, int], limit: int = CALIBRATION_LIMIT) -> list[np.ndarray]:
    """Packed-Bayer samples for a learned ISP's int8 calibration from a Zurich RAW-to-RGB
    dataset ``root`` (``dpedkit patches --layout zrr``): its ``train/`` mosaic patches, at most
    ``limit`` evenly spread over them, each packed as training feeds it
    (:class:`dpedkit.train.raw_data.ZrrPatches`: ``(4, h, w)`` = ``(B, Gb, R, Gr) / 1020``) and
    centre-cropped to ``size`` ``(h, w)`` packed pixels (whole 2×2 cells, so every channel keeps
    its Bayer site); NCHW ``(1, 4, h, w)`` float32. A patch smaller than ``size`` is an error."""
    from dpedkit.train.raw_data import RawDataError, ZrrPatches
    try:
        train = ZrrPatches(root, "train")
    except RawDataError as e:
        raise ExportError(f"a learned ISP calibrates int8 on a RAW-to-RGB dataset (--layout zrr): {e}") from None
    n = len(train)
    picks = [k * n // limit for k in range(limit)] if n > limit else range(n)
    h, w = size
    out = []
    for k in picks:
        packed = train[k][0].numpy()
        if packed.shape[1] < h or packed.shape[2] < w:
            raise ExportError(f"{train.folders.raw_path('train', train.indices[k])}: its packed mosaic is "
                              f"{packed.shape[1]}x{packed.shape[2]}, smaller than the input size {h}x{w}: export "
                              f"with --input-size at most that (half the RAW patch's side)")
        top, left = (packed.shape[1] - h) // 2, (packed.shape[2] - w) // 2
        out.append(np.ascontiguousarray(packed[None, :, top:top + h, left:left + w]))
    return out


def run_tflite(model: str | Path | bytes, x: np.ndarray | torch.Tensor, threads: int | None = None) -> np.ndarray:
    """The file's output for the NCHW input ``x``, back in NCHW (LiteRT's CPU interpreter)."""
    from ai_edge_litert.interpreter import Interpreter
    it = (Interpreter(model_content=bytes(model), num_threads=threads) if isinstance(model, (bytes, bytearray))
          else Interpreter(model_path=str(model), num_threads=threads))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], nhwc(x))
    it.invoke()
    return np.ascontiguousarray(it.get_tensor(out["index"]).transpose(0, 3, 1, 2))
