"""The export's one error class (its writers raise it too)."""

from dpedkit.errors import DpedkitError


class ExportError(DpedkitError, ValueError):
    """The model cannot be exported as asked (an output format dpedkit does not write, options
    that do not fit the format, a missing package, unusable calibration data)."""
