"""The one base class of dpedkit's errors, and the exit codes of every command.

Every failure a user can act on is a :class:`DpedkitError` (each module's own subclass keeps
its other base, e.g. ``ValueError``); the command line maps it, once, to a message and its
``exit_code`` — never a traceback."""

EXIT_OK = 0
EXIT_ITEMS_FAILED = 1      # some items failed (see the summary and the records), unless --allow-failures
EXIT_BAD_START = 2         # the run could not start or go on (bad options, folders or inputs)
EXIT_STOPPED = 3           # outputs cannot be written, the folder is locked, or the cluster failed
EXIT_INTERRUPTED = 130     # Ctrl-C, or SIGTERM during training


class DpedkitError(Exception):
    """A dpedkit failure with a message a user can act on."""
    exit_code = EXIT_BAD_START


class StoppedError(DpedkitError):
    """The run must stop because nothing more can be done here (the disk, the folder's lock,
    the cluster); finished work is kept and a re-run resumes."""
    exit_code = EXIT_STOPPED


class OptionError(DpedkitError, ValueError):
    """Options that cannot work together, or a value no range check can catch (e.g. ``4Q``
    as a memory size)."""
