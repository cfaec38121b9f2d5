"""Judging windows with sides without texture together with their grid neighbours (the last
step of the verified search): a flat part may hide another depth."""

from __future__ import annotations

import numpy as np

from dpedkit.patches.window import SearchOptions, WindowMatch


def vouch_flat_sides(windows: list[WindowMatch], o: SearchOptions) -> None:
    """Judge the windows that passed every check but have sides without texture (``flat_sides``)
    together with their neighbours; those not vouched for become ``sparse``.

    Why: a flat part can hide another depth (its shift is unmeasurable). Starting from such a
    window, the grid is walked across its flat sides (and across every side of a ``flat``
    window); the windows it stops at that were verified with texture on all four sides are the
    region's boundary (the grid's edge stops the walk without a vote). The region is accepted
    when it has at least two boundary windows and all of them and the region's own windows
    agree on the shift within ``o.vouch_agreement`` px of the boundary's median (a rotation
    counts by its corner motion). A flat stretch enclosed by texture that moves as one is then
    very likely the same surface; a flat stretch between two depths meets windows of both and
    fails the agreement. A region window whose flat side faces unverified texture (a depth
    edge, a moved object) is rejected itself.
    """
    at = {(w.x, w.y): w for w in windows}
    S, h = o.size, (o.size - 1) / 2
    step = {"t": (0, -S), "b": (0, S), "l": (-S, 0), "r": (S, 0)}
    pending = lambda w: w.status == "ok" and bool(w.flat_sides)  # noqa: E731
    done: set = set()
    for w0 in windows:
        if not pending(w0) or (w0.x, w0.y) in done:
            continue
        region, boundary, stack, ok, tainted = {(w0.x, w0.y)}, {}, [w0], True, []
        while stack:
            w = stack.pop()
            for side in (w.flat_sides if w.status == "ok" else "tblr"):
                key = (w.x + step[side][0], w.y + step[side][1])
                n = at.get(key)
                if n is None or key in region or key in boundary:
                    continue
                elif pending(n) or n.status == "flat":
                    region.add(key)
                    stack.append(n)
                elif n.status == "ok":
                    boundary[key] = n
                elif w.status == "ok":
                    tainted.append(w)                             # unverified texture beyond a flat side:
                                                                  # maybe a depth edge next to this window
        members = [at[k] for k in region if at[k].status == "ok"]
        done |= region
        ok = ok and len(boundary) >= 2
        if ok:
            d = np.array([(n.dx, n.dy) for n in boundary.values()])
            med = np.median(d, axis=0)
            shifts = np.array([(m.dx, m.dy) for m in (*boundary.values(), *members)])
            angles = np.array([m.angle for m in (*boundary.values(), *members)])
            gap = np.hypot(*(shifts - med).T) + np.deg2rad(np.abs(angles)) * h * np.sqrt(2)
            ok = bool(gap.max() <= o.vouch_agreement)
        for m in (members if not ok else tainted):
            m.status = "sparse"

