"""The gameday's own gate: one verdict from the SLO model, asked every few seconds while anything runs.

Two rules, both from the plan's SLOs:
1. **Burn rate**: no SLO series may burn past its multiwindow thresholds (page severity by default). A
   platform already burning when the gameday starts is not gamed at all (`preflight`): the gameday ends at
   once, naming what burns and since when, so a failure is always damage the gameday did.
2. **Budget cap**: no SLO may spend more than `max_budget_consumed` of its period's error budget over the
   gameday. An SLO a started phase declared in `expected_burn` (a broker loss spends consumer-lag budget
   by design) leaves rule 1 from then on and is held to this cap alone.

A Prometheus that cannot be asked three times in a row fails the gate: a blind gameday stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from openbell.errors import OpenbellError
from openbell.gameday.plan import Gate
from openbell.metrics.prometheus import PrometheusClient
from openbell.slo.burning import Burning, burning
from openbell.slo.evaluate import evaluate
from openbell.slo.judgement import judge
from openbell.slo.model import SLO
from openbell.slo.promql import error_ratio
from openbell.slo.verdict import Outcome, Verdict, combine

BLIND_LIMIT = 3


@dataclass(frozen=True)
class Spend:
    """What one SLO spent over the gameday so far (worst group)."""

    slo: str
    error_ratio: float | None
    burn_rate: float | None
    budget_consumed: float | None  # fraction of the period's error budget

    def to_dict(self) -> dict[str, Any]:
        return {"slo": self.slo, "error_ratio": _r(self.error_ratio), "burn_rate": _r(self.burn_rate),
                "budget_consumed": _r(self.budget_consumed)}


def _r(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 8)


@dataclass
class GamedayGate:
    client: PrometheusClient
    slos: list[SLO]
    rules: Gate
    started_at: float
    blind: int = 0

    def preflight(self, now: float) -> list[Burning]:
        """What burns before anything starts, with since when (empty: the platform is healthy)."""
        return burning(self.client, self.slos, self.rules.severity, now)

    def spend(self, slo: SLO, now: float) -> Spend:
        """Error ratio over [started_at, now] (worst group) -> burn rate and share of the period budget."""
        elapsed = now - self.started_at
        if elapsed < 2.0:
            return Spend(slo.name, None, None, None)
        try:
            samples = self.client.query(error_ratio(slo, math.ceil(elapsed)), at=now)
        except OpenbellError:  # refused, timed out or unreachable: no figure (the checks count blindness)
            return Spend(slo.name, None, None, None)
        values = [s.value for s in samples if math.isfinite(s.value)]
        if not values:
            return Spend(slo.name, None, None, None)
        ratio = max(values)
        burn = ratio / slo.error_budget
        return Spend(slo.name, ratio, burn, burn * elapsed / slo.period_s)

    def check(self, now: float, expected_burn: set[str], severity: str | None = None) -> Verdict:
        """The gate's verdict now; never raises. A Prometheus that cannot be asked, or that answers no SLO at
        all (every query failing or timing out), is inconclusive; BLIND_LIMIT times in a row fails."""
        try:
            verdict = self._check(now, expected_burn, severity or self.rules.severity)
        except (OpenbellError, httpx.HTTPError) as exc:
            return self._blind(str(exc))
        if verdict.figures.get("answered") == 0:
            return self._blind("no SLO could be read (every query failed or timed out)")
        self.blind = 0
        return verdict

    def _blind(self, why: str) -> Verdict:
        self.blind += 1
        if self.blind >= BLIND_LIMIT:
            return Verdict("fail", (f"SLO gate blind: Prometheus could not be asked {self.blind} times in a row "
                                    f"({why})",), {"blind": self.blind})
        return Verdict("inconclusive", (f"SLO gate could not be asked: {why}",), {"blind": self.blind})

    def _check(self, now: float, expected_burn: set[str], severity: str) -> Verdict:
        _, results = evaluate(self.client, self.slos, severity, at=now)
        answered = sum(1 for r in results if any(p.long_error_ratio is not None or p.short_error_ratio is not None
                                                 for p in r.pairs))
        judged = judge(results, expected=expected_burn)
        outcomes: list[Outcome] = [c.outcome for c in judged.items]
        reasons = [line for c in judged.failing for line in c.lines]
        notes = [line for c in judged.excused for line in c.lines]
        failing = {c.result.slo.name for c in judged.failing}
        spends = [self.spend(slo, now) for slo in self.slos]
        for s in spends:
            if s.budget_consumed is not None and s.budget_consumed > self.rules.max_budget_consumed:
                outcomes.append("fail")
                failing.add(s.slo)
                reasons.append(f"{s.slo}: the gameday spent {s.budget_consumed:.2%} of its error budget "
                               f"(cap {self.rules.max_budget_consumed:.2%}, burn rate {s.burn_rate:.1f}x)")
        outcome = combine(outcomes) if outcomes else "inconclusive"
        if outcome == "inconclusive" and "fail" not in outcomes:
            # No data for some SLO (an SLI nobody exercised) does not stop a gameday; it is reported.
            outcome = "pass"
        if outcome == "pass":
            reasons.insert(0, f"{len(results)} SLO series within their {severity} burn rates; every SLO "
                              f"within {self.rules.max_budget_consumed:.0%} of its budget")
        figures = {"spend": [s.to_dict() for s in spends], "expected_burn": sorted(expected_burn), "notes": notes,
                   "answered": answered, "failing": sorted(failing)}
        return Verdict(outcome, tuple(reasons), figures)
