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
   (b) The comparison with stable on the service's metrics: with the `fixed` judge, Mann-Whitney U with
   effect tolerances on rate samples (judge.py); with the `sequential` judge, anytime-valid confidence
   sequences on the counts since the first step (sequential.py): the latency histograms boundary by boundary
   and the failures, and the canary-scoped burn decided on a confidence sequence too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from openbell.canary import sequential
from openbell.canary.judge import MetricResult, ScopedBurn, decide_scoped, decide_scoped_sequential, judge_metric
from openbell.canary.machine import Policy
from openbell.canary.services import CanaryService, Question
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

    def judge(self, now: float, since: float, policy: Policy | None = None) -> Verdict:
        """Gate 2: the canary's own SLO burn, then canary against stable on the service's metrics, by the
        policy's judge (fixed unless it says sequential)."""
        if policy is not None and policy.judge == "sequential":
            return self.sequential(now, since, policy)
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

    # -- the sequential judge ----------------------------------------------------------------------------

    def counts(self, selector: str, role: str, now: float, since: float) -> dict[tuple[tuple[str, str], ...], float]:
        """Each series' growth between `since` and `now` (labels -> events): a series absent at `since` (the
        canary's, born with it) counts from 0, and one that reset (a restarted replica) from its reset."""
        promql = selector.replace("{role}", self.scope.matcher(role))
        before = {_key(s.labels): s.value for s in self.client.query(promql, at=since)}
        out: dict[tuple[tuple[str, str], ...], float] = {}
        for sample in self.client.query(promql, at=now):
            if not math.isfinite(sample.value):
                continue
            key = _key(sample.labels)
            base = before.get(key, 0.0)
            base = base if math.isfinite(base) else 0.0
            out[key] = sample.value - base if sample.value >= base else sample.value
        return out

    def question_counts(self, question: Question, role: str, now: float,
                        since: float) -> list[tuple[str, sequential.Counts]]:
        """A question's (label, counts) for one version: one per histogram boundary, or one ratio."""
        if question.kind == "ratio":
            bad = sum(sum(self.counts(q, role, now, since).values()) for q in question.bad)
            total = sum(sum(self.counts(q, role, now, since).values()) for q in question.total)
            total_n = max(0, round(total))
            return [(question.name, sequential.Counts(min(total_n, max(0, round(bad))), total_n))]
        by_le: dict[float, float] = {}
        for key, value in self.counts(question.series, role, now, since).items():
            raw = dict(key).get("le")
            if raw is None:
                continue
            bound = float(raw)
            by_le[bound] = by_le.get(bound, 0.0) + value
        out: list[tuple[str, sequential.Counts]] = []
        for boundary, above, total in sequential.exceedances(sorted(by_le.items())):
            shown = f"{boundary * 1000:g} ms" if question.unit_ms else f"{boundary:g}"
            out.append((f"{question.name} > {shown}", sequential.Counts(above, total)))
        return out

    def sequential(self, now: float, since: float, policy: Policy) -> Verdict:
        """Gate 2 by the sequential judge: every question's confidence sequences on the counts since the
        first step, alpha split over every sequence (two per question, one per scoped SLO series)."""
        asked: list[tuple[Question, str, sequential.Counts, sequential.Counts]] = []
        unavailable: list[str] = []
        for question in self.service.questions:
            try:
                canary = dict(self.question_counts(question, self.scope.canary, now, since))
                stable = dict(self.question_counts(question, self.scope.stable, now, since))
            except (QueryError, QueryTimeout) as exc:
                unavailable.append(f"{question.name}: {exc}")
                continue
            for label in sorted(set(canary) | set(stable), key=_boundary_order):
                c = canary.get(label, sequential.Counts(0, 0))
                s = stable.get(label, sequential.Counts(0, 0))
                if c.total == 0 and s.total == 0:
                    continue  # nothing of this kind served by either version: nothing to ask
                asked.append((question, label, c, s))
        scoped = self._scoped_with_slos(now, since)
        sequences = 2 * len(asked) + len(scoped)
        each = policy.alpha / max(1, sequences)
        comparisons = []
        for question, label, c, s in asked:
            tolerance = policy.latency_tolerance if question.family == "latency" else policy.error_tolerance
            # Failures: the same code fails no more often, so any sure excess is a regression. Latency: two
            # processes on one machine never serve exactly alike; half the tolerance is the resolution.
            margin = tolerance / 2.0 if question.family == "latency" else 0.0
            comparisons.append(sequential.compare(label, c, s, each, margin, tolerance))
        burns = [decide_scoped_sequential(b.label, slo, b.window_s, b.error_ratio, b.events, b.stable_error_ratio, each)
                 for b, slo in scoped]
        decision = sequential.overall(comparisons)
        burned = [b for b in burns if b.outcome == "fail"]
        figures = {"judge": "sequential", "alpha": policy.alpha, "alpha_each": each,
                   "comparisons": [c.to_dict() for c in comparisons],
                   "canary_slo_burn": [b.to_dict() for b in burns], "messages": self.served(now)}
        if unavailable:
            figures["unavailable_questions"] = unavailable
        if burned or decision == "regressed":
            reasons = tuple(b.reason for b in burned) + tuple(c.line() for c in comparisons
                                                              if c.decision == "regressed")
            return Verdict("fail", reasons, figures)
        if decision == "non-inferior" and not unavailable:
            worst = max(comparisons, key=lambda c: c.high - c.tolerance)
            return Verdict("pass", (f"non-inferior on {len(comparisons)} questions (alpha {policy.alpha:g}); "
                                    f"closest to its tolerance: {worst.line()}",), figures)
        pending = [c for c in comparisons if c.decision == "not yet"]
        reasons = tuple(f"not yet: {c.line()}" for c in pending[:3]) + tuple(unavailable)
        if not comparisons:
            reasons = ("no canary or stable events to compare yet", *reasons)
        return Verdict("inconclusive", reasons, figures)

    def _scoped_with_slos(self, now: float, since: float) -> list[tuple[ScopedBurn, SLO]]:
        """The canary-scoped SLO series since the first step, each with its SLO (those Prometheus answered)."""
        by_label = {f"{s.service}/{s.name}": s for s in self.slos}
        return [(b, by_label[b.label.split("{", 1)[0]]) for b in self.scoped_burns(now, since)
                if b.label.split("{", 1)[0] in by_label and b.outcome != "inconclusive"]


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def _boundary_order(label: str) -> tuple[str, float]:
    name, _, rest = label.partition(" > ")
    try:
        return name, float(rest.split()[0]) if rest else -1.0
    except ValueError:
        return name, -1.0
