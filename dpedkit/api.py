"""The Python API of dpedkit: what each CLI command does, as a function for a notebook.

Conventions everywhere: images are NumPy arrays (H, W, 3), uint8, RGB, EXIF orientation
applied; pixel coordinates have x to the right, y down, pixel centres at integers; a
homography maps DSLR source pixels to phone source pixels. Folder layouts are those of
:mod:`dpedkit.layout`. Heavy modules (OpenCV, torch) load on first use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike


def _image(x: np.ndarray | PathLike) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    from dpedkit.imageio import read_image
    return read_image(x)


def align_pair(phone: np.ndarray | PathLike, dslr: np.ndarray | PathLike, options=None):
    """Align one DSLR photo to one phone photo (arrays or image paths).

    Returns an :class:`~dpedkit.align.core.AlignResult`: ``homography`` (3×3, DSLR source px →
    phone source px), ``crop`` (x, y, w, h in phone px), ``phone`` and ``dslr`` (the aligned
    pair, same size: the phone crop and the DSLR warped onto it), ``matches``, ``inliers``,
    ``reprojection_rmse`` (phone px). Raises :class:`~dpedkit.align.core.AlignError` with the
    reason when the pair cannot be aligned. ``options``: an
    :class:`~dpedkit.align.core.AlignOptions`."""
    from dpedkit.align.core import AlignOptions, align_images
    return align_images(_image(phone), _image(dslr), options or AlignOptions())


def align_folder(raw: PathLike, out: PathLike, options=None, log=print):
    """``dpedkit align``: pair, align and crop every pair of ``raw/<phone>`` and
    ``raw/<dslr>`` into ``out`` (resumable); returns the run's
    :class:`~dpedkit.runner.RunSummary`. ``options``: an
    :class:`~dpedkit.align.stage.AlignRunOptions`."""
    from dpedkit.align.stage import AlignRunOptions, align_folder as run
    return run(raw, out, options or AlignRunOptions(), log=log)


def cut_patches(aligned: PathLike, out: PathLike, options=None, log=print):
    """``dpedkit patches``: cut matched 100×100 patch pairs of an aligned folder into the
    DPED layout ``out/<phone>/`` (resumable); returns a
    :class:`~dpedkit.patches.stage.PatchSummary`. ``options``: a
    :class:`~dpedkit.patches.stage.PatchOptions`."""
    from dpedkit.patches.stage import PatchOptions, cut_patches as run
    return run(aligned, out, options or PatchOptions(), log=log)


def train_model(data_dir: PathLike, out: PathLike | None = None, phone: str | None = None, dslr: str | None = None,
          log=print, **config: Any) -> list[dict]:
    """``dpedkit train``: train the DPED enhancer on a DPED-layout dataset; returns the rows
    of the run's ``metrics.csv`` (losses, test PSNR in dB, SSIM). The camera folders come
    from the dataset unless given; ``config``: any other
    :class:`~dpedkit.train.loop.TrainConfig` field (``iters=1000, device="cpu"``)."""
    from dpedkit.layout import dataset_cameras
    from dpedkit.train.loop import TrainConfig, train as run
    _, phone, dslr = dataset_cameras(data_dir, phone, dslr)
    cfg = TrainConfig(data_dir=str(data_dir), phone=phone, dslr=dslr, out=str(out or Path("runs") / phone), **config)
    return run(cfg, log=log)


def load_generator(model: PathLike):
    """The DPED generator (a ``torch.nn.Module`` in eval mode, on the CPU) from a dpedkit run
    folder or ``.pt`` checkpoint, or an official DPED TensorFlow checkpoint prefix."""
    from dpedkit.model.generator import load_generator as load
    return load(model)[0]


def enhance_image(model, image: np.ndarray | PathLike, device: str = "auto", tile: int | None = None,
                  overlap: int | None = None, max_memory: str | int | None = None) -> np.ndarray:
    """The enhanced photo (uint8 RGB, same size). ``model``: a generator from
    :func:`load_generator`, or anything :func:`load_generator` takes. Exact by default: whole
    when it fits ``max_memory`` (bytes or e.g. ``"4G"``; default ¾ of the free memory), else in
    strips with the whole image's statistics; ``tile`` (px) runs approximate cross-faded tiles
    instead, overlapping by ``overlap`` px (default: ``EnhanceOptions``'s)."""
    import torch

    from dpedkit.enhance.planner import parse_size
    from dpedkit.enhance.stage import EnhanceOptions, enhance_array
    from dpedkit.model.device import resolve_device
    from dpedkit.model.inference import prepare
    dev = resolve_device(device)
    g = model if isinstance(model, torch.nn.Module) else load_generator(model)
    overlap = EnhanceOptions().overlap if overlap is None else overlap
    max_bytes = parse_size(max_memory) if max_memory is not None else None
    return enhance_array(prepare(g, dev), _image(image), dev, torch.float32, tile, overlap, max_bytes)


def enhance_photos(model: PathLike, inputs: list[PathLike], out: PathLike, options=None, log=print):
    """``dpedkit enhance``: enhance photos (files or folders) into ``out`` (resumable: a
    changed model or option redoes a photo); returns the :class:`~dpedkit.runner.RunSummary`.
    ``options``: an :class:`~dpedkit.enhance.stage.EnhanceOptions`."""
    from dpedkit.enhance.stage import EnhanceOptions, enhance_paths
    return enhance_paths(model, list(inputs), out, options or EnhanceOptions(), log=log)


def evaluate_model(model: PathLike, data_dir: PathLike, phone: str | None = None, dslr: str | None = None,
             device: str = "auto", limit: int | None = None, log=print) -> dict:
    """``dpedkit evaluate``: PSNR (dB), SSIM and MS-SSIM of ``model`` on the dataset's test
    patches, beside the identity baseline (RGB in [0, 1], data range 1)."""
    from dpedkit.evaluate import evaluate_model as run
    return run(model, data_dir, phone, dslr, device, limit, log=log)
