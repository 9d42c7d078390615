"""PromQL for an SLO's SLI: the error ratio over a window, its event rate, and its presence.

Pure string building. One implementation serves the recording rules and the live gate, so what
the alerts see and what `openbell slo gate` sees are the same numbers.
"""

from __future__ import annotations

import re

from openbell.durations import promql_duration
from openbell.slo.model import SLO, LatencySLI, RatioSLI, ThresholdSLI

WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*\.window\s*\}\}")
_BARE_SELECTOR = re.compile(r"^\s*[A-Za-z_:][A-Za-z0-9_:]*\s*(\{[^{}]*\})?\s*$")
_NEGATE = {"<=": ">", "<": ">=", ">=": "<", ">": "<="}


def has_window(expr: str) -> bool:
    return bool(WINDOW_PLACEHOLDER.search(expr))


def is_bare_selector(expr: str) -> bool:
    return bool(_BARE_SELECTOR.match(expr))


def render_window(expr: str, window_s: float) -> str:
    """Put the window into an expression template; a bare counter selector becomes its rate."""
    window = promql_duration(window_s)
    if has_window(expr):
        return WINDOW_PLACEHOLDER.sub(window, expr).strip()
    if is_bare_selector(expr):
        return f"rate({expr.strip()}[{window}])"
    return expr.strip()


def _by(slo: SLO, op: str = "sum") -> str:
    return f"{op} by ({', '.join(slo.group_by)})" if slo.group_by else op


def _matchers(*parts: str) -> str:
    return "{" + ",".join(p.strip().strip("{}").strip() for p in parts if p.strip().strip("{}").strip()) + "}"


def le_matcher(threshold_s: float) -> str:
    """Matcher for the histogram bucket at `threshold_s`, whatever the client's float formatting.

    Go clients write 1 as "1", Python's as "1.0": match both.
    """
    text = repr(float(threshold_s))
    if text.endswith(".0"):
        return f'le=~"{text[:-2]}(\\\\.0+)?"'
    return f'le="{text}"'


def error_ratio(slo: SLO, window_s: float) -> str:
    """Fraction of bad events (or bad time) over the window, one series per group."""
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        if sli.error_ratio is not None:
            return render_window(sli.error_ratio, window_s)
        assert sli.total is not None
        total = f"{_by(slo)} ({render_window(sli.total, window_s)})"
        if sli.bad is not None:
            bad = f"{_by(slo)} ({render_window(sli.bad, window_s)})"
            # A bad-events counter often has no series until its first error: count that as 0.
            return f"({bad} or (0 * {total}))\n/\n{total}"
        assert sli.good is not None
        good = f"{_by(slo)} ({render_window(sli.good, window_s)})"
        # A good-events series that vanishes (a restart into a broken state) is zero good events,
        # not "no data": the outage must keep paging. (total - good) / total also avoids 1 - x rounding.
        return f"(\n{total}\n-\n({good} or (0 * {total}))\n)\n/\n{total}"
    if isinstance(sli, LatencySLI):
        window = promql_duration(window_s)
        count = f"{sli.histogram}_count{_matchers(sli.selector)}"
        bucket = f"{sli.histogram}_bucket{_matchers(sli.selector, le_matcher(sli.threshold_s))}"
        return (f"1 - (\n{_by(slo)} (rate({bucket}[{window}]))\n/\n"
                f"{_by(slo)} (rate({count}[{window}]))\n)")
    return threshold_error_ratio(slo, sli, window_s)


def threshold_resolution_s(window_s: float) -> int:
    """The step of a threshold SLI's subquery over a window: fine enough that a breach is counted to within a
    minute even over a 30-day period (a coarser step would quantise the budget), coarse enough to keep the
    subquery under ~45k steps."""
    return min(60, max(1, round(window_s / 1000)))


def threshold_error_ratio(slo: SLO, sli: ThresholdSLI, window_s: float) -> str:
    """Share of the window during which the gauge was out of bounds (a subquery of 0/1 samples)."""
    agg = _by(slo, sli.aggregation)
    bad = f"{agg} ({sli.gauge.strip()}) {_NEGATE[sli.op]} bool {sli.bound!r}"
    return (f"avg_over_time((\n{bad}\n)[{promql_duration(window_s)}:"
            f"{promql_duration(threshold_resolution_s(window_s))}])")


def sample_count(slo: SLO, window_s: float) -> str | None:
    """How many samples the window's error ratio rests on, per group: the scrapes of a latency histogram (its
    events arrive a scrape at a time, so one slow scrape interval is one piece of evidence however many
    events it holds), the steps of a threshold SLI's subquery; None for ratio SLIs, whose evidence is
    counted in events (`event_rate`)."""
    sli = slo.sli
    window = promql_duration(window_s)
    if isinstance(sli, LatencySLI):
        count = f"{sli.histogram}_count{_matchers(sli.selector)}"
        return f"{_by(slo, 'max')} (count_over_time({count}[{window}]))"
    if isinstance(sli, ThresholdSLI):
        gauge = f"{_by(slo, sli.aggregation)} ({sli.gauge.strip()})"
        return f"count_over_time((\n{gauge}\n)[{window}:{promql_duration(threshold_resolution_s(window_s))}])"
    return None


def event_rate(slo: SLO, window_s: float) -> str | None:
    """Events per second over the window, per group; None for time-based (threshold) SLIs."""
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        if sli.total is None:
            return None
        return f"{_by(slo)} ({render_window(sli.total, window_s)})"
    if isinstance(sli, LatencySLI):
        count = f"{sli.histogram}_count{_matchers(sli.selector)}"
        return f"{_by(slo)} (rate({count}[{promql_duration(window_s)}]))"
    return None


def one_line(expr: str) -> str:
    """An expression on one line, for logs and text output."""
    return re.sub(r"\s*\n\s*", " ", expr).strip()
