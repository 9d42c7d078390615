"""The canary's two gates, each a Verdict with its figures, read from Prometheus. This module fetches; the
decisions are pure: the fleet's burn judged against the rollout's baseline (slo/judgement.py), and the
canary's statistics (judge.py).

1. SLO burn (`slo`): the service's SLOs at page severity over their fast windows, fleet-wide - the same
   evaluation as `openbell slo gate`. A rollout cannot be blamed for a burn that was already there when
   it began: an SLO series failing at the baseline is reported but not counted.
2. The judge (`judge`): the canary alone. (a) Its own SLO burn: each applicable SLO scoped to the canary's
   series, its bad events tested against the slowest page threshold (the burn that would page if this
   version took all the traffic) with a one-sided binomial test (a canary serving 10% of traffic can burn at
   100x while the fleet burns at 10x, below any alert).
   (b) The comparison with stable on the service's metrics (Mann-Whitney U with effect tolerances).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from openbell.canary.judge import MetricResult, ScopedBurn, decide_scoped, judge_metric
from openbell.canary.services import CanaryService
from openbell.durations import promql_duration
from openbell.metrics.prometheus import PrometheusClient, QueryError, QueryTimeout
from openbell.slo.burning import Burning, burning
from openbell.slo.evaluate import evaluate
from openbell.slo.judgement import judge
from openbell.slo.model import SLO, ThresholdSLI
from openbell.slo.promql import error_ratio, event_rate
from openbell.slo.scope import scope
from openbell.slo.verdict import Outcome, Verdict, combine
from openbell.targets.base import MetricScope


@dataclass
class Gates:
    """Asks Prometheus both questions for one rollout. `baseline()` once when the rollout starts."""

    client: PrometheusClient
    service: CanaryService
    scope: MetricScope
    slos: list[SLO]
    scrape_interval_s: float = 1.0
    lookback_s: float = 300.0
    burning_at_start: set[str] = field(default_factory=set)

    @property
    def rate_window_s(self) -> float:
        """Per-sample rate window: three scrapes, so each sample is a real rate, not one delta."""
        return max(2.0, 3.0 * self.scrape_interval_s)

    def preflight(self, now: float) -> list[Burning]:
        """What of the fleet burns before the rollout starts, with since when (empty: healthy)."""
        return burning(self.client, self.slos, "page", now)

    def baseline(self, now: float | None = None) -> Verdict:
        """The fleet's SLOs before the canary gets traffic; what already fails is not the canary's doing."""
        verdict, results = evaluate(self.client, self.slos, "page", at=now)
        self.burning_at_start = {r.label for r in results if r.outcome == "fail"}
        return verdict

    def slo(self, now: float | None = None) -> Verdict:
        """Gate 1: the fleet's page-severity burn, minus what was already burning at the baseline."""
        verdict, results = evaluate(self.client, self.slos, "page", at=now)
        judged = judge(results, baseline=self.burning_at_start, before="the rollout")
        outcomes, reasons = judged.outcomes, judged.lines
        if not outcomes and results:
            return Verdict("pass", ("every fleet SLO series was already burning before the rollout: the fleet "
                                    "gate has nothing to add; the judge decides", *reasons),
                           {"fleet": verdict.figures.get("slos", []),
                            "burning_at_start": sorted(self.burning_at_start)})
        outcome = combine(outcomes) if outcomes else verdict.outcome
        if outcome == "pass":
            reasons.insert(0, f"{len(outcomes)} fleet SLO series within their page burn rates")
        return Verdict(outcome, tuple(reasons), {"fleet": verdict.figures.get("slos", []),
                                                 "burning_at_start": sorted(self.burning_at_start)})

    def scoped_burns(self, now: float, since: float) -> list[ScopedBurn]:
        window_s = float(max(round(2 * self.scrape_interval_s), min(round(now - since), self.lookback_s)))
        out: list[ScopedBurn] = []
        for slo in self.slos:
            if isinstance(slo.sli, ThresholdSLI):
                continue
            scoped = scope(slo, self.scope.matcher(self.scope.canary))
            baseline = scope(slo, self.scope.matcher(self.scope.stable))
            if scoped is None or baseline is None:
                continue
            rate = event_rate(scoped, window_s)
            try:
                ratios = self.client.query(error_ratio(scoped, window_s), at=now)
                counts = self.client.query(f"({rate}) * {window_s:g}", at=now) if rate else []
                stable = self.client.query(error_ratio(baseline, window_s), at=now)
            except (QueryError, QueryTimeout) as exc:
                out.append(ScopedBurn(f"{slo.service}/{slo.name}", window_s, None, None, None, 0.0, None,
                                      "inconclusive", f"{slo.service}/{slo.name}: {exc}"))
                continue
            events = {tuple(s.labels.get(k, "") for k in slo.group_by): s.value for s in counts}
            stable_ratios = {tuple(s.labels.get(k, "") for k in slo.group_by): s.value for s in stable}
            for sample in ratios:
                key = tuple(sample.labels.get(k, "") for k in slo.group_by)
                group = ",".join(f"{k}={v}" for k, v in zip(slo.group_by, key, strict=True))
                label = f"{slo.service}/{slo.name}" + (f"{{{group}}}" if group else "")
                out.append(decide_scoped(label, slo, window_s, sample.value, events.get(key), stable_ratios.get(key)))
        return out

    def samples(self, query: str, start: float, end: float) -> tuple[list[float], list[float]]:
        """(canary, stable) samples: one per replica per rate window between start and end."""
        window = self.rate_window_s
        # Windows overlap by a third: twice the samples of disjoint windows, still mostly independent.
        step = max(1.0, 2.0 * self.scrape_interval_s)
        out: dict[str, list[float]] = {self.scope.canary: [], self.scope.stable: []}
        for role in out:
            promql = query.replace("{role}", self.scope.matcher(role)).replace("{window}", promql_duration(window))
            for series in self.client.query_range(promql, start, end, step):
                out[role].extend(v for _, v in series.points)
        return out[self.scope.canary], out[self.scope.stable]

    def served(self, now: float) -> dict[str, float | None]:
        """Messages per second each version serves now (over 10 s), and the canary's share of them."""
        out: dict[str, float | None] = {}
        if not self.service.served:
            return out
        for role in (self.scope.stable, self.scope.canary):
            window = promql_duration(max(10.0, 3.0 * self.rate_window_s))
            promql = self.service.served.replace("{role}", self.scope.matcher(role)).replace("{window}", window)
            try:
                samples = self.client.query(promql, at=now)
            except (QueryError, QueryTimeout):
                samples = []
            value = samples[0].value if samples else None
            out[f"{role}_per_s"] = None if value is None or not math.isfinite(value) else round(value, 3)
        stable, canary = out.get(f"{self.scope.stable}_per_s"), out.get(f"{self.scope.canary}_per_s")
        total = (stable or 0.0) + (canary or 0.0)
        out["canary_share"] = None if total <= 0 else round((canary or 0.0) / total, 4)
        return out

    def judge(self, now: float, since: float) -> Verdict:
        """Gate 2: the canary's own SLO burn, then canary against stable on the service's metrics."""
        burns = self.scoped_burns(now, since)
        start = max(since + self.rate_window_s, now - self.lookback_s)
        results: list[MetricResult] = []
        for metric in self.service.metrics:
            if start >= now:
                results.append(judge_metric(metric, [], []))
                continue
            try:
                canary, stable = self.samples(metric.query, start, now)
            except (QueryError, QueryTimeout):
                canary, stable = [], []
            results.append(judge_metric(metric, canary, stable))
        outcomes: list[Outcome] = [b.outcome for b in burns if b.outcome is not None]
        outcomes += [r.outcome for r in results]
        outcome = combine(outcomes)
        reasons = [b.reason for b in burns if b.outcome == outcome]
        reasons += [r.reason for r in results if r.outcome == outcome]
        return Verdict(outcome, tuple(reasons), {"canary_slo_burn": [b.to_dict() for b in burns],
                                                 "metrics": [r.to_dict() for r in results],
                                                 "messages": self.served(now)})
