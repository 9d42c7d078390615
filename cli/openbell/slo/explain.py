"""What an SLO's alerts mean in figures: windows, thresholds, budget spent, detection time."""

from __future__ import annotations

from dataclasses import dataclass

from openbell.durations import human_duration
from openbell.slo.model import SLO
from openbell.slo.promql import threshold_resolution_s
from openbell.slo.rules import min_events_for, min_samples_for
from openbell.slo.windows import window_pairs


@dataclass(frozen=True)
class WindowFigures:
    severity: str
    long_window_s: float
    short_window_s: float
    burn_rate: float
    error_ratio_threshold: float
    budget_consumed: float
    detection_time_s: float | None
    min_events: int | None
    min_samples: int | None
    min_history_s: float | None  # the history those samples span (threshold SLIs; scrapes for latency)
    enabled: bool


def explain(slo: SLO) -> list[WindowFigures]:
    out = []
    for pair in window_pairs(slo.period_s):
        enabled = slo.alerting.page if pair.severity == "page" else slo.alerting.ticket
        out.append(WindowFigures(
            severity=pair.severity,
            long_window_s=pair.long_window_s,
            short_window_s=pair.short_window_s,
            burn_rate=pair.burn_rate,
            error_ratio_threshold=pair.error_ratio_threshold(slo.error_budget),
            budget_consumed=pair.budget_consumed(slo.period_s),
            detection_time_s=pair.detection_time_s(slo.error_budget),
            min_events=None if slo.sli.kind == "threshold" else min_events_for(slo, pair),
            min_samples=min_samples_for(slo, pair),
            min_history_s=_min_history_s(slo, min_samples_for(slo, pair), pair.long_window_s),
            enabled=enabled,
        ))
    return out


def _min_history_s(slo: SLO, min_samples: int | None, window_s: float) -> float | None:
    """The history a threshold SLI's samples span (its subquery step is fixed per window); a latency SLI's
    samples are scrapes, so theirs depends on the scrape interval."""
    if min_samples is None or slo.sli.kind != "threshold":
        return None
    return float(min_samples * threshold_resolution_s(window_s))


def warnings(slo: SLO) -> list[str]:
    """Things that are valid but probably not what the author meant."""
    out = []
    for f in explain(slo):
        if f.enabled and f.detection_time_s is None:
            out.append(f"{slo.source}: {slo.name}: the {f.severity} pair {human_duration(f.long_window_s)}/"
                       f"{human_duration(f.short_window_s)} needs an error ratio of {f.error_ratio_threshold:.0%}"
                       " and can never fire; raise the objective or disable that severity")
    shortest = window_pairs(slo.period_s)[0].short_window_s
    if shortest < 120:
        out.append(f"{slo.source}: {slo.name}: its shortest window is {human_duration(shortest)}: rate() needs a"
                   f" scrape interval of at most {human_duration(shortest / 4)} for it to be reliable")
    if slo.runbook is None:
        out.append(f"{slo.source}: {slo.name}: no runbook: its alerts will have no runbook_url")
    return out


def describe(slo: SLO) -> list[str]:
    """The same figures as sentences, for the terminal."""
    lines = [f"{slo.service}/{slo.name}: {slo.objective_percent:g}% over {human_duration(slo.period_s)} "
             f"({slo.sli.kind} SLI); error budget {slo.error_budget:.4%} "
             f"= {human_duration(slo.error_budget * slo.period_s)} of full outage."]
    if slo.group_by:
        lines.append(f"  Evaluated separately for each value of {', '.join(slo.group_by)}.")
    for f in explain(slo):
        if not f.enabled:
            disabled = f"  {f.severity}: disabled."
            if disabled not in lines:
                lines.append(disabled)
            continue
        when = (f"a total outage fires it after {human_duration(f.detection_time_s)}"
                if f.detection_time_s is not None else "it can never fire (threshold >= 100%)")
        guard = f" It needs at least {f.min_events} events in the long window." if f.min_events else ""
        if f.min_samples and f.min_history_s:
            guard += (f" It needs at least {f.min_samples} samples in the long window "
                      f"({human_duration(f.min_history_s)} of history): on a younger history one bad sample alone "
                      f"would cross the threshold.")
        elif f.min_samples:
            guard += (f" It needs at least {f.min_samples} scrapes in the long window: on a younger history one slow"
                      f" scrape interval alone would cross the threshold.")
        lines.append(
            f"  {f.severity}: fires when the error ratio exceeds {f.error_ratio_threshold:.4%} "
            f"({f.burn_rate:g}x burn) over both {human_duration(f.long_window_s)} and "
            f"{human_duration(f.short_window_s)}; by then {f.budget_consumed:.1%} of the budget is spent; "
            f"{when}.{guard}")
    return lines
