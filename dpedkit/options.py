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

A numeric field states its allowed range with ``min`` / ``max`` (inclusive unless
``min_open`` / ``max_open`` is true): the option then refuses other values at parse time
(exit 2, before any work) and ``--help`` shows the range. :func:`check_ranges` applies the
same ranges to a dataclass built in Python, so the API refuses them too::

    lr: float = field(default=1e-4, metadata={"help": "Learning rate.", "min": 0, "min_open": True})
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable

import click

from dpedkit.errors import DpedkitError


class OptionRangeError(DpedkitError, ValueError):
    """An option's value lies outside the range its field states."""

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


_RANGE_KEYS = ("min", "max", "min_open", "max_open")


def _numeric_type(base: type, md: dict) -> Any:
    """``int``/``float``, or click's range type when the field's metadata gives a range."""
    if not any(k in md for k in _RANGE_KEYS):
        return base
    rng = click.IntRange if base is int else click.FloatRange
    return rng(md.get("min"), md.get("max"), min_open=md.get("min_open", False), max_open=md.get("max_open", False))


def range_text(md: dict) -> str | None:
    """The field's range written as ``--help`` shows it (``x>=1``, ``x>0``, ``0<=x<1``), or
    None when it has none."""
    lo, hi = md.get("min"), md.get("max")
    if lo is None and hi is None:
        return None
    lt_lo, lt_hi = ("<" if md.get("min_open") else "<="), ("<" if md.get("max_open") else "<=")
    if hi is None:
        return f"x{lt_lo.replace('<', '>')}{lo}"
    if lo is None:
        return f"x{lt_hi}{hi}"
    return f"{lo}{lt_lo}x{lt_hi}{hi}"


def _in_range(value: Any, md: dict) -> bool:
    lo, hi = md.get("min"), md.get("max")
    if lo is not None and (value <= lo if md.get("min_open") else value < lo):
        return False
    if hi is not None and (value >= hi if md.get("max_open") else value > hi):
        return False
    return True


def check_ranges(obj: Any) -> None:
    """Raise :class:`OptionRangeError` naming the option when a numeric field of the
    dataclass ``obj`` (nested ones included) is outside the range its metadata states; None
    values ("the code chooses") pass."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not _in_range(value, f.metadata):
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            raise OptionRangeError(f"{flag} {value} is out of range: it must be {range_text(f.metadata)}")


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
        md = {**f.metadata, **overrides.get(f.name, {})}
        flag = md.get("flag", "--" + f.name.replace("_", "-"))
        if flag in flags:
            raise ValueError(f"{cls.__name__}: two fields would both be the option {flag}")
        flags.add(flag)
        default = md["default"] if "default" in md else _field_default(f)
        base = _unwrap_optional(t)
        decls = [flag] + ([md["short"]] if "short" in md else []) + ["__".join(path)]
        kw: dict[str, Any] = {"help": md.get("help")}
        if base is bool and default is None:   # unset: the code chooses (e.g. on CUDA only)
            decls[0] = f"{flag}/--no-{flag[2:]}"
            kw.update(default=None)
        elif base is bool:
            if default:
                decls[0] = f"{flag}/--no-{flag[2:]}"
            kw.update(is_flag=True, default=bool(default), show_default=bool(default))
        else:
            if "click_type" in md:
                ctype = md["click_type"]
            elif "choices" in md:
                ctype = click.Choice(md["choices"])
            elif base in (int, float):
                ctype = _numeric_type(base, md)
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
