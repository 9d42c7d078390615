"""Error-budget arithmetic on plain numbers. All ratios are fractions in [0, 1]."""

from __future__ import annotations

import math


def burn_rate(error_ratio: float, error_budget: float) -> float:
    """How many times faster than sustainable the budget burns (1.0 = exactly spends it by period end)."""
    if error_budget <= 0:
        raise ValueError("error budget must be positive")
    return error_ratio / error_budget


def budget_remaining(period_error_ratio: float, error_budget: float) -> float:
    """Fraction of the period's budget left (negative when overspent)."""
    return 1.0 - period_error_ratio / error_budget


def default_min_events(burn_rate_threshold: float, error_budget: float) -> int:
    """Fewest events in a long window at which one bad event alone cannot cross the threshold.

    One bad event out of N gives an error ratio 1/N; it stays under burn * budget when
    N >= 1 / (burn * budget).
    """
    return max(1, math.ceil(1.0 / (burn_rate_threshold * error_budget) - 1e-9))


def is_number(value: float | None) -> bool:
    """True for a finite float; NaN (0/0, no traffic) and None (no series) are not numbers."""
    return value is not None and math.isfinite(value)
