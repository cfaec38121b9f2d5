"""The one progress display: plain lines when stderr is not a terminal, click's bar on one."""
import io

import dpedkit.progress as progress
from dpedkit.progress import ERASE, Progress, format_duration, iterate


class Tty(io.StringIO):
    def isatty(self):
        return True


class Clock:
    """perf_counter for the module under test: advanced by hand, in seconds."""
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_plain_lines_off_a_terminal_at_most_every_period_and_at_the_end(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    lines = []
    p = Progress(10, "align", every=5.0, log=lines.append, stream=io.StringIO(), unit="photos")
    for i in range(1, 11):
        clock.t += 1.0                 # one photo a second
        p.update(i)
    # a line at 5 s (5 photos) and at 10 s (done), nothing in between
    assert lines == ["align 5/10 (50%) 1 photos/s ETA 0:00:05", "align 10/10 (100%) 1 photos/s ETA 0:00:00"]
    assert all("\r" not in ln and "\033" not in ln for ln in lines)


def test_resumed_work_counts_from_its_start_and_rates_this_session(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    lines = []
    p = Progress(100, "iter", done=50, every=0.0, log=lines.append, stream=io.StringIO())
    clock.t += 10.0
    p.show(60, " loss G 1.5")
    assert lines == ["iter 60/100 (60%) 1 it/s ETA 0:00:40 loss G 1.5"]


def test_disabled_shows_nothing_and_iterate_yields_everything():
    lines, stream = [], io.StringIO()
    assert list(iterate(range(5), 5, "x", enabled=False, every=0.0, log=lines.append)) == list(range(5))
    p = Progress(3, "x", every=0.0, log=lines.append, stream=stream, enabled=False)
    p.show(1)
    p.say("hello")                  # messages still go through
    assert lines == ["hello"] and stream.getvalue() == ""


def test_terminal_bar_is_erased_before_a_message(monkeypatch):
    tty, lines = Tty(), []
    p = Progress(4, "iter", stream=tty, log=lambda m: (lines.append(m), tty.write(m + "\n")))
    p.show(2, " loss G 3")
    assert "[" in tty.getvalue() and "2/4 (50%)" in tty.getvalue() and "loss G 3" in tty.getvalue()
    p.say("iter 2: test PSNR 20 dB")
    text = tty.getvalue()
    assert text[:text.index("iter 2: test")].endswith(ERASE)
    p.show(3)                        # drawn again after the message
    assert "3/4 (75%)" in tty.getvalue()[len(text):]


def test_format_duration():
    assert format_duration(3725.9) == "1:02:05" and format_duration(-3) == "0:00:00"


def test_iterate_on_a_terminal_keeps_the_finished_bar_and_the_cursor(monkeypatch):
    tty = Tty()
    monkeypatch.setattr(progress.sys, "stderr", tty)
    assert list(iterate(iter(range(3)), 3, "align")) == [0, 1, 2]
    text = tty.getvalue()
    assert "align" in text and "3/3 (100%)" in text and text.endswith("\033[?25h\n")


def test_iterate_off_a_terminal_adds_no_line_at_the_end(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    lines = []

    def slow():
        for i in range(4):
            clock.t += 1.0
            yield i
    assert list(iterate(slow(), 4, "patches", every=2.5, log=lambda m: lines.append(m))) == [0, 1, 2, 3]
    assert lines == ["patches 3/4 (75%) 1 items/s ETA 0:00:01"]      # at 3 s; none at the end (4 s)
