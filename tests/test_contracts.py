"""The contracts in docs/contracts.md are enough for a foreign tool: evaluated from the
document's formulas alone, written out here independently of dpedkit's code."""
import math

import numpy as np

from dpedkit.align.warp import SplineField


def field_from_the_document(params: dict, x: float, y: float) -> tuple[float, float]:
    x0, y0, w, h = params["domain"]
    nx, ny = params["cells"]
    coef = params["coef"]
    u, v = (x - x0) / w * nx, (y - y0) / h * ny
    i, j = min(max(math.floor(u), 0), nx - 1), min(max(math.floor(v), 0), ny - 1)
    s, t = u - i, v - j

    def b(f):
        return [(1 - f) ** 3 / 6, (3 * f ** 3 - 6 * f ** 2 + 4) / 6, (-3 * f ** 3 + 3 * f ** 2 + 3 * f + 1) / 6, f ** 3 / 6]
    bx, by = b(s), b(t)
    fx = sum(by[a] * bx[c] * coef[j + a][i + c][0] for a in range(4) for c in range(4))
    fy = sum(by[a] * bx[c] * coef[j + a][i + c][1] for a in range(4) for c in range(4))
    return fx, fy


def test_the_documented_bspline_basis_is_the_one_dpedkit_evaluates():
    rng = np.random.default_rng(1)
    params = SplineField((12.0, -3.0, 640.0, 480.0), (5, 4), rng.normal(0, 2, (7, 8, 2))).to_dict()
    field = SplineField.from_dict(params)
    pts = np.c_[rng.uniform(-100, 760, 200), rng.uniform(-80, 560, 200)]     # outside the domain too
    ours = field(pts)
    doc = np.array([field_from_the_document(params, x, y) for x, y in pts])
    assert np.abs(ours - doc).max() < 1e-9
    shifted = np.array([field_from_the_document(params, x + 0.5, y) for x, y in pts])
    assert np.abs(shifted - doc).max() > 1e-3          # the comparison sees a half-pixel mistake
