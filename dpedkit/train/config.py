"""The options of a training run (:class:`TrainConfig`) and its recipe checks.

The CLI is generated from the dataclass's fields (:mod:`dpedkit.options`); a numeric field's
allowed range is in its metadata (``min``/``max``, ``min_open``/``max_open`` for strict
bounds), which both the CLI and :class:`TrainConfig` itself check, so the Python API refuses
a bad value as the command line does (:class:`TrainError`, naming the option).

``config.json`` records a run's config (:func:`recorded`); a resume whose recipe
(:data:`RECIPE_FIELDS`) changed is refused unless ``--override`` (:func:`check_resume`).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from dpedkit.errors import DpedkitError
from dpedkit.fs import write_text_atomic
from dpedkit.train.recipes import RECIPES


class TrainError(DpedkitError, RuntimeError):
    """A training run cannot start or continue; the message says why and what to do."""


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


POSITIVE = {"min": 0, "min_open": True}


MODELS = ("dped", "pynet", "microisp")
ISP_MODELS = ("pynet", "microisp")
# the DPED GAN's own options: a learned-ISP recipe sets these itself, per stage
DPED_ONLY = ("iters", "batch_size", "lr", "w_content", "w_color", "w_texture", "w_tv", "start")


@dataclass
class TrainConfig:
    data_dir: str = field(metadata={"help": "The dataset: the DPED layout (DATA_DIR[/<phone>]/training_data/...) "
                                            "or the Zurich RAW-to-RGB layout (DATA_DIR/{train,test}/...)."})
    phone: str = field(metadata={"help": "Phone folder name (DPED layout: default from the dataset's dataset.json, "
                                         "or DATA_DIR's only sub-folder; RAW layout: the mosaics' folder, default "
                                         "from raw.json, e.g. huawei_raw)."})
    dslr: str = _opt("canon", "DSLR folder name (default: from dataset.json / raw.json, else canon).")
    model: str = _opt("auto", "What to train: the DPED GAN, or a learned ISP on a RAW dataset (auto: pynet for "
                              "the RAW-to-RGB layout, dped otherwise).", choices=["auto", *MODELS])
    recipe: str | None = _opt(None, "A learned ISP's recipe (default: the model's published one; *-cpu-test: "
                                    "reduced ones for smoke runs).",
                              choices=list(RECIPES))
    stage_steps: int | None = _opt(None, "Learned ISPs: steps per stage instead of the recipe's epochs.", min=1)
    loader_workers: int | None = _opt(None, "Learned ISPs: processes decoding patches (default: 4 on CUDA, none "
                                            "on a CPU).", min=0)
    out: str = _opt("runs/dped", "Run folder (default: runs/<phone>).")
    vgg: str | None = _opt(None, "VGG-19 weights: torchvision .pth or MatConvNet .mat (else $DPEDKIT_VGG, "
                                 "else torch hub's cache).")
    content_loss: str = _opt("vgg", "Content loss on VGG-19 relu5_4 features, or none.", choices=["vgg", "none"])
    iters: int = _opt(20000, "Training iterations (one generator and one discriminator step each).", min=1)
    batch_size: int = _opt(50, "Patches per step (the global batch with several processes).", min=1)
    lr: float = _opt(5e-4, "Adam learning rate of both networks.", **POSITIVE)
    w_content: float = _opt(10.0, "Weight of the VGG content loss.", min=0)
    w_color: float = _opt(0.5, "Weight of the colour (blur) loss.", min=0)
    w_texture: float = _opt(1.0, "Weight of the texture (adversarial) loss.", min=0)
    w_tv: float = _opt(2000.0, "Weight of the total-variation loss.", min=0)
    start: str = _opt("paper", "Generator start: the paper's random initialisation, or near the identity (RGB passed "
                               "through, residual branches off: for short runs without the content loss, e.g. the "
                               "demo).", choices=["paper", "identity"])
    eval_every: int = _opt(1000, "Evaluate, write metrics/samples/checkpoints every N iterations.", min=1)
    eval_patches: int = _opt(500, "Test patches per evaluation (batches of 50).", min=1)
    train_size: int | None = _opt(None, "Use at most this many training patches (default: all).", min=1)
    device: str = _opt("auto", "auto: CUDA when available, else the CPU.", choices=["auto", "cpu", "cuda"])
    precision: str = _opt("auto", "Autocast dtype of the forward passes (auto: bf16 on CUDA, fp32 elsewhere; "
                                  "bf16 runs on a CPU too).", choices=["auto", "fp32", "bf16"])
    channels_last: bool | None = _opt(None, "NHWC memory format for images and weights (default: on CUDA).")
    fused_adam: bool | None = _opt(None, "Fused Adam kernels (default: on CUDA).")
    compile: bool = _opt(False, "torch.compile the networks (also on CPU).")
    compile_backend: str = _opt("inductor", "torch.compile's backend: inductor (generated kernels), or aot_eager "
                                            "(graph capture and autograd tracing without code generation: to "
                                            "debug a compiled run, or to check one quickly).",
                                choices=["inductor", "aot_eager"])
    seed: int = _opt(0, "Seed of the batches, swaps and the networks' initialisation.", min=0)
    resume: bool = _opt(False, "Expect a run to resume in --out (re-running the same command resumes anyway).")
    override: bool = _opt(False, "Resume even though the recipe changed; the change is recorded in "
                                 "config_changes.jsonl.")
    keep_checkpoints: int = _opt(3, "Keep the last N evaluations' full checkpoints iter_<n>.pt (0: none).", min=0)
    log_every: float = _opt(60.0, "Seconds between progress lines when stderr is not a terminal.", min=0)
    tensorboard: bool = _opt(False, "Also log losses, metrics and samples to <out>/tensorboard "
                                    "(pip install 'dpedkit[tensorboard]').")
    ignore_memory: bool = _opt(False, "Start even when the step's estimated peak memory exceeds the available "
                                      "memory (a warning instead of the refusal).")

    def __post_init__(self):
        check_fields(self)


def _bound_text(md: dict) -> str:
    parts = []
    if "min" in md:
        parts.append(f"{'>' if md.get('min_open') else '≥'} {md['min']:g}")
    if "max" in md:
        parts.append(f"{'<' if md.get('max_open') else '≤'} {md['max']:g}")
    return " and ".join(parts)


def _out_of_range(value, md: dict) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return True
    lo, hi = md.get("min"), md.get("max")
    return ((lo is not None and (value <= lo if md.get("min_open") else value < lo))
            or (hi is not None and (value >= hi if md.get("max_open") else value > hi)))


def check_fields(obj) -> None:
    """Raise :class:`TrainError` naming the option of the first field of dataclass ``obj``
    outside its metadata's range or ``choices`` (None: unset, always allowed)."""
    for f in fields(obj):
        value, md = getattr(obj, f.name), f.metadata
        flag = "--" + f.name.replace("_", "-")
        if value is None or isinstance(value, bool):
            continue
        if "choices" in md and value not in md["choices"]:
            raise TrainError(f"{flag} {value!r}: choose {', '.join(md['choices'])}")
        if ("min" in md or "max" in md) and (not isinstance(value, (int, float)) or _out_of_range(value, md)):
            raise TrainError(f"{flag} {value!r}: must be {_bound_text(md)}")


# Options that change what is computed: resuming with any of them changed is refused unless
# --override. The others (where to write, how long, how fast, how verbose) may change freely.
RECIPE_FIELDS = ("data_dir", "phone", "dslr", "model", "recipe", "stage_steps", "vgg", "content_loss", "batch_size", "lr", "w_content", "w_color",
                 "w_texture", "w_tv", "start", "eval_patches", "train_size", "seed", "precision")
# per-invocation switches: not part of the recorded recipe
_NOT_RECORDED = ("resume", "override", "ignore_memory")
PATH_FIELDS = ("data_dir", "out", "vgg")


def recorded(cfg: TrainConfig) -> dict:
    """The config as ``config.json`` records it: paths absolute, per-invocation switches left out."""
    d = asdict(cfg)
    for k in PATH_FIELDS:
        if d[k] is not None:
            d[k] = os.path.abspath(d[k])
    return {k: v for k, v in d.items() if k not in _NOT_RECORDED}


def recipe_changes(old: dict, new: TrainConfig) -> dict:
    """``{field: [old, new]}`` for every recipe field that differs (paths compared absolute)."""
    now = recorded(new)
    # a field newer than the recorded run (absent from its config.json) had its default then;
    # runs recorded before --model were all DPED runs
    defaults = {f.name: f.default for f in fields(TrainConfig)} | {"model": "dped"}
    return {k: [old.get(k, defaults[k]), now[k]] for k in RECIPE_FIELDS if old.get(k, defaults[k]) != now[k]}


def detect_model(data_dir: str | os.PathLike) -> str:
    """``pynet`` for a Zurich RAW-to-RGB layout (``train/`` or ``test/`` folders), else ``dped``."""
    root = Path(data_dir)
    return "pynet" if any((root / s).is_dir() for s in ("train", "test")) else "dped"


def resolved(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``--model auto`` replaced by the model its dataset's layout implies."""
    return replace(cfg, model=detect_model(cfg.data_dir)) if cfg.model == "auto" else cfg


def config_from_json(path: str | os.PathLike, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` recorded in a run's ``config.json``, with ``overrides`` applied."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TrainError(f"cannot read the recorded config {path}: {e}") from None
    if not isinstance(data, dict):
        raise TrainError(f"{path} is not a dpedkit train config")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TrainError(f"{path} has options this dpedkit does not know: {', '.join(unknown)}")
    data = {k: v for k, v in data.items() if k not in _NOT_RECORDED}
    data.update(overrides)
    missing = [k for k in ("data_dir", "phone") if k not in data]
    if missing:
        raise TrainError(f"{path} lacks {', '.join(missing)}")
    return TrainConfig(**data)


def check_resume(cfg: TrainConfig, old: dict, out: Path, log) -> None:
    """Refuse resuming the run recorded as ``old`` (its checkpoint's config) with a changed
    recipe unless ``cfg.override``; record an accepted change in ``config_changes.jsonl``."""
    changes = recipe_changes(old, cfg)
    if not changes:
        return
    listed = "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changes.items())
    if not cfg.override:
        raise TrainError(
            f"{out} holds a run trained with a different recipe ({listed}). To continue it with the new "
            f"settings add --override (the change is recorded in {out / 'config_changes.jsonl'}); to resume it "
            f"unchanged run: dpedkit train --config {out / 'config.json'}; or choose another --out")
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changes": changes})
    path = out / "config_changes.jsonl"
    before = path.read_text() if path.exists() else ""
    write_text_atomic(path, before + line + "\n")
    log(f"recipe changed on resume (--override): {listed}; recorded in {path}")
