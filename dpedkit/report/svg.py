"""Small inline-SVG charts for the HTML report.

Inline SVG rather than matplotlib PNGs: no extra dependency, a few kilobytes per chart, sharp
at any zoom, and the numbers stay in the page as text (searchable, and testable).
"""

from __future__ import annotations

from html import escape

import numpy as np

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** np.floor(np.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    return [float(v) for v in np.arange(np.ceil(lo / step) * step, hi + step * 1e-9, step)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class _Frame:
    """Maps data coordinates into a plot area with margins for the axes."""

    def __init__(self, width, height, xlim, ylim, left=52, right=12, top=24, bottom=32):
        self.w, self.h = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = top, height - bottom
        self.xlim, self.ylim = xlim, ylim

    def x(self, v):
        lo, hi = self.xlim
        return self.x0 + (v - lo) / ((hi - lo) or 1) * (self.x1 - self.x0)

    def y(self, v):
        lo, hi = self.ylim
        return self.y1 - (v - lo) / ((hi - lo) or 1) * (self.y1 - self.y0)

    def axes(self, title: str, xlabel: str) -> list[str]:
        out = [f'<text x="{self.x0}" y="15" font-size="13" font-weight="bold">{escape(title)}</text>',
               f'<rect x="{self.x0}" y="{self.y0}" width="{self.x1 - self.x0}" height="{self.y1 - self.y0}" '
               f'fill="none" stroke="#999"/>']
        for t in _ticks(*self.xlim):
            out.append(f'<text x="{self.x(t):.1f}" y="{self.y1 + 14}" font-size="10" text-anchor="middle">{_fmt(t)}</text>')
        for t in _ticks(*self.ylim):
            out.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{self.y(t):.1f}" y2="{self.y(t):.1f}" stroke="#eee"/>')
            out.append(f'<text x="{self.x0 - 4}" y="{self.y(t) + 3:.1f}" font-size="10" text-anchor="end">{_fmt(t)}</text>')
        out.append(f'<text x="{(self.x0 + self.x1) / 2}" y="{self.h - 4}" font-size="11" text-anchor="middle">'
                   f'{escape(xlabel)}</text>')
        return out


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
            f'font-family="sans-serif">' + "".join(body) + "</svg>")


def line_chart(x: list[float], series: dict[str, list[float | None]], title: str, xlabel: str = "iteration",
               width: int = 420, height: int = 220) -> str:
    """One or more lines over a shared x axis; ``None`` values are gaps."""
    ys = [v for s in series.values() for v in s if v is not None and np.isfinite(v)]
    if not x or not ys:
        return ""
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1
    f = _Frame(width, height, (min(x), max(x)), (lo - pad, hi + pad))
    body = f.axes(title, xlabel)
    for k, (name, s) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        pts = [(f.x(a), f.y(b)) for a, b in zip(x, s) if b is not None and np.isfinite(b)]
        if len(pts) > 1:
            body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="'
                        + " ".join(f"{px:.1f},{py:.1f}" for px, py in pts) + '"/>')
        for px, py in pts if len(pts) <= 60 else []:
            body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2" fill="{color}"/>')
        if len(series) > 1:
            body.append(f'<text x="{f.x1 - 4}" y="{f.y0 + 14 + 13 * k}" font-size="11" text-anchor="end" '
                        f'fill="{color}">{escape(name)}</text>')
    return _svg(width, height, body, title)


def histogram(values: list[float], title: str, bins: int = 50, lim: tuple[float, float] | None = None,
              marker: float | None = None, marker_label: str = "", width: int = 560, height: int = 240) -> str:
    """A histogram with an optional vertical marker (e.g. the acceptance threshold)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return ""
    lo, hi = lim or (float(v.min()), float(v.max()))
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    f = _Frame(width, height, (lo, hi), (0, counts.max() * 1.08))
    body = f.axes(title, f"{v.size} values")
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            color = "#2ca02c" if marker is not None and a >= marker - 1e-9 else "#aaa"
            body.append(f'<rect x="{f.x(a):.1f}" y="{f.y(c):.1f}" width="{max(f.x(b) - f.x(a) - 0.5, 0.5):.1f}" '
                        f'height="{f.y(0) - f.y(c):.1f}" fill="{color}"><title>{a:.3f}–{b:.3f}: {c}</title></rect>')
    if marker is not None:
        body.append(f'<line x1="{f.x(marker):.1f}" x2="{f.x(marker):.1f}" y1="{f.y0}" y2="{f.y1}" '
                    f'stroke="#d62728" stroke-width="1.5" stroke-dasharray="4 3"/>')
        body.append(f'<text x="{f.x(marker) - 4:.1f}" y="{f.y0 + 12}" font-size="11" text-anchor="end" '
                    f'fill="#d62728">{escape(marker_label)}</text>')
    return _svg(width, height, body, title)


WINDOW_COLORS = {"a": "#2ca02c", "l": "#ff7f0e", "f": "#7f7f7f"}


def window_map(image_uri: str, img_w: int, img_h: int, grid: dict, codes: str, width: int) -> str:
    """The windows of a photo drawn over its thumbnail: accepted green, low correlation
    orange, flat grey (``codes`` as in ``patches_report.json``, row-major)."""
    s = width / img_w
    height = round(img_h * s)
    body = [f'<image href="{image_uri}" x="0" y="0" width="{width}" height="{height}"/>']
    S = grid["size"]
    for k, c in enumerate(codes):
        if c in WINDOW_COLORS:
            r, q = divmod(k, grid["cols"])
            x, y = grid["x"] + q * S, grid["y"] + r * S
            body.append(f'<rect x="{x * s:.1f}" y="{y * s:.1f}" width="{S * s:.1f}" height="{S * s:.1f}" '
                        f'fill="{WINDOW_COLORS[c]}" fill-opacity="0.2" stroke="{WINDOW_COLORS[c]}" stroke-width="0.5"/>')
    return _svg(width, height, body, "patch windows")
