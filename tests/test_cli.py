"""The command line's own rules: one error mapping, and the command that resumes a run."""
from pathlib import Path

import click
from click.testing import CliRunner

from dpedkit.cli import _command_line, _Group
from dpedkit.errors import DpedkitError


def test_every_dpedkit_error_is_a_message_and_exit_2_not_a_traceback():
    @click.group(cls=_Group)
    def grp():
        pass

    @grp.command()
    def boom():
        class Custom(DpedkitError):
            pass
        raise Custom("the folder holds no photos")

    r = CliRunner().invoke(grp, ["boom"])
    assert r.exit_code == 2 and "Error: the folder holds no photos" in r.output and "Traceback" not in r.output


def test_the_resume_command_keeps_the_options_the_run_was_started_with():
    seen = {}

    @click.command()
    @click.argument("demo_dir", type=click.Path(path_type=Path), default=Path("demo"))
    @click.option("--train-iters", type=int, default=150)
    @click.option("--test-patches", type=int, default=None)
    @click.option("--previews/--no-previews", default=False)
    def demo(demo_dir, train_iters, test_patches, previews):
        seen["line"] = _command_line("demo", click.get_current_context())

    CliRunner().invoke(demo, ["my demo", "--test-patches", "20", "--previews"])
    assert seen["line"] == "dpedkit demo 'my demo' --test-patches 20 --previews"     # no default spelled out
    CliRunner().invoke(demo, [])
    assert seen["line"] == "dpedkit demo demo"
