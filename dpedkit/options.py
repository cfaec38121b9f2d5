"""Command-line options generated from dataclass fields: one source for every default and
help text (in the spirit of LightGlue's ``default_conf``).

A stage's options are a dataclass; each field is one option, named after it
(``max_stretch`` → ``--max-stretch``), with the field's default and the help text in its
metadata::

    max_stretch: float = field(default=1.5, metadata={"help": "Largest ... (ratio)"})

Nested dataclass fields (``AlignOptions.plausibility``) are walked too, so a field added to
any of them shows up as an option with no edit to the CLI. Metadata keys besides ``help``:
``choices`` (a list), ``short`` (``"-j"``), ``flag`` (another option name), ``envvar``,
``metavar``, ``click_type`` (a click type), and ``cli: False`` to keep a field off the
command line. A bool defaulting to True becomes ``--name/--no-name``.

Dataclasses in modules another part of the project owns may not carry metadata yet:
:data:`FIELD_HELP` holds their help (and choices) by ``"Class.field"`` until they do; the
field's own metadata wins.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable

import click

FIELD_HELP: dict[str, dict[str, Any]] = {
    # dpedkit.align.core.AlignOptions
    "AlignOptions.feature_side": {"help": "Longer side (px) of the reduced copies SIFT runs on."},
    "AlignOptions.n_features": {"help": "SIFT keypoints kept per image."},
    "AlignOptions.ratio": {"help": "Lowe's ratio test: keep a match when its distance is below this "
                                   "fraction of the second best's."},
    "AlignOptions.mutual": {"help": "Keep only mutual nearest-neighbour matches."},
    "AlignOptions.ransac_px": {"help": "MAGSAC inlier threshold, in reduced-copy pixels."},
    "AlignOptions.min_inliers": {"help": "A pair needs at least this many homography inliers."},
    "AlignOptions.refine_iters": {"help": "Grid-correlation refinement passes of the homography (0: off)."},
    "AlignOptions.refine_grid": {"help": "Refinement windows along the longer side."},
    "AlignOptions.refine_min_ncc": {"help": "A refinement window's correlation peak must reach this."},
    "AlignOptions.refine_px": {"help": "Outlier threshold of the refinement refit (phone px)."},
    "AlignOptions.min_overlap": {"help": "Smallest common crop, as a fraction of the phone photo's area."},
    # dpedkit.align.geometry.Plausibility
    "Plausibility.min_scale": {"help": "Smallest plausible phone px per DSLR px (linear, at the DSLR centre)."},
    "Plausibility.max_scale": {"help": "Largest plausible phone px per DSLR px (linear, at the DSLR centre)."},
    "Plausibility.max_area_ratio": {"help": "Largest / smallest local area scale over the DSLR frame (ratio)."},
    # dpedkit.patches.search.SearchOptions
    "SearchOptions.size": {"help": "Patch side (px)."},
    "SearchOptions.max_shift": {"help": "Largest phone-window shift searched, each direction (px)."},
    "SearchOptions.max_angle": {"help": "Largest rotation searched, each direction (degrees)."},
    "SearchOptions.angle_step": {"help": "Rotation step of the search (degrees)."},
    "SearchOptions.min_std": {"help": "A window whose grey-level standard deviation (0-255) is below this "
                                      "is flat and not scored."},
    "SearchOptions.subpixel": {"help": "Refine the best shift to sub-pixel precision (parabolic peak)."},
    # dpedkit.train.loop.TrainConfig
    "TrainConfig.phone": {"help": "Phone folder name in the DPED layout (default: from the dataset's "
                                  "dataset.json, or DATA_DIR's only sub-folder)."},
    "TrainConfig.dslr": {"help": "DSLR folder name in the DPED layout (default: from dataset.json, else canon)."},
    "TrainConfig.out": {"help": "Run folder (default: runs/<phone>)."},
    "TrainConfig.vgg": {"help": "VGG-19 weights: torchvision .pth or MatConvNet .mat (else $DPEDKIT_VGG, "
                                "else torch hub's cache)."},
    "TrainConfig.content_loss": {"help": "Content loss on VGG-19 relu5_4 features, or none.",
                                 "choices": ["vgg", "none"]},
    "TrainConfig.iters": {"help": "Training iterations (one generator and one discriminator step each)."},
    "TrainConfig.batch_size": {"help": "Patches per iteration (global, over all processes)."},
    "TrainConfig.lr": {"help": "Adam learning rate of both networks."},
    "TrainConfig.w_content": {"help": "Weight of the content (VGG) loss."},
    "TrainConfig.w_color": {"help": "Weight of the colour loss (blurred images' squared difference)."},
    "TrainConfig.w_texture": {"help": "Weight of the texture (adversarial) loss."},
    "TrainConfig.w_tv": {"help": "Weight of the total-variation loss."},
    "TrainConfig.eval_every": {"help": "Iterations between evaluations, samples and checkpoints."},
    "TrainConfig.eval_patches": {"help": "Test patches per evaluation (batches of 50)."},
    "TrainConfig.train_size": {"help": "Use at most this many training patches (default: all)."},
    "TrainConfig.device": {"help": "auto: CUDA when available, else the CPU.", "choices": ["auto", "cpu", "cuda"]},
    "TrainConfig.amp": {"help": "bf16 autocast on CUDA (--no-amp: fp32)."},
    "TrainConfig.compile": {"help": "torch.compile the training steps."},
    "TrainConfig.seed": {"help": "Seed of the weights, the batches and every random stream."},
    "TrainConfig.resume": {"help": "Continue the run in --out exactly where it stopped."},
    "TrainConfig.keep_checkpoints": {"help": "Also keep checkpoints/iter_<n>.pt at each evaluation."},
}


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _unwrap_optional(t: Any) -> Any:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return t


def option_fields(cls: type, prefix: tuple[str, ...] = ()):
    """``(path, field, type, owner class)`` of every option field of ``cls``, nested
    dataclasses walked depth-first; ``path`` is the tuple of field names from ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is False:
            continue
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            yield from option_fields(t, prefix + (f.name,))
        else:
            yield prefix + (f.name,), f, t, cls


def field_info(owner: type, f: dataclasses.Field) -> dict[str, Any]:
    """The field's CLI metadata: its own, over :data:`FIELD_HELP`'s."""
    return {**FIELD_HELP.get(f"{owner.__name__}.{f.name}", {}), **f.metadata}


def click_options(cls: type, skip: tuple[str, ...] = (), overrides: dict[str, dict] | None = None) -> Callable:
    """A decorator adding one click option per field of ``cls`` (nested ones included).

    ``skip``: field names left out (arguments, or set by the command itself); ``overrides``:
    metadata by field name that wins over the field's (e.g. ``{"default": None}`` where the
    command computes the value)."""
    overrides = overrides or {}
    decorators, flags = [], set()
    for path, f, t, owner in option_fields(cls):
        if f.name in skip:
            continue
        md = {**field_info(owner, f), **overrides.get(f.name, {})}
        flag = md.get("flag", "--" + f.name.replace("_", "-"))
        if flag in flags:
            raise ValueError(f"{cls.__name__}: two fields would both be the option {flag}")
        flags.add(flag)
        default = md["default"] if "default" in md else _field_default(f)
        base = _unwrap_optional(t)
        decls = [flag] + ([md["short"]] if "short" in md else []) + ["__".join(path)]
        kw: dict[str, Any] = {"help": md.get("help")}
        if base is bool:
            if default:
                decls[0] = f"{flag}/--no-{flag[2:]}"
            kw.update(is_flag=True, default=bool(default), show_default=bool(default))
        else:
            if "click_type" in md:
                ctype = md["click_type"]
            elif "choices" in md:
                ctype = click.Choice(md["choices"])
            elif base in (int, float):
                ctype = base
            elif base is Path:
                ctype = click.Path(path_type=Path)
            else:
                ctype = str
            kw.update(type=ctype, default=default, show_default=default is not None)
        for key in ("envvar", "metavar"):
            if key in md:
                kw[key] = md[key]
        decorators.append(click.option(*decls, **kw))

    def apply(fn: Callable) -> Callable:
        for d in reversed(decorators):
            fn = d(fn)
        return fn
    return apply


def from_options(cls: type, values: dict[str, Any], prefix: tuple[str, ...] = (), **fixed: Any):
    """Build ``cls`` from the parsed options (click's keyword arguments), nested dataclasses
    included; ``fixed`` sets top-level fields directly. Options not given keep the fields'
    defaults."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = "__".join(prefix + (f.name,))
        if not prefix and f.name in fixed:
            kwargs[f.name] = fixed[f.name]
        elif dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = from_options(hints[f.name], values, prefix + (f.name,))
        elif key in values:
            kwargs[f.name] = values[key]
    return cls(**kwargs)


def default_of(fn: Callable, name: str) -> Any:
    """The default of ``fn``'s parameter ``name`` (so a command's option repeats no default)."""
    return inspect.signature(fn).parameters[name].default
