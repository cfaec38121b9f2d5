"""The one progress display of dpedkit: training iterations, parallel items, strip passes.

On a terminal it is click's progress bar (redrawn in place on stderr; :meth:`Progress.say`
erases it before any other line is printed, so lines never run into it). When stderr is not
a terminal (nohup, Slurm, a pipe) it is a plain log line at most every ``every`` seconds, and
one when the work is done::

    iter 40/200 (20%) 1.52 it/s ETA 0:01:45 loss G 12.3 D 0.69 D acc 0.50

``done`` counts from the start of the work (a resumed run starts at its iteration); the rate
and the ETA are over this session's progress only. Times are wall-clock seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

import click

T = TypeVar("T")

REDRAW_S = 0.5      # a terminal bar is redrawn at most this often (cheap, but not free)
ERASE = "\r\033[K\033[?25h"  # carriage return, erase to the end of the line, show the cursor (click hid it)


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` of a non-negative duration (negative ones read as 0)."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


class Progress:
    """Progress of ``total`` steps labelled ``label``; see the module docstring.

    ``enabled=False`` shows nothing (every method still works). ``log`` receives the plain
    lines and :meth:`say`'s messages (default: a line on ``stream``, which defaults to
    stderr, read when the display is made so that tests may replace it). ``every=None``: no
    plain lines at all (only the terminal bar); ``end_line=False``: no plain line when
    :meth:`update` reaches the total (the caller prints its own summary)."""

    def __init__(self, total: int | None, label: str = "", *, done: int = 0, every: float | None = 60.0,
                 log: Callable[[str], None] | None = None, stream=None, enabled: bool = True, unit: str = "it",
                 end_line: bool = True):
        self.total, self.label, self.first, self.done, self.every, self.unit = total, label, done, done, every, unit
        self.end_line = end_line
        self.stream = stream if stream is not None else sys.stderr
        self.log = log or (lambda msg: click.echo(msg, file=self.stream))
        self.tty = enabled and _isatty(self.stream)
        self.plain = enabled and not self.tty and every is not None
        self.info = ""
        self.drawn = False
        self.t0 = self.last = time.perf_counter()
        self.bar = None   # click's bar, made on the first draw (the total may come late)

    # -- the text -----------------------------------------------------------------------
    def line(self, done: int | None = None, info: str | None = None) -> str:
        """``done/total (pct%) rate unit/s ETA H:MM:SS`` and ``info``, without the label."""
        done = self.done if done is None else done
        info = self.info if info is None else info
        rate = (done - self.first) / max(time.perf_counter() - self.t0, 1e-9)
        if self.total is None:
            return f"{done} {rate:.3g} {self.unit}/s{info}"
        eta = format_duration((self.total - done) / rate) if rate > 0 else "?"
        pct = 100 * done / max(self.total, 1)
        return f"{done}/{self.total} ({pct:.0f}%) {rate:.3g} {self.unit}/s ETA {eta}{info}"

    # -- updates ------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether :meth:`show` would draw now (callers skip computing ``info`` otherwise)."""
        if self.tty:
            return time.perf_counter() - self.last >= REDRAW_S
        return self.plain and time.perf_counter() - self.last >= self.every

    def show(self, done: int, info: str = "") -> None:
        """Draw ``done`` steps with ``info`` appended (call it when :meth:`due`)."""
        self.done, self.info, self.last = done, info, time.perf_counter()
        if self.tty:
            self._draw()
        elif self.plain:
            self.log(f"{self.label} {self.line()}" if self.label else self.line())

    def update(self, done: int, total: int | None = None, info: str = "") -> None:
        """Record progress; draw when due and once when ``done`` reaches the total.

        Matches the ``progress(done, total)`` callbacks of long single operations."""
        if total is not None:
            self.total = total
        self.done, self.info = done, info
        at_end = self.total is not None and done >= self.total and (self.tty or (self.plain and self.end_line))
        if self.due() or at_end:
            self.show(done, info)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def _draw(self) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=max(self.total or self.done, 1), label=self.label, file=self.stream,
                                         show_eta=False, show_percent=False, show_pos=False,
                                         item_show_func=lambda _: self.line())
        self.bar.pos = min(self.done, self.bar.length or self.done)
        self.bar.render_progress()
        self.drawn = True

    # -- other lines, the end -----------------------------------------------------------
    def clear(self) -> None:
        """Erase the bar so that the next line starts in column 0 on its own."""
        if self.tty and self.drawn:
            self.stream.write(ERASE)
            self.stream.flush()
            self.drawn = False
            self.bar._last_line = None   # click redraws only a changed line: make it draw again

    def say(self, msg: str) -> None:
        """Print ``msg`` through ``log`` on a line of its own (the bar comes back on the next draw)."""
        self.clear()
        self.log(msg)

    def close(self) -> None:
        self.clear()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iterate(items: Iterable[T], total: int, label: str = "", enabled: bool = True, every: float | None = 60.0,
            log: Callable[[str], None] | None = None, unit: str = "items") -> Iterator[T]:
    """Yield from ``items`` (``total`` of them) with a :class:`Progress` counting them; on a
    terminal the finished bar stays on screen; off one, no line at the end (the stage's
    summary follows)."""
    with Progress(total, label, every=every, log=log, enabled=enabled, unit=unit, end_line=False) as p:
        for item in items:
            yield item
            p.advance()
        if p.tty and p.bar is not None:
            p.show(p.done)
            p.stream.write("\033[?25h\n")   # keep the finished bar, show the cursor; the next line starts below
            p.drawn = False


def callback(label: str, log: Callable[[str], None] | None = None, every: float | None = 10.0,
             unit: str = "passes") -> Progress:
    """A :class:`Progress` whose total comes with the first ``update(done, total)`` call:
    for callbacks of the ``progress(done, total)`` kind."""
    return Progress(None, label, every=every, log=log, unit=unit)
