"""Durations as people write them ("30d", "1h30m", "250ms") <-> seconds, and back to PromQL.

Accepted units: ms, s, m, h, d, w (Prometheus' own), plus y (365d) as Prometheus does.
A bare number is seconds. Every function works in seconds (float).
"""

from __future__ import annotations

import re

_UNITS_S: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+$")


def parse_duration_s(text: str | int | float, bare_seconds: bool = True) -> float:
    """Seconds in a duration such as "30d", "1h30m", "50ms" or (if `bare_seconds`) a bare number of seconds.

    Raises ValueError with what was expected when the text is not a positive duration.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 30d, 1h or 250ms")
    bare = isinstance(text, int | float) or bool(re.fullmatch(r"\d+(?:\.\d+)?", str(text).strip()))
    if bare and not bare_seconds:
        raise ValueError(f"expected a duration with a unit such as 30d or 10m, got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        t = text.strip()
        if bare:
            seconds = float(t)
        elif _WHOLE.match(t):
            seconds = sum(float(n) * _UNITS_S[u] for n, u in _PART.findall(t))
        else:
            raise ValueError(f"expected a duration such as 30d, 1h or 250ms, got {text!r}")
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {text!r}")
    return seconds


def promql_duration(seconds: float) -> str:
    """The shortest exact PromQL duration for `seconds` (e.g. 3600 -> "1h", 5400 -> "1h30m").

    Sub-second precision is kept in milliseconds; Prometheus accepts compound durations since 2.x.
    """
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"duration must be positive, got {seconds}s")
    out: list[str] = []
    for unit, size_ms in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000),
                          ("s", 1000), ("ms", 1)):
        if ms >= size_ms:
            count, ms = divmod(ms, size_ms)
            out.append(f"{count}{unit}")
    return "".join(out)


def human_duration(seconds: float) -> str:
    """A duration for people: "51.8s", "4m 19s", "2h 30m", "30d"."""
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds < 10 else f"{seconds:.1f}s".replace(".0s", "s")
    s = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            count, s = divmod(s, size)
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])
