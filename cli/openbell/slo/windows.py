"""Multiwindow, multi-burn-rate alert pairs (Google SRE Workbook, "Alerting on SLOs", table 5-8).

For a 30-day period: page at 14.4x over 1h (short 5m) and 6x over 6h (short 30m); ticket at 3x over
1d (short 2h) and 1x over 3d (short 6h). Each long window spends a fixed share of the period's budget
when it fires (2%, 5%, 10%, 10%); for any other period the windows scale in proportion (a 7d period
pages at 14.4x over 14m) so those shares — and the burn rates — stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from openbell.slo.model import DEFAULT_PERIOD_S, Severity

_REFERENCE_PERIOD_S = 30 * 86400.0

# (severity, long window, short window, burn rate) for the 30-day reference period.
_WORKBOOK_30D: tuple[tuple[Severity, float, float, float], ...] = (
    ("page", 3600.0, 300.0, 14.4),
    ("page", 6 * 3600.0, 1800.0, 6.0),
    ("ticket", 86400.0, 2 * 3600.0, 3.0),
    ("ticket", 3 * 86400.0, 6 * 3600.0, 1.0),
)

MIN_WINDOW_S = 1.0


@dataclass(frozen=True)
class WindowPair:
    """A long and a short window that must both burn faster than `burn_rate` for the alert to fire."""

    severity: Severity
    long_window_s: float
    short_window_s: float
    burn_rate: float

    def budget_consumed(self, period_s: float) -> float:
        """Fraction of the period's error budget spent when the long window fires."""
        return self.burn_rate * self.long_window_s / period_s

    def error_ratio_threshold(self, error_budget: float) -> float:
        """Error ratio above which both windows must be for the alert to fire."""
        return self.burn_rate * error_budget

    def detection_time_s(self, error_budget: float) -> float | None:
        """Seconds from the start of a 100% error outage until the pair fires, from a clean history.

        The long window's error ratio grows as t / long_window, so it crosses burn_rate * budget at
        t = long_window * burn_rate * budget (the short window crosses sooner). None when the
        threshold is 100% or more: such a pair can never fire.
        """
        threshold = self.error_ratio_threshold(error_budget)
        if threshold >= 1.0:
            return None
        return self.long_window_s * threshold


def window_pairs(period_s: float = DEFAULT_PERIOD_S) -> tuple[WindowPair, ...]:
    """The four alert pairs for a compliance period, windows scaled from the 30-day table.

    Windows are rounded to whole seconds.
    """
    scale = period_s / _REFERENCE_PERIOD_S
    return tuple(
        WindowPair(sev, float(round(long_s * scale)), float(round(short_s * scale)), burn)
        for sev, long_s, short_s, burn in _WORKBOOK_30D
    )


def min_period_s() -> float:
    """Shortest compliance period whose shortest window is still MIN_WINDOW_S long."""
    shortest = min(short for _, _, short, _ in _WORKBOOK_30D)
    return _REFERENCE_PERIOD_S * MIN_WINDOW_S / shortest


def windows_used(pairs: tuple[WindowPair, ...], severities: set[str]) -> list[float]:
    """Distinct window lengths (seconds, ascending) that the enabled severities need."""
    out = {w for p in pairs if p.severity in severities for w in (p.long_window_s, p.short_window_s)}
    return sorted(out)
