"""The canary judge: is the canary worse than stable on the same metric? Pure, on plain lists of samples.

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

from openbell.slo.verdict import Outcome, Verdict, combine

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
