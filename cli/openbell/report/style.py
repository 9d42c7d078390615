"""The report's look, shared by the page (page.py) and its charts (charts.py): the palette and how values are
written. Names with a leading underscore are the report package's own, not openbell's API.

Palette (fixed, so that tests can look for these colours in a screenshot):
  outcomes     pass #1a7f37, fail #cf222e, interrupted #9a6700, error #57606a, stopped #bc4c00,
               unhealthy #8250df (burning before the gameday), inconclusive #9a6700, skipped #8c959f,
               not_run #afb8c1 (verdict banner, badges, Gantt bars)
  series       #2f81f7 blue, #e16f24 orange, #8250df purple, #1b7c83 teal, #d6336c pink, #6b8e23 olive,
               #8a5a2b brown, #3d5a80 slate (in order, per chart)
  thresholds   #e5534b coral, #d4a72c gold, #6e7781 grey (dashed)
  events       critical #cf222e, warning #bf8700, info #6e7781; promoted #1a7f37, gate #0969da
  phase bands  load #54aeff, canary #a475f9, chaos #fb8f44, slo #4ac26b, other #8c959f (light fills)
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from html import escape
from typing import Any

OUTCOME_COLOURS: dict[str, str] = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "interrupted": "#9a6700",
    "error": "#57606a",
    "stopped": "#bc4c00",
    "unhealthy": "#8250df",
    "inconclusive": "#9a6700",
    "skipped": "#8c959f",
    "not_run": "#afb8c1",
}


UNKNOWN_COLOUR = "#57606a"


SERIES_COLOURS = ("#2f81f7", "#e16f24", "#8250df", "#1b7c83", "#d6336c", "#6b8e23", "#8a5a2b", "#3d5a80")


THRESHOLD_COLOURS = ("#e5534b", "#d4a72c", "#6e7781")


SEVERITY_COLOURS = {"critical": "#cf222e", "warning": "#bf8700", "info": "#6e7781"}


EVENT_KIND_COLOURS = {
    "rollback": "#cf222e",
    "stop": "#cf222e",
    "safeguard": "#bf8700",
    "fault": "#bf8700",
    "promoted": "#1a7f37",
    "gate": "#0969da",
}


KIND_COLOURS = {"load": "#54aeff", "canary": "#a475f9", "chaos": "#fb8f44", "slo": "#4ac26b"}


OTHER_KIND_COLOUR = "#8c959f"


TIMES = "\u00d7"  # the multiplication sign: burn rates read "14.4" + TIMES


def _num(value: Any) -> float | None:
    """A finite float, or None (null, NaN, infinities, strings, booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _sig(x: float, digits: int = 3) -> str:
    """`x` with about `digits` significant digits, thousands separated, no exponent, no trailing zeros."""
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:,.{min(decimals, 12)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt(value: Any, unit: str = "") -> str:
    """A value with its unit for tables and legends; a dash when unknown."""
    v = _num(value)
    if v is None:
        return "—"
    if unit == "ratio":
        return f"{_sig(v * 100)}%"
    if unit == "%":
        return f"{_sig(v)}%"
    if unit == "x":
        return f"{_sig(v)}{TIMES}"
    return f"{_sig(v)} {unit}".rstrip()


def _compact(x: float) -> str:
    """A short tick label: 1.5k, 20M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return _sig(x / div) + suffix
    return _sig(x)


def _tick_label(v: float, unit: str) -> str:
    if unit == "ratio":
        return _sig(v * 100) + "%"
    if unit == "%":
        return _sig(v) + "%"
    if unit == "x":
        return _compact(v) + TIMES
    return _compact(v)


def _percent(value: Any) -> str:
    v = _num(value)
    return "—" if v is None else f"{_sig(v * 100, 4)}%"


def _clock(t: Any) -> str:
    v = _num(t)
    return "—" if v is None else datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rel(t: Any, origin: float) -> str:
    """`t` as m:ss from `origin` (negative before it); a dash when unknown."""
    v = _num(t)
    if v is None:
        return "—"
    d = v - origin
    m, s = divmod(round(abs(d)), 60)
    return f"{'-' if d < -0.5 else ''}{m}:{s:02d}"


def _duration(seconds: Any) -> str:
    v = _num(seconds)
    if v is None:
        return "—"
    if v < 60:
        return f"{v:.1f} s" if v < 10 else f"{v:.0f} s"
    total = round(v)
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    return f"{total // 3600}h {total % 3600 // 60:02d}m"


def _slug(value: Any) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", str(value).lower()).strip("-") or "x"


def _safe_href(target: Any) -> str | None:
    """`target` if it is a relative path or an http(s) URL (never javascript: and the like)."""
    if not isinstance(target, str) or not target.strip() or any(ord(c) < 32 for c in target):
        return None
    lowered = target.strip().lower()
    if lowered.startswith(("http://", "https://")):
        return target.strip()
    head = re.split(r"[/?#]", lowered, maxsplit=1)[0]
    return None if ":" in head else target.strip()


def _link(target: Any, text: Any = None) -> str:
    label = _esc(target if text is None else text)
    href = _safe_href(target)
    return f'<a href="{_esc(href)}">{label}</a>' if href else label


def _list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key)
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _outcome_colour(outcome: Any) -> str:
    return OUTCOME_COLOURS.get(str(outcome), UNKNOWN_COLOUR)


def _badge(outcome: Any) -> str:
    text = "not run" if outcome == "not_run" else str(outcome or "unknown")
    return f'<span class="badge" style="background:{_outcome_colour(outcome)}">{_esc(text)}</span>'


# ------------------------------------------------------------------------------------------------ time
