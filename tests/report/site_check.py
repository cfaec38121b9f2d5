"""Checks of a report folder shared by the report tests: its links and images, parsed, and
(where Chromium is installed) loaded in a real headless browser."""
from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


class Links(HTMLParser):
    """A page's links, image sources (``<img src>``, its ``data-full`` zoom image, SVG
    ``<image href>``), text, tags, and the rows of its ``table#pairs`` (cell texts and the
    row's class)."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.srcs, self.text, self.tags, self.rows = [], [], [], [], []
        self._in_pairs, self._row, self._cell = False, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img" and a.get("src"):
            self.srcs += [a["src"]] + ([a["data-full"]] if a.get("data-full") else [])
        if tag == "image":
            self.srcs.append(a["href"])
        if tag == "table" and a.get("id") == "pairs":
            self._in_pairs = True
        if tag == "tr" and self._in_pairs:
            self._row = {"class": a.get("class"), "cells": []}
        if tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        if tag == "tr" and self._row is not None:
            if self._row["cells"]:                  # the header row has <th> only
                self.rows.append(self._row)
            self._row = None
        if tag == "table":
            self._in_pairs = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell += data


def parse(path: Path) -> Links:
    p = Links()
    p.feed(Path(path).read_text())
    return p


def pages_of(out: Path) -> list[Path]:
    """Every HTML page of a report folder."""
    return [out / "index.html", *sorted((out / "pages").glob("*.html")), *sorted((out / "pairs").glob("*.html"))]


def browser_images(page: Path) -> tuple[int, int]:
    """``(images, broken)`` of ``page`` after it loaded in headless Chromium: every ``<img>``
    with a ``src``, and those not complete with a natural width (one that failed to load has
    0). Lazy loading is switched off in a probe copy of the page so that every image loads."""
    probe = page.with_name(page.stem + "_probe.html")
    probe.write_text(page.read_text().replace("</body>", """<script>window.addEventListener('load',function(){
var imgs=[].filter.call(document.images,function(i){return i.getAttribute('src')});
var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).length;
document.title='images:'+imgs.length+' broken:'+bad;});</script></body>""").replace('loading="lazy"', ""))
    try:
        dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                              "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    m = re.search(r"<title>images:(\d+) broken:(\d+)</title>", dom.stdout)
    assert m, dom.stderr[-1000:]
    return int(m.group(1)), int(m.group(2))


def screenshot(page: Path, shot: Path, size: tuple[int, int] = (1280, 1600)) -> None:
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
                    f"--window-size={size[0]},{size[1]}", page.as_uri()], capture_output=True, timeout=120)
