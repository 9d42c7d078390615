"""The report's palette and how it writes values (report/style.py)."""

from __future__ import annotations

import pytest

from openbell.report import style as report
from openbell.report.style import TIMES

T0 = 1795000000.0


@pytest.mark.parametrize("href,linked", [
    ("runbooks/x.md", True), ("../runbooks/x.md#step-2", True), ("https://runbooks.example/x", True),
    ("javascript:alert(1)", False), ("JAVASCRIPT:alert(1)", False), ("\tjavascript:alert(1)", False),
    ("vbscript:x", False), ("data:text/html,x", False), ("", False),
])
def test_only_relative_paths_and_http_urls_become_links(href: str, linked: bool) -> None:
    assert (report._safe_href(href) is not None) == linked


def test_formatting_helpers() -> None:
    assert report._rel(T0 + 75.4, T0) == "1:15" and report._rel(T0 - 5, T0) == "-0:05"
    assert report._rel(None, T0) == "—" and report._rel(float("nan"), T0) == "—"
    assert report._duration(7.25) == "7.2 s" and report._duration(210) == "3m 30s"
    assert report._duration(3725) == "1h 02m"
    assert report._fmt(0.00123, "ratio") == "0.123%" and report._fmt(14.4, "x") == f"14.4{TIMES}"
    assert report._fmt(1234567, "records") == "1,234,567 records" and report._fmt(None, "ms") == "—"
    assert report._percent(0.9995) == "99.95%"


def test_the_palette_is_documented() -> None:
    doc = report.__doc__ or ""
    for colour in (*report.SERIES_COLOURS, *report.THRESHOLD_COLOURS, *report.OUTCOME_COLOURS.values()):
        assert colour in doc, colour
