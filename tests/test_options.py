"""Options are defined once, in dataclass fields: the CLI is generated from them."""

from dataclasses import dataclass, field

import click
from click.testing import CliRunner

from dpedkit.align.core import AlignOptions
from dpedkit.align.stage import AlignRunOptions
from dpedkit.cli import main
from dpedkit.options import click_options, from_options


def test_every_option_of_every_command_has_help_and_every_help_ends_with_an_example():
    runner = CliRunner()
    ctx = click.Context(main)
    names = main.list_commands(ctx)
    assert {"align", "patches", "train", "enhance", "evaluate", "report", "demo"} <= set(names)
    for name in names:
        cmd = main.get_command(ctx, name)
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert p.help, f"dpedkit {name} {p.opts[0]} has no help text"
        out = runner.invoke(main, [name, "--help"]).output
        last = out.rstrip().splitlines()[-1].strip()
        assert last.startswith(f"dpedkit {name} "), (name, last)
        assert "../shared" not in out


def test_cli_defaults_are_the_dataclass_defaults():
    cmd = main.get_command(click.Context(main), "align")
    defaults = {p.name: p.default for p in cmd.params if isinstance(p, click.Option)}
    assert defaults["align__min_inliers"] == AlignOptions().min_inliers
    assert defaults["align__plausibility__max_stretch"] == AlignOptions().plausibility.max_stretch
    assert defaults["max_skew"] == AlignRunOptions().max_skew


@dataclass
class Inner:
    max_stretch: float = field(default=1.5, metadata={"help": "Largest stretch (ratio)."})


@dataclass
class Outer:
    size: int = field(default=100, metadata={"help": "Side (px)."})
    fast: bool = field(default=True, metadata={"help": "Go fast."})
    hidden: int = field(default=3, metadata={"cli": False})
    inner: Inner = field(default_factory=Inner)


def test_a_field_added_to_a_nested_dataclass_becomes_an_option():
    seen = {}

    @click.command()
    @click_options(Outer)
    def cmd(**options):
        seen["opts"] = from_options(Outer, options)

    r = CliRunner().invoke(cmd, ["--max-stretch", "2.5", "--no-fast"])
    assert r.exit_code == 0, r.output
    assert seen["opts"] == Outer(size=100, fast=False, hidden=3, inner=Inner(max_stretch=2.5))
    assert "--hidden" not in CliRunner().invoke(cmd, ["--help"]).output
    assert CliRunner().invoke(cmd, []).exit_code == 0 and seen["opts"] == Outer()


@dataclass
class Ranged:
    count: int = field(default=3, metadata={"help": "How many.", "min": 1})
    share: float = field(default=0.2, metadata={"help": "A share.", "min": 0, "max": 1, "max_open": True})
    rate: float = field(default=1e-3, metadata={"help": "A rate.", "min": 0, "min_open": True})
    free: float = field(default=2.0, metadata={"help": "No range."})


def _ranged_command():
    @click.command()
    @click_options(Ranged)
    def cmd(**options):
        o = from_options(Ranged, options)
        click.echo(f"{o.count} {o.share} {o.rate}")
    return cmd


def test_a_numeric_field_range_is_checked_at_parse_time_and_shown_in_help():
    runner, cmd = CliRunner(), _ranged_command()
    assert runner.invoke(cmd, ["--count", "1", "--share", "0", "--rate", "0.5"]).output.strip() == "1 0.0 0.5"
    for args, words in ((["--count", "0"], "--count"), (["--share", "1"], "--share"),
                        (["--rate", "0"], "--rate"), (["--rate", "-1"], "--rate")):
        r = runner.invoke(cmd, args)
        assert r.exit_code == 2 and words in r.output and "range" in r.output, (args, r.output)
    help_ = runner.invoke(cmd, ["--help"]).output
    assert "x>=1" in help_ and "0<=x<1" in help_ and "x>0" in help_


def test_check_ranges_refuses_an_out_of_range_dataclass_built_in_python():
    import pytest
    from dpedkit.errors import DpedkitError
    from dpedkit.options import check_ranges
    check_ranges(Ranged())
    check_ranges(Ranged(free=-1e9))
    with pytest.raises(DpedkitError, match=r"--share 1\.5 is out of range: it must be 0<=x<1"):
        check_ranges(Ranged(share=1.5))
    with pytest.raises(ValueError, match="--count"):
        check_ranges(Ranged(count=0))


def test_every_numeric_option_of_every_command_states_its_range():
    # a numeric option without a range lets 0 or -5 through to a traceback or a silent no-op;
    # --jobs counts back from all cores when negative (joblib's convention) and --clock-offset
    # is any number of seconds
    free = {"--jobs", "--clock-offset", "--nproc-per-node"}
    ctx = click.Context(main)
    missing = []
    for name in main.list_commands(ctx):
        for p in main.get_command(ctx, name).params:
            if isinstance(p, click.Option) and p.opts[0] not in free and \
                    isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType)) and \
                    not isinstance(p.type, (click.IntRange, click.FloatRange)):
                missing.append(f"dpedkit {name} {p.opts[0]}")
    assert not missing, missing
