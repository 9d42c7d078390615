"""The canary judge: is the canary worse than stable on the same metric, and does it burn its SLOs' budget
on its own? Pure, on plain lists of samples and counts.

Like Kayenta's NetflixACAJudge, each metric's canary and stable samples (one per series per interval) are
compared with a Mann-Whitney U test, and a statistically significant difference only fails the canary
when its effect is larger than the metric's tolerance: a 0.2 ms shift in a 5 ms latency is real but
harmless, and a large effect on three samples is noise. Below a minimum sample count the answer is
"inconclusive", never "pass".

The controller polls the judge every few seconds, so a run asks the same question many times; the
significance level is therefore strict (0.001 by default) and the effect tolerance does the rest.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from openbell.canary.sequential import confidence_sequence
from openbell.durations import human_duration
from openbell.slo.model import SLO
from openbell.slo.verdict import Outcome, Verdict, combine
from openbell.slo.windows import WindowPair, window_pairs

Direction = Literal["increase", "decrease", "either"]


@dataclass(frozen=True)
class MannWhitney:
    """U of the first sample, the one-sided p-values for "first is larger" and "first is smaller", and the
    Hodges-Lehmann estimate of the shift (median of all pairwise differences first - second)."""

    u: float
    p_greater: float
    p_less: float
    shift: float


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return out


def _upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mann_whitney(first: Sequence[float], second: Sequence[float]) -> MannWhitney:
    """Mann-Whitney U with the normal approximation, tie correction and continuity correction.

    Both samples must be non-empty. With every value tied there is no evidence either way: p = 1.
    """
    n1, n2 = len(first), len(second)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney needs two non-empty samples")
    combined = [*first, *second]
    r = ranks(combined)
    u1 = sum(r[:n1]) - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    counts: dict[float, int] = {}
    for v in combined:
        counts[v] = counts.get(v, 0) + 1
    tie_term = sum(t ** 3 - t for t in counts.values())
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    shift = statistics.median(a - b for a in first for b in second)
    if variance <= 0:
        return MannWhitney(u1, 1.0, 1.0, shift)
    sigma = math.sqrt(variance)
    mean = n1 * n2 / 2.0
    p_greater = _upper_tail((u1 - mean - 0.5) / sigma)
    p_less = _upper_tail((mean - u1 - 0.5) / sigma)
    return MannWhitney(u1, min(1.0, p_greater), min(1.0, p_less), shift)


@dataclass(frozen=True)
class JudgeMetric:
    """One metric the judge compares, with what "worse" means for it.

    `query` is PromQL with `{role}` (the role matcher, e.g. role="canary") and `{window}` (the rate
    window) placeholders, returning one series per replica. The canary fails on this metric when it is
    significantly worse (p < alpha in `direction`) AND the shift exceeds both `relative_tolerance` times
    the stable median and `absolute_tolerance` (in the metric's unit)."""

    name: str
    query: str
    unit: str
    direction: Direction = "increase"
    relative_tolerance: float = 0.2
    absolute_tolerance: float = 0.0
    min_samples: int = 8
    alpha: float = 0.001

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "direction": self.direction,
                "relative_tolerance": self.relative_tolerance, "absolute_tolerance": self.absolute_tolerance,
                "min_samples": self.min_samples, "alpha": self.alpha}


@dataclass(frozen=True)
class MetricResult:
    metric: JudgeMetric
    outcome: Outcome
    canary_samples: int
    stable_samples: int
    canary_median: float | None
    stable_median: float | None
    shift: float | None
    p_value: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric.name, "unit": self.metric.unit, "outcome": self.outcome,
                "canary_samples": self.canary_samples, "stable_samples": self.stable_samples,
                "canary_median": _round(self.canary_median), "stable_median": _round(self.stable_median),
                "shift": _round(self.shift), "p_value": _round(self.p_value), "reason": self.reason}


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def judge_metric(metric: JudgeMetric, canary: Sequence[float], stable: Sequence[float]) -> MetricResult:
    """Compare one metric's samples (NaN and inf dropped: an interval without events says nothing)."""
    c, s = _finite(canary), _finite(stable)
    cm = statistics.median(c) if c else None
    sm = statistics.median(s) if s else None
    if len(c) < metric.min_samples or len(s) < metric.min_samples:
        return MetricResult(metric, "inconclusive", len(c), len(s), cm, sm, None, None,
                            f"{metric.name}: {len(c)} canary and {len(s)} stable samples "
                            f"(< {metric.min_samples} each): too few to judge")
    assert cm is not None and sm is not None
    test = mann_whitney(c, s)
    worse_p = {"increase": test.p_greater, "decrease": test.p_less,
               "either": min(1.0, 2 * min(test.p_greater, test.p_less))}[metric.direction]
    worse_shift = {"increase": test.shift, "decrease": -test.shift, "either": abs(test.shift)}[metric.direction]
    allowed = max(metric.relative_tolerance * abs(sm), metric.absolute_tolerance)
    figures = (f"canary median {_fmt(cm, metric.unit)} vs stable {_fmt(sm, metric.unit)}, "
               f"shift {_fmt(test.shift, metric.unit)} (allowed {_fmt(allowed, metric.unit)}), p={worse_p:.2g}")
    if worse_p < metric.alpha and worse_shift > allowed:
        return MetricResult(metric, "fail", len(c), len(s), cm, sm, test.shift, worse_p,
                            f"{metric.name}: canary worse: {figures}")
    return MetricResult(metric, "pass", len(c), len(s), cm, sm, test.shift, worse_p,
                        f"{metric.name}: within tolerance: {figures}")


def _fmt(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.3%}"
    return f"{value:.3g} {unit}"


def verdict(results: Sequence[MetricResult]) -> Verdict:
    """Any metric worse fails; otherwise any inconclusive is inconclusive."""
    outcome = combine([r.outcome for r in results])
    reasons = tuple(r.reason for r in results if r.outcome == outcome) or tuple(r.reason for r in results)
    return Verdict(outcome, reasons, {"metrics": [r.to_dict() for r in results]})


# --- the canary's own SLO burn ------------------------------------------------------------------------------

# The canary-scoped burn test asks "are these bad events more than the page threshold explains?", against
# the slowest page pair's burn rate (6x for a 30-day period): a version that would page at 100% of the
# traffic is rolled back at 10%, on its first two or three errors, before its errors burn the fleet's
# budget past the fleet's own page threshold (its 14.4x pair would let a canary through at 10x). A
# healthy canary's error ratio sits far below the threshold, so even asked every poll it almost never
# trips; a bad one must trip on its first two or three errors, as few requests as a small canary gets.
ALPHA = 0.01


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space from k up until the terms vanish."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    mean = n * p
    if k <= mean:
        # At or below the expected count: no evidence of burning. The normal approximation is plenty here
        # and avoids summing up to ~n terms for large n.
        return min(1.0, 0.5 * math.erfc((k - 0.5 - mean) / math.sqrt(2.0 * mean * (1.0 - p))))
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k, n + 1):
        term = math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p
                        + (n - i) * log_q)
        total += term
        if term < 1e-15 * max(total, 1e-300):
            break
    return min(1.0, total)


@dataclass(frozen=True)
class ScopedBurn:
    """One canary-scoped SLO series: its error ratio over the canary's window, the events behind it, and
    whether that is significantly above the page threshold."""

    label: str
    window_s: float
    error_ratio: float | None
    events: float | None
    burn_rate: float | None
    threshold_burn_rate: float
    p_value: float | None
    outcome: Outcome | None  # None: no canary events (nothing to say)
    reason: str
    stable_error_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else round(v, 6)
        return {"slo": self.label, "window_s": self.window_s, "error_ratio": r(self.error_ratio),
                "events": r(self.events), "burn_rate": r(self.burn_rate),
                "threshold_burn_rate": self.threshold_burn_rate, "p_value": r(self.p_value),
                "stable_error_ratio": r(self.stable_error_ratio), "outcome": self.outcome, "reason": self.reason}


# The canary must burn this many times faster than stable over the same window to be blamed: when the
# whole platform is slow (a cold start, a broker restart), stable burns too, and that is the fleet gate's
# business, not a reason to roll back a version that is no worse than the one it replaces.
STABLE_MARGIN = 2.0


def _scoped_inputs(label: str, slo: SLO, window_s: float, ratio: float | None, events: float | None,
                   stable_ratio: float | None) -> tuple[WindowPair, float, float | None, ScopedBurn | None]:
    """The slowest page pair, its error-ratio threshold, stable's ratio (None unless finite), and the answer
    when the canary has no events to judge (None when it has)."""
    page = min((p for p in window_pairs(slo.period_s) if p.severity == "page"), key=lambda p: p.burn_rate)
    threshold = page.error_ratio_threshold(slo.error_budget)
    if stable_ratio is not None and not math.isfinite(stable_ratio):
        stable_ratio = None
    if ratio is None or events is None or not math.isfinite(ratio) or events < 1:
        return page, threshold, stable_ratio, ScopedBurn(
            label, window_s, None, events, None, page.burn_rate, None, None,
            f"{label}: no canary events in {human_duration(window_s)}", stable_ratio)
    return page, threshold, stable_ratio, None


def decide_scoped(label: str, slo: SLO, window_s: float, ratio: float | None, events: float | None,
                  stable_ratio: float | None = None) -> ScopedBurn:
    """Pure: fail when the canary's bad events are significantly above the slowest page threshold, and
    well above stable's own error ratio over the same window (when stable has one)."""
    page, threshold, stable_ratio, none = _scoped_inputs(label, slo, window_s, ratio, events, stable_ratio)
    if none is not None:
        return none
    assert ratio is not None and events is not None  # _scoped_inputs answered when either was missing
    budget = slo.error_budget
    n = round(events)
    bad = round(ratio * events)
    p_value = binomial_sf(bad, n, min(threshold, 1.0))
    burn = ratio / budget
    figures = (f"canary error ratio {ratio:.3%} over {human_duration(window_s)} ({bad}/{n} events), "
               f"burn rate {burn:.1f}x vs page {page.burn_rate:g}x"
               + ("" if stable_ratio is None else f", stable {stable_ratio:.3%}"))
    if p_value < ALPHA and (stable_ratio is None or ratio > STABLE_MARGIN * stable_ratio):
        return ScopedBurn(label, window_s, ratio, events, burn, page.burn_rate, p_value, "fail",
                          f"{label}: canary burns its budget: {figures}, p={p_value:.2g}", stable_ratio)
    if p_value < ALPHA:
        figures += ": stable burns alike, so not the canary's doing (the fleet gate judges the platform)"
    return ScopedBurn(label, window_s, ratio, events, burn, page.burn_rate, p_value, "pass",
                      f"{label}: {figures}", stable_ratio)


def decide_scoped_sequential(label: str, slo: SLO, window_s: float, ratio: float | None, events: float | None,
                             stable_ratio: float | None, alpha: float) -> ScopedBurn:
    """Pure: the canary-scoped burn decided on a confidence sequence (sequential.py) instead of a p-value, so
    valid however often it is asked: failed when the canary's error ratio is surely above the slowest page
    threshold (its confidence sequence's low end is), and more than STABLE_MARGIN times stable's."""
    page, threshold, stable_ratio, none = _scoped_inputs(label, slo, window_s, ratio, events, stable_ratio)
    if none is not None:
        return none
    assert ratio is not None and events is not None  # _scoped_inputs answered when either was missing
    n = max(0, round(events))
    # The ratio comes from PromQL increase() over separate series (good and total), each extrapolated on its
    # own: a healthy canary's can come out slightly below 0 (seen: -0.9% of 32,725 pushes), which is no bad event.
    bad = min(n, max(0, round(ratio * events)))
    low, high = confidence_sequence(bad, n, alpha)
    figures = (f"canary {bad}/{n} bad ({ratio:.3%}, between {low:.3%} and {high:.3%}) vs the page threshold "
               f"{threshold:.3%} ({page.burn_rate:g}x)"
               + ("" if stable_ratio is None else f", stable {stable_ratio:.3%}"))
    surely = low > threshold
    if surely and (stable_ratio is None or ratio > STABLE_MARGIN * stable_ratio):
        return ScopedBurn(label, window_s, ratio, events, ratio / slo.error_budget, page.burn_rate, None, "fail",
                          f"{label}: canary surely burns its budget: {figures}", stable_ratio)
    return ScopedBurn(label, window_s, ratio, events, ratio / slo.error_budget, page.burn_rate, None, "pass",
                      f"{label}: {figures}", stable_ratio)
