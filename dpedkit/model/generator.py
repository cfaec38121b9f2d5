"""Load a generator from a dpedkit checkpoint or an official DPED TensorFlow checkpoint, or
a learned ISP (PyNET, MicroISP) from a dpedkit checkpoint (:func:`load_model`).

A learned ISP's checkpoint names its network (``network``: name, constructor arguments,
output level, recipe); a DPED checkpoint has no ``network`` entry.

The official checkpoints (aiff22/DPED, ``models_orig/<phone>_orig``) hold the variables of
``models.resnet``: ``generator/W1..W12`` (kernels ``[H, W, in, out]``), ``generator/b1..b12``
and ``generator/Variable``, ``Variable_1``, … — the instance-norm shift (even) and scale (odd)
of each normalised convolution, in the order the model creates them (W2, W3, …, W9).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from dpedkit.fs import file_fingerprint
from dpedkit.model.checkpoint import CheckpointError, load_checkpoint
from dpedkit.model.layers import convs, norms
from dpedkit.model.networks import GENERATOR_STEPS, Generator
from dpedkit.model.tfbundle import is_bundle, read_bundle


def _official_names(scope: str) -> dict[str, tuple[str, tuple[int, ...], bool]]:
    """TF variable name → (our state-dict key, TF shape, is a kernel), from the generator's
    layer description: convolutions are W1, W2, … in order, the instance norms' shift and
    scale ``Variable``, ``Variable_1``, … in order."""
    steps = GENERATOR_STEPS
    wanted: dict[str, tuple[str, tuple[int, ...], bool]] = {}
    for i, conv in enumerate(convs(steps), 1):
        wanted[f"{scope}W{i}"] = (f"{conv.name}.weight", (conv.kernel, conv.kernel, conv.cin, conv.cout), True)
        wanted[f"{scope}b{i}"] = (f"{conv.name}.bias", (conv.cout,), False)
    for i, norm in enumerate(norms(steps)):
        suffix = lambda k: "" if k == 0 else f"_{k}"  # noqa: E731  (tf.Variable's default names)
        wanted[f"{scope}Variable{suffix(2 * i)}"] = (f"{norm.name}.bias", (norm.channels,), False)
        wanted[f"{scope}Variable{suffix(2 * i + 1)}"] = (f"{norm.name}.weight", (norm.channels,), False)
    return wanted


def official_state_dict(variables: dict[str, np.ndarray], scope: str = "generator/") -> dict[str, torch.Tensor]:
    """Our generator's state dict from the official variables; names every misfit."""
    wanted = _official_names(scope)
    present = {k for k in variables if k.startswith(scope)}
    missing = sorted(set(wanted) - present)
    extra = sorted(present - set(wanted))
    wrong = sorted(f"{k} {list(variables[k].shape)} (expected {list(shape)})"
                   for k, (_, shape, _) in wanted.items() if k in variables and variables[k].shape != shape)
    if missing or extra or wrong:
        parts = [f"missing {', '.join(missing)}" if missing else "",
                 f"unexpected {', '.join(extra)}" if extra else "",
                 f"wrong shape {', '.join(wrong)}" if wrong else ""]
        raise CheckpointError("the checkpoint's variables do not fit the DPED generator: "
                              + "; ".join(p for p in parts if p))
    state = {}
    for k, (ours, _, kernel) in wanted.items():
        v = torch.from_numpy(np.ascontiguousarray(variables[k], dtype=np.float32))
        state[ours] = v.permute(3, 2, 0, 1).contiguous() if kernel else v
    return state


def _refuse_model_folder(model: str | Path) -> None:
    """A folder of official models (``models_orig/``) is not a model: name what it holds."""
    folder = Path(model)
    if not folder.is_dir() or (folder / "checkpoints" / "last.pt").is_file():
        return
    prefixes = sorted(p.with_suffix("").name for p in folder.glob("*.index"))
    checkpoints = sorted(p.name for p in folder.glob("*.pt"))
    if not prefixes and not checkpoints:
        return      # load_checkpoint's "no checkpoint at …" says it
    found = [f"{folder / p} (official DPED TensorFlow checkpoint)" for p in prefixes] + \
            [f"{folder / c} (dpedkit checkpoint)" for c in checkpoints]
    raise CheckpointError(f"{folder} is a folder of models, not one model; pass one of:\n  " + "\n  ".join(found))


def load_generator(model: str | Path) -> tuple[Generator, str]:
    """A generator in eval mode, and a line describing where it came from.

    ``model``: a dpedkit run folder or ``.pt`` checkpoint, or an official TensorFlow
    checkpoint prefix (``…/iphone_orig``, or its ``.index`` file).
    """
    g = Generator()
    _refuse_model_folder(model)
    if is_bundle(model):
        g.load_state_dict(official_state_dict(read_bundle(model)))
        what = f"official DPED TensorFlow checkpoint {model}"
    else:
        ck = load_checkpoint(model)
        if isinstance(ck.get("network"), dict):
            name = ck["network"].get("name", "?")
            raise CheckpointError(f"{model} holds a {name} learned ISP, which renders RAW mosaics, not the DPED "
                                  f"enhancer this command runs; export it with: dpedkit export {model} {name}.onnx")
        try:
            g.load_state_dict(ck["generator"])
        except (RuntimeError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{model}: the generator weights do not fit: {str(e).splitlines()[0]}") from None
        what = f"dpedkit checkpoint {model} (iteration {ck.get('iteration', '?')})"
    return g.eval(), what


def load_model(model: str | Path) -> tuple[torch.nn.Module, str, int]:
    """Any dpedkit model in eval mode: ``(network, description, input channels)`` — the DPED
    generator (3: RGB) as :func:`load_generator` loads it, or a learned ISP (4: the packed
    Bayer mosaic, :func:`dpedkit.train.raw_data.pack_bayer`) at its checkpoint's level."""
    _refuse_model_folder(model)
    ck = None if is_bundle(model) else load_checkpoint(model)
    if ck is None or not isinstance(ck.get("network"), dict):
        g, what = load_generator(model)
        return g, what, 3
    net = ck["network"]
    if net.get("name") == "pynet":
        from dpedkit.model.pynet import PyNET
        m = PyNET(level=int(net.get("level", 0)), **net.get("kwargs", {}))
    elif net.get("name") == "microisp":
        from dpedkit.model.microisp import MicroISP
        m = MicroISP(**net.get("kwargs", {}))
    else:
        raise CheckpointError(f"{model}: unknown network {net.get('name')!r}")
    try:
        m.load_state_dict(ck["generator"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{model}: the {net['name']} weights do not fit: {str(e).splitlines()[0]}") from None
    what = f"dpedkit {net['name']} checkpoint {model} (iteration {ck.get('iteration', '?')}, level {net.get('level', 0)})"
    return m.eval(), what, 4


def model_files(model: str | Path) -> list[Path]:
    """The files :func:`load_generator` reads for ``model``: a run folder's
    ``checkpoints/last.pt``, a ``.pt`` file, or a TensorFlow bundle's ``.index`` and
    ``.data-*`` shards."""
    p = Path(model)
    if is_bundle(p):
        prefix = p.with_name(p.name.split(".data-")[0].removesuffix(".index"))
        return [prefix.with_name(prefix.name + ".index")] + sorted(prefix.parent.glob(prefix.name + ".data-*"))
    return [p / "checkpoints" / "last.pt"] if p.is_dir() else [p]


def model_fingerprint(model: str | Path) -> str:
    """A short identity of the weights ``model`` names (size, mtime and head of each file):
    a retrained or replaced model gets another fingerprint, so its outputs are redone."""
    h = hashlib.sha1()
    for f in model_files(model):
        try:
            h.update(f"{f.name}={file_fingerprint(f)};".encode())
        except OSError:
            h.update(f"{f.name}=missing;".encode())
    return h.hexdigest()[:16]
