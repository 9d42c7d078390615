"""Gate and status: fetch an SLO's error ratios from Prometheus, then decide — in that order.

`read_slo` does the I/O (one instant query per window); `decide` is pure and unit-tested on plain
values. A window without data (no series, NaN from 0/0, a failed or timed-out query) never counts as
good: a pair whose windows are unknown is inconclusive, unless one known window already rules the
alert out (both windows must burn for it to fire).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from openbell.durations import human_duration
from openbell.errors import UnreachableError
from openbell.metrics.types import QueryError, QueryTimeout, Source
from openbell.slo.burn import budget_remaining, is_number
from openbell.slo.judgement import judge
from openbell.slo.model import SLO
from openbell.slo.promql import error_ratio, event_rate, sample_count
from openbell.slo.rules import min_events_for, min_samples_for
from openbell.slo.verdict import Outcome, Verdict, combine
from openbell.slo.windows import WindowPair, window_pairs

GroupKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Reading:
    """One query's answer: a value per group (NaN allowed), or the error that prevented it."""

    values: dict[GroupKey, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class SLOReadings:
    slo: SLO
    error_ratios: dict[float, Reading]  # window_s -> error ratio per group
    events: dict[float, Reading]  # long window_s -> events counted in it per group
    period_error_ratio: Reading
    samples: dict[float, Reading] = field(default_factory=dict)  # long window_s -> samples it holds per group


@dataclass(frozen=True)
class PairResult:
    severity: str
    long_window_s: float
    short_window_s: float
    burn_rate_threshold: float
    error_ratio_threshold: float
    long_error_ratio: float | None
    short_error_ratio: float | None
    long_burn_rate: float | None
    short_burn_rate: float | None
    events: float | None
    min_events: int | None
    outcome: Outcome
    reason: str
    samples: float | None = None
    min_samples: int | None = None


@dataclass(frozen=True)
class GroupResult:
    slo: SLO
    group: GroupKey
    pairs: tuple[PairResult, ...]
    sli_now: float | None
    budget_remaining: float | None
    outcome: Outcome

    @property
    def label(self) -> str:
        group = ",".join(f"{k}={v}" for k, v in self.group)
        return f"{self.slo.service}/{self.slo.name}" + (f"{{{group}}}" if group else "")


def severities_for(severity: str) -> tuple[str, ...]:
    """`page` looks at the fast pairs only; `ticket` at both (a ticket burn is also worth stopping for)."""
    return ("page",) if severity == "page" else ("page", "ticket")


def pairs_for(slo: SLO, severity: str) -> list[WindowPair]:
    return [p for p in window_pairs(slo.period_s) if p.severity in severities_for(severity)]


def read_slo(client: Source, slo: SLO, severity: str = "page", at: float | None = None) -> SLOReadings:
    """Query every window the chosen severities need, the long windows' event counts, and the period."""
    pairs = pairs_for(slo, severity)
    windows = sorted({w for p in pairs for w in (p.long_window_s, p.short_window_s)})
    ratios = {w: _read(client, error_ratio(slo, w), slo, at) for w in windows}
    events: dict[float, Reading] = {}
    samples: dict[float, Reading] = {}
    for p in pairs:
        rate = event_rate(slo, p.long_window_s)
        if rate is not None:
            events[p.long_window_s] = _read(client, f"({rate}) * {p.long_window_s:g}", slo, at)
        count = sample_count(slo, p.long_window_s)
        if count is not None:
            samples[p.long_window_s] = _read(client, count, slo, at)
    period = _read(client, error_ratio(slo, slo.period_s), slo, at)
    return SLOReadings(slo, ratios, events, period, samples)


def _read(client: Source, promql: str, slo: SLO, at: float | None) -> Reading:
    try:
        samples = client.query(promql, at=at)
    except (QueryTimeout, QueryError) as exc:
        return Reading(error=str(exc))
    except UnreachableError:
        raise
    return Reading({tuple((k, s.labels.get(k, "")) for k in slo.group_by): s.value for s in samples})


def _value(reading: Reading | None, group: GroupKey) -> float | None:
    if reading is None or reading.error is not None:
        return None
    value = reading.values.get(group)
    return value if value is not None and is_number(value) else None


def _why_missing(reading: Reading | None, group: GroupKey, window_s: float) -> str:
    if reading is not None and reading.error:
        return f"{human_duration(window_s)} window: {reading.error}"
    if reading is not None and group in reading.values:
        return f"{human_duration(window_s)} window: no events (0/0)"
    return f"{human_duration(window_s)} window: no data"


def decide_pair(slo: SLO, pair: WindowPair, readings: SLOReadings, group: GroupKey) -> PairResult:
    """Pure: one alert pair's outcome for one group, from the readings."""
    budget = slo.error_budget
    threshold = pair.error_ratio_threshold(budget)
    long_r, short_r = readings.error_ratios.get(pair.long_window_s), readings.error_ratios.get(pair.short_window_s)
    lv, sv = _value(long_r, group), _value(short_r, group)
    events_reading = readings.events.get(pair.long_window_s)
    events = _value(events_reading, group)
    min_events = min_events_for(slo, pair) if pair.long_window_s in readings.events else None
    samples = _value(readings.samples.get(pair.long_window_s), group)
    min_samples = min_samples_for(slo, pair) if pair.long_window_s in readings.samples else None
    windows = f"{human_duration(pair.long_window_s)}/{human_duration(pair.short_window_s)}"

    if lv is not None and sv is not None and lv > threshold and sv > threshold:
        if min_events and events is not None and events < min_events:
            outcome: Outcome = "pass"
            reason = (f"{pair.severity} {windows}: burning {lv / budget:.1f}x but only {events:.0f} events "
                      f"(< {min_events}): too little traffic to page on")
        elif min_samples and samples is not None and samples < min_samples:
            outcome = "pass"
            reason = (f"{pair.severity} {windows}: burning {lv / budget:.1f}x but the "
                      f"{human_duration(pair.long_window_s)} window holds only {samples:.0f} samples "
                      f"(< {min_samples}): too young a history to page on")
        else:
            outcome = "fail"
            reason = (f"{pair.severity} {windows}: burn rate {lv / budget:.1f}x (long) and {sv / budget:.1f}x "
                      f"(short) exceed {pair.burn_rate:g}x (error ratio {lv:.4%} > {threshold:.4%})")
    elif (lv is not None and lv <= threshold) or (sv is not None and sv <= threshold):
        outcome = "pass"
        reason = f"{pair.severity} {windows}: within {pair.burn_rate:g}x"
    else:
        outcome = "inconclusive"
        missing = [_why_missing(r, group, w) for r, v, w in ((long_r, lv, pair.long_window_s),
                                                               (short_r, sv, pair.short_window_s)) if v is None]
        reason = f"{pair.severity} {windows}: " + "; ".join(missing)
    return PairResult(
        severity=pair.severity, long_window_s=pair.long_window_s, short_window_s=pair.short_window_s,
        burn_rate_threshold=pair.burn_rate, error_ratio_threshold=threshold,
        long_error_ratio=lv, short_error_ratio=sv,
        long_burn_rate=None if lv is None else lv / budget, short_burn_rate=None if sv is None else sv / budget,
        events=events, min_events=min_events, outcome=outcome, reason=reason,
        samples=samples, min_samples=min_samples,
    )


def decide(readings: SLOReadings, severity: str = "page") -> list[GroupResult]:
    """Pure: per group, each pair's outcome, the SLI over the shortest window and the budget left."""
    slo = readings.slo
    pairs = pairs_for(slo, severity)
    groups: set[GroupKey] = set()
    for r in (*readings.error_ratios.values(), readings.period_error_ratio):
        groups.update(r.values)
    if not groups:
        groups = {()} if not slo.group_by else set()
    results = []
    shortest = min(readings.error_ratios) if readings.error_ratios else None
    for group in sorted(groups):
        pair_results = tuple(decide_pair(slo, p, readings, group) for p in pairs)
        now = _value(readings.error_ratios.get(shortest), group) if shortest is not None else None
        period = _value(readings.period_error_ratio, group)
        results.append(GroupResult(
            slo=slo, group=group, pairs=pair_results,
            sli_now=None if now is None else 1.0 - now,
            budget_remaining=None if period is None else budget_remaining(period, slo.error_budget),
            outcome=combine([p.outcome for p in pair_results]),
        ))
    return results


def verdict_of(results: list[GroupResult], slos: list[SLO]) -> Verdict:
    """Fold every group's results into one Verdict; an SLO with no group at all is inconclusive."""
    outcomes: list[Outcome] = []
    reasons: list[str] = []
    figures: dict[str, Any] = {"slos": []}
    seen = {r.slo.name for r in results}
    for slo in slos:
        if slo.name not in seen:
            outcomes.append("inconclusive")
            reasons.append(f"{slo.service}/{slo.name}: no data for any group of {', '.join(slo.group_by)}")
    judged = judge(results)
    outcomes += judged.outcomes
    reasons += judged.lines
    figures["slos"] = [group_figures(r) for r in results]
    outcome = combine(outcomes)
    if outcome == "pass":
        reasons.append(f"{len(results)} SLO series within their burn-rate thresholds")
    return Verdict(outcome, tuple(reasons), figures)


def group_figures(r: GroupResult) -> dict[str, Any]:
    return {
        "slo": r.slo.name,
        "service": r.slo.service,
        "group": dict(r.group),
        "objective": r.slo.objective_ratio,
        "sli_now": _json(r.sli_now),
        "budget_remaining": _json(r.budget_remaining),
        "outcome": r.outcome,
        "alert": r.slo.alert_name,
        "windows": [
            {"severity": p.severity, "long_window_s": p.long_window_s, "short_window_s": p.short_window_s,
             "burn_rate_threshold": p.burn_rate_threshold, "long_burn_rate": _json(p.long_burn_rate),
             "short_burn_rate": _json(p.short_burn_rate), "long_error_ratio": _json(p.long_error_ratio),
             "short_error_ratio": _json(p.short_error_ratio), "events": _json(p.events),
             "min_events": p.min_events, "samples": _json(p.samples), "min_samples": p.min_samples,
             "outcome": p.outcome, "reason": p.reason}
            for p in r.pairs
        ],
    }


def _json(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 10)


def evaluate(client: Source, slos: list[SLO], severity: str = "page",
             at: float | None = None) -> tuple[Verdict, list[GroupResult]]:
    """Fetch, then decide, for every SLO: the gate every risky action asks."""
    results: list[GroupResult] = []
    for slo in slos:
        results.extend(decide(read_slo(client, slo, severity, at), severity))
    return verdict_of(results, slos), results
