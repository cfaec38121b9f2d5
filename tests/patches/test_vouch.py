"""The verified search's judgement of windows with sides without texture (``vouch_flat_sides``):
a flat region is accepted only when the fully verified windows around it agree on the shift."""

from dpedkit.patches.vouching import vouch_flat_sides
from dpedkit.patches.window import SearchOptions, WindowMatch

S = 100


def _grid(shifts, pending=(1, 1), status=None):
    """3×3 grid of verified windows with ``shifts[(col, row)] = (dx, dy)`` (default 0); the
    window at ``pending`` has all four sides without texture."""
    ws = []
    for row in range(3):
        for col in range(3):
            dx, dy = shifts.get((col, row), (0.0, 0.0))
            w = WindowMatch(col * S, row * S, dx, dy, model="shift")
            w.status = (status or {}).get((col, row), "ok")
            w.flat_sides = "tblr" if (col, row) == pending else ""
            ws.append(w)
    return ws


def _centre(ws):
    return next(w for w in ws if (w.x, w.y) == (S, S))


def test_flat_window_enclosed_by_agreeing_texture_is_kept():
    ws = _grid({(1, 1): (0.2, -0.1)})
    vouch_flat_sides(ws, SearchOptions())
    assert _centre(ws).status == "ok"


def test_flat_window_between_two_depths_is_rejected():
    # the windows right of it sit on a layer shifted by 2 px: the flat part may belong to either
    ws = _grid({(2, 0): (2.0, 0.0), (2, 1): (2.0, 0.0), (2, 2): (2.0, 0.0)})
    vouch_flat_sides(ws, SearchOptions())
    assert _centre(ws).status == "sparse"
    assert all(w.status == "ok" for w in ws if (w.x, w.y) != (S, S))


def test_flat_window_next_to_unverified_texture_is_rejected():
    ws = _grid({}, status={(1, 0): "inconsistent"})
    vouch_flat_sides(ws, SearchOptions())
    assert _centre(ws).status == "sparse"


def test_flat_region_through_flat_windows_and_at_the_grid_edge():
    # pending window in a corner: the grid's edge gives no vote, its two neighbours agree → kept;
    # a 'flat' neighbour is walked through, and its own neighbours vote
    ws = _grid({}, pending=(0, 0), status={(1, 0): "flat"})
    vouch_flat_sides(ws, SearchOptions())
    assert ws[0].status == "ok"
    ws = _grid({(2, 0): (1.0, 0.0)}, pending=(0, 0), status={(1, 0): "flat"})
    vouch_flat_sides(ws, SearchOptions())
    assert ws[0].status == "sparse"
