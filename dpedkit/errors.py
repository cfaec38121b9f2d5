"""The one base class of dpedkit's errors: the CLI maps every subclass to exit code 2."""


class DpedkitError(Exception):
    """A dpedkit failure with a message a user can act on."""
