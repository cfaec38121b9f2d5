"""Inline-SVG charts for the report folder: formatted ticks (never ``-0``), legends below the
plot (never over a line), optional log scale, reference lines (e.g. the identity baseline),
small multiples (one panel and axis per series), a histogram with a threshold marker, and the
patch-window map of one photo.

Inline SVG rather than image files: no plotting dependency, a few kilobytes per chart, sharp at
any zoom, and the numbers stay in the page as text (searchable and testable).
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
# rejection reasons: known colours; any other code is drawn in a colour of its own from OTHER
REASON_COLORS = {"flat": "#7f7f7f", "low_ncc": "#ff7f0e", "inconsistent": "#9467bd", "at_search_limit": "#d62728"}
OTHER = ("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79")


def fmt(v: float, digits: int = 4) -> str:
    """A tick or value label: ``digits`` significant digits, no ``-0``, no float noise."""
    if v is None or not math.isfinite(v):
        return ""
    if v == round(v) and abs(v) < 1e7:       # whole numbers in full: 1000, not 1e+03
        return str(int(v))
    s = f"{v:.{digits}g}"
    return "0" if s.lstrip("-") in ("0", "0.0", "0e+00") else s


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= step * m:
            step *= m
            break
    first = math.ceil(lo / step - 1e-9)
    out = []
    k = first
    while k * step <= hi + step * 1e-9:
        out.append(round(k * step, 12) + 0.0)     # + 0.0 turns -0.0 into 0.0
        k += 1
    return out


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{escape(label)}" font-family="sans-serif">' + "".join(body) + "</svg>")


def _legend(items: list[tuple[str, str, bool]], x0: float, y0: float, width: float) -> tuple[list[str], float]:
    """Swatches and names in rows below the plot; returns the SVG parts and the height used."""
    out, x, y = [], x0, y0
    for name, color, dashed in items:
        w = 26 + 6.5 * len(name)
        if x + w > x0 + width and x > x0:
            x, y = x0, y + 16
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{y - 4:.1f}" y2="{y - 4:.1f}" stroke="{color}" '
                   f'stroke-width="2"{dash}/><text x="{x + 22:.1f}" y="{y:.1f}" font-size="11">{escape(name)}</text>')
        x += w + 10
    return out, (y - y0) + 18


def _axes(title: str, xlabel: str, box: tuple[float, float, float, float], xticks: list[float], px,
          yticks: list[float], py) -> list[str]:
    """Title, plot frame, tick labels with light grid lines, and the x label; ``box`` is
    ``(x0, x1, y0, y1)`` in SVG px, ``px``/``py`` map data values to SVG px."""
    x0, x1, y0, y1 = box
    body = [f'<text x="{x0}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
            f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" stroke="#999"/>']
    for t in xticks:
        body.append(f'<text x="{px(t):.1f}" y="{y1 + 13}" font-size="10" text-anchor="middle">{fmt(t)}</text>')
    for t in yticks:
        body.append(f'<line x1="{x0}" x2="{x1}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
                    f'<text x="{x0 - 4}" y="{py(t) + 3:.1f}" font-size="10" text-anchor="end">{fmt(t, 3)}</text>')
    body.append(f'<text x="{(x0 + x1) / 2}" y="{y1 + 26}" font-size="11" text-anchor="middle">{escape(xlabel)}</text>')
    return body


def line_chart(x: list[float], series: dict[str, list[float | None]], title: str, xlabel: str = "iteration",
               refs: dict[str, float] | None = None, log: bool | None = None, ylabel: str = "",
               width: int = 460, height: int = 240, ref_colors: dict[str, str] | None = None) -> str:
    """Lines over a shared x axis (``None`` = gap); ``refs``: dashed horizontal lines with their
    names in the legend (``ref_colors``: a ref's colour by its name, else grey for the first);
    ``log``: log10 y axis (None: when all values are > 0 and they span more than two orders
    of magnitude)."""
    drawn = _line_body(x, series, title, xlabel, refs, log, ylabel, width, height, ref_colors)
    return _svg(width, drawn[1], drawn[0], title) if drawn else ""


def series_color(k: int) -> str:
    """The colour of a chart's ``k``-th series (to match a reference line to its series)."""
    return COLORS[k % len(COLORS)]


def _line_body(x, series, title, xlabel, refs, log, ylabel, width, height, ref_colors=None):
    """:func:`line_chart`'s SVG parts and total height (None when there is nothing to draw)."""
    refs = {k: v for k, v in (refs or {}).items() if v is not None and math.isfinite(v)}
    ys = [v for s in series.values() for v in s if v is not None and math.isfinite(v)] + list(refs.values())
    if not x or not ys:
        return None
    if log is None:
        log = min(ys) > 0 and max(ys) / min(ys) > 100
    if log and min(ys) <= 0:
        log = False
    tr = (lambda v: math.log10(v)) if log else (lambda v: v)
    lo, hi = tr(min(ys)), tr(max(ys))
    pad = (hi - lo) * 0.06 or abs(hi) * 0.05 or 1
    lo, hi = lo - pad, hi + pad
    left, right, top = 56, 12, 26
    plot_h = height - top - 34
    x0, x1, y0, y1 = left, width - right, top, top + plot_h
    xlo, xhi = min(x), max(x)

    def px(v):
        return x0 + (v - xlo) / ((xhi - xlo) or 1) * (x1 - x0)

    def py(v):
        return y1 - (tr(v) - lo) / ((hi - lo) or 1) * (y1 - y0)

    yt = [10.0 ** k for k in range(math.floor(lo), math.ceil(hi) + 1) if lo <= k <= hi] if log else ticks(lo, hi)
    body = _axes(title, xlabel + ("; y axis: log scale" if log else ""), (x0, x1, y0, y1), ticks(xlo, xhi), px,
                 yt, py)
    if ylabel:
        body.append(f'<text x="12" y="{(y0 + y1) / 2}" font-size="11" text-anchor="middle" '
                    f'transform="rotate(-90 12 {(y0 + y1) / 2})">{escape(ylabel)}</text>')
    items = []
    for k, (name, s) in enumerate(series.items()):
        color = series_color(k)
        pts = [(px(a), py(b)) for a, b in zip(x, s) if b is not None and math.isfinite(b) and (b > 0 or not log)]
        if len(pts) > 1:
            body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="'
                        + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for a, b in pts if len(pts) <= 60 else []:
            body.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{color}"/>')
        items.append((name, color, False))
    for k, (name, v) in enumerate(refs.items()):
        color = (ref_colors or {}).get(name) or ("#555" if k == 0 else COLORS[(len(series) + k) % len(COLORS)])
        body.append(f'<line x1="{x0}" x2="{x1}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="{color}" '
                    f'stroke-width="1.5" stroke-dasharray="5 3"><title>{escape(name)}: {fmt(v)}</title></line>')
        items.append((f"{name} {fmt(v)}", color, True))
    legend, used = _legend(items, x0, y1 + 44, x1 - x0) if len(items) > 1 or refs else ([], 0)
    body += legend
    return body, height + (used + 8 if legend else 0)


def small_multiples(x: list[float], series: dict[str, list[float | None]], title: str, xlabel: str = "iteration",
                    cols: int = 2, panel_width: int = 250, panel_height: int = 150) -> str:
    """One small panel per series, each with its own linear y axis (``cols`` panels a row):
    for series whose scales differ by orders of magnitude, or whose signs differ (a log axis
    cannot show a negative term), each stays legible. Each panel is a ``<g class="panel">``
    titled with its series' name."""
    panels = [(name, _line_body(x, {name: s}, name, xlabel, None, False, "", panel_width, panel_height))
              for name, s in series.items()]
    panels = [(name, p) for name, p in panels if p]
    if not panels:
        return ""
    top = 24
    body = [f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    row_h = max(h for _, (_, h) in panels)
    for k, (name, (parts, _)) in enumerate(panels):
        r, c = divmod(k, cols)
        body.append(f'<g class="panel" transform="translate({c * panel_width},{top + r * row_h})">'
                    f'<title>{escape(name)}</title>' + "".join(parts) + "</g>")
    rows = -(-len(panels) // cols)
    return _svg(min(cols, len(panels)) * panel_width, top + rows * row_h, body, title)


def histogram(values: list[float], title: str, bins: int = 50, lim: tuple[float, float] | None = None,
              marker: float | None = None, marker_label: str = "", width: int = 560, height: int = 240) -> str:
    """A histogram of ``values`` (``None`` and non-finite ones dropped; values outside ``lim``
    counted in the end bins) with an optional dashed vertical marker, e.g. the acceptance
    threshold: bars at or above it are green, the others grey. The x label gives the count."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return ""
    lo, hi = lim or (float(v.min()), float(v.max()))
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    ytop = counts.max() * 1.08
    x0, x1, y0, y1 = 56, width - 12, 26, height - 34

    def px(t):
        return x0 + (t - lo) / ((hi - lo) or 1) * (x1 - x0)

    def py(t):
        return y1 - t / ytop * (y1 - y0)

    body = _axes(title, f"{v.size} values", (x0, x1, y0, y1), ticks(lo, hi), px,
                 [t for t in ticks(0, ytop) if t == int(t)], py)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            color = "#2ca02c" if marker is not None and a >= marker - 1e-9 else "#aaa"
            body.append(f'<rect x="{px(a):.1f}" y="{py(c):.1f}" width="{max(px(b) - px(a) - 0.5, 0.5):.1f}" '
                        f'height="{py(0) - py(c):.1f}" fill="{color}"><title>{a:.3f}–{b:.3f}: {c}</title></rect>')
    if marker is not None:
        body.append(f'<line x1="{px(marker):.1f}" x2="{px(marker):.1f}" y1="{y0}" y2="{y1}" '
                    f'stroke="#d62728" stroke-width="1.5" stroke-dasharray="4 3"/>'
                    f'<text x="{px(marker) - 4:.1f}" y="{y0 + 12}" font-size="11" text-anchor="end" '
                    f'fill="#d62728">{escape(marker_label)}</text>')
    return _svg(width, height, body, title)


def window_map(image_href: str, img_w: int, img_h: int, grid: dict, codes: str, residuals: list | None,
               names: dict[str, str], width: int) -> tuple[str, list[tuple[str, str, int]]]:
    """Patch windows outlined over the photo (no fill; rejections dashed): accepted (``a``) in
    a colour by estimated residual (px: green 0 → yellow 0.5 → red ≥ 1; green when unknown),
    rejections by reason (``names`` maps a code character to its reason; an unknown code gets
    a colour of its own and its character as the name); ``o`` (outside the photo) is not drawn.

    Returns the SVG and the legend rows (label, colour, count)."""
    s = width / img_w
    height = round(img_h * s)
    body = [f'<image href="{escape(image_href)}" x="0" y="0" width="{width}" height="{height}"/>']
    size, cols = grid["size"], grid["cols"]
    counts: dict[str, int] = {}
    colors: dict[str, str] = {}
    other = iter(OTHER * 10)
    for k, c in enumerate(codes):
        if c == "o":
            continue
        r, q = divmod(k, cols)
        x, y = grid["x"] + q * size, grid["y"] + r * size
        if c == "a":
            res = residuals[k] if residuals and k < len(residuals) else None
            color = residual_color(res)
            tip = f"accepted, residual {res:.2f} px" if res is not None else "accepted"
            label = "accepted"
        else:
            label = names.get(c, f"code '{c}'")
            if label not in colors:
                colors[label] = REASON_COLORS.get(label) or next(other)
            color, tip = colors[label], label
        counts[label] = counts.get(label, 0) + 1
        # an outline, inset so that neighbours' outlines do not overlap, over a dark halo: a
        # tint would blend with the photo (green over an orange subject no longer looks green)
        inset = 1.5
        geom = (f'x="{x * s + inset:.1f}" y="{y * s + inset:.1f}" width="{max(size * s - 2 * inset, 1):.1f}" '
                f'height="{max(size * s - 2 * inset, 1):.1f}" fill="none"')
        dash = "" if c == "a" else ' stroke-dasharray="4 2"'      # rejections dashed: not by colour alone
        body.append(f'<g class="window"><title>{escape(tip)}</title>'
                    f'<rect {geom} stroke="#000" stroke-opacity="0.55" stroke-width="3"/>'
                    f'<rect {geom} stroke="{color}" stroke-width="1.8"{dash}/></g>')
    legend = [(k, "#2ca02c" if k == "accepted" else colors[k], n) for k, n in sorted(counts.items())]
    return _svg(width, height, body, "patch windows"), legend


def residual_color(res: float | None) -> str:
    """Green (0 px) → yellow (0.5 px) → red (≥ 1 px)."""
    if res is None or not math.isfinite(res):
        return "#2ca02c"
    t = float(np.clip(res, 0, 1))
    r, g = (int(44 + (230 - 44) * 2 * t), 160) if t < 0.5 else (230, int(160 - 160 * (2 * t - 1)))
    return f"#{r:02x}{g:02x}20"
