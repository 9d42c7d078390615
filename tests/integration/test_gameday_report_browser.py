"""The gameday report as a person sees it: rendered by Debian's headless chromium, read from the DOM after
layout and from the screenshot (the verdict's colour fills the banner; every chart's lines were drawn)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from openbell.report.page import write_report
from openbell.report.style import OUTCOME_COLOURS, SERIES_COLOURS
from tests.chromium import chromium_binary, count_colour, png_pixels, rect, render
from tests.unit.test_report_page import finite_points, sample_doc

pytestmark = pytest.mark.skipif(
    chromium_binary() is None, reason="Debian's chromium is not installed (scripts/install-system.sh installs it)")

WIDTH = 1400
MIN_LINE_PIXELS = 100  # per series, inside its chart's box: a drawn line is 300-1700, an undrawn one 0


def test_the_rendered_report_shows_the_verdict_and_draws_every_chart(tmp_path: Path) -> None:
    doc = sample_doc("fail")
    html = write_report(doc, tmp_path / "report")
    png = tmp_path / "report.png"
    started = time.monotonic()
    dom = render(html, png, width=WIDTH)
    pixels = png_pixels(png)
    elapsed = time.monotonic() - started

    banner = re.search(r'<header id="verdict"[^>]*data-outcome="([^"]*)"[^>]*>.*?</header>', dom, re.S)
    assert banner and banner.group(1) == "fail"
    assert '<div class="verdict-word">FAIL</div>' in banner.group(0)
    assert doc["verdict"]["reason"] in banner.group(0)

    width, height, _ = pixels
    page_height = int(re.search(r'data-page-height="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    assert width == WIDTH and height >= page_height > 2000, (width, height, page_height)

    box = rect(dom, "id", "verdict")
    assert box[1] < 100, "the verdict is the first thing on the page"
    filled = count_colour(pixels, OUTCOME_COLOURS["fail"], tolerance=4, box=box)
    assert filled > 0.6 * box[2] * box[3], f"the banner is not red: {filled} of {box[2] * box[3]} pixels"

    for chart in doc["charts"]:
        drawn = re.search(rf'data-chart="{chart["id"]}" data-points="(\d+)"', dom)
        assert drawn and int(drawn.group(1)) == finite_points(chart) > 0, chart["id"]
        box = rect(dom, "data-chart", chart["id"])
        assert box[2] > 500 and box[3] > 150, f"{chart['id']} is laid out too small: {box}"
        for i, series in enumerate(chart["series"]):
            colour = SERIES_COLOURS[i]
            n = count_colour(pixels, colour, tolerance=24, box=box)
            assert n >= MIN_LINE_PIXELS, f"{chart['id']}: series {series['label']} ({colour}) drew {n} pixels"
    assert elapsed < 20, f"rendering took {elapsed:.1f} s"
