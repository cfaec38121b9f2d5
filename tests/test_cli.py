"""The command line's own rules: one error mapping for every command."""
import click
from click.testing import CliRunner

from dpedkit.cli import _Group
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
