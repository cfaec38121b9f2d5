"""Find, for each DSLR window on a grid, the phone window that matches it best: the search's
entry point and the names the stages use.

The search lives in small modules (conventions, units and coordinates in
:mod:`dpedkit.patches.window`):

* :mod:`~dpedkit.patches.window` — options, one window's match, the two patches it describes;
* :mod:`~dpedkit.patches.exhaustive` — the DPED-style exhaustive shift × angle search;
* :mod:`~dpedkit.patches.verified` — the verified search, one function per check;
* :mod:`~dpedkit.patches.vouching` — judging windows with flat sides with their neighbours;
* :mod:`~dpedkit.patches.kernels` — the correlation kernels they use.
"""

from __future__ import annotations

import numpy as np

from dpedkit.errors import OptionError
from dpedkit.patches.exhaustive import match_windows_exhaustive
from dpedkit.patches.verified import match_windows_verified
from dpedkit.patches.window import (MIN_STD, WINDOW_STATUSES, SearchOptions, WindowMatch, extract_patch_pair,
                                    extract_phone_patch, grid_positions, luminance, ncc, patch_affine, patch_offset)

__all__ = ["MIN_STD", "WINDOW_STATUSES", "SearchOptions", "WindowMatch", "extract_patch_pair", "extract_phone_patch",
           "grid_positions", "luminance", "match_windows", "match_windows_exhaustive", "match_windows_verified", "ncc",
           "patch_affine", "patch_offset"]


def match_windows(dslr: np.ndarray, phone: np.ndarray, o: SearchOptions = SearchOptions()) -> list[WindowMatch]:
    """One :class:`WindowMatch` per window of :func:`grid_positions`, by ``o.method``."""
    if o.method == "verified":
        return match_windows_verified(dslr, phone, o)
    if o.method != "exhaustive":
        raise OptionError(f"unknown search method {o.method!r} (verified or exhaustive)")
    return match_windows_exhaustive(dslr, phone, o)
