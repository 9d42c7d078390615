"""The gameday's document, typed: what gameday.json holds (schema openbell/gameday/v1), what `--output json`
prints, and what the report page and the JUnit cases are drawn from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openbell.gameday.core import Outcome
from openbell.gameday.events import Event
from openbell.report.junit import Case
from openbell.slo.verdict import Verdict

SCHEMA = "openbell/gameday/v1"


@dataclass(frozen=True)
class GateSummary:
    """The gameday gate: its rules, what burned before the gameday, how often it was asked, its last answer."""

    severity: str
    interval_s: float
    max_budget_consumed: float
    unhealthy_at_start: tuple[Mapping[str, Any], ...] = ()
    checks: int = 0
    last: Verdict | None = None

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "interval_s": self.interval_s,
                "max_budget_consumed": self.max_budget_consumed,
                "unhealthy_at_start": [dict(b) for b in self.unhealthy_at_start], "checks": self.checks,
                "last": self.last.to_dict() if self.last is not None else None}


@dataclass(frozen=True)
class GamedayDocument:
    gameday: str
    description: str
    plan: str
    target: str
    run_id: str
    started_at: float
    finished_at: float
    verdict: Outcome
    gate: GateSummary
    phases: tuple[Mapping[str, Any], ...]  # one row per phase (runner.PhaseRun.to_dict)
    events: tuple[Event, ...]
    charts: tuple[Mapping[str, Any], ...] = ()  # gameday/collect.py's series per chart
    slos: tuple[Mapping[str, Any], ...] = ()  # budget spent per SLO
    alerts: tuple[Mapping[str, Any], ...] = ()  # alerts that fired, with their runbooks
    logs: Mapping[str, str] = field(default_factory=dict)  # phase -> its log, relative to the report folder
    load: tuple[Mapping[str, Any], ...] = ()  # what each calibrated load phase's scale was set from
    report_error: str | None = None  # why the plots and budgets are missing

    @property
    def duration_s(self) -> float:
        return round(self.finished_at - self.started_at, 3)

    def without_prometheus(self, why: str) -> GamedayDocument:
        """The verdict stands whatever happens to the plots: the document says why they are missing."""
        error = f"plots and budgets could not be read from Prometheus: {why}"
        verdict = dataclasses.replace(self.verdict, reasons=[*self.verdict.reasons, f"(report: {error})"])
        return dataclasses.replace(self, verdict=verdict, report_error=error)

    def to_json(self) -> dict[str, Any]:
        v = self.verdict
        doc: dict[str, Any] = {
            "schema": SCHEMA, "gameday": self.gameday, "description": self.description, "plan": self.plan,
            "target": self.target, "run_id": self.run_id, "started_at": self.started_at,
            "finished_at": self.finished_at, "duration_s": self.duration_s,
            "verdict": {"outcome": v.verdict, "exit_code": v.exit_code, "reason": v.reason, "reasons": v.reasons},
            "gate": self.gate.to_json(),
            "phases": [dict(p) for p in self.phases],
            "events": [e.to_dict() for e in sorted(self.events, key=lambda e: e.at)],
            "charts": [dict(c) for c in self.charts],
            "slos": [dict(s) for s in self.slos],
            "alerts": [dict(a) for a in self.alerts],
            "artifacts": {"json": "gameday.json", "junit": "junit.xml", "html": "index.html", "logs": dict(self.logs)},
        }
        if self.report_error is not None:
            doc["report_error"] = self.report_error
        doc["load"] = [dict(entry) for entry in self.load]
        return doc

    def junit_cases(self) -> list[Case]:
        """A case per phase, one for the platform's health before the gameday and one for the SLO gate."""
        suite = f"gameday.{self.gameday}"
        cases = [_phase_case(p, suite) for p in self.phases]
        reasons: Sequence[str] = self.verdict.reasons
        unhealthy = self.verdict.verdict == "unhealthy"
        cases.insert(0, Case("platform healthy before the gameday", suite, "fail" if unhealthy else "pass",
                             "; ".join(reasons) if unhealthy else "nothing burning at the start"))
        if unhealthy:
            cases.append(Case("SLO gate", suite, "skipped", "not asked: the gameday did not start"))
        else:
            gate_failures = [r for r in reasons if r.startswith("SLO gate")]
            cases.append(Case("SLO gate", suite, "fail" if gate_failures else "pass",
                              "; ".join(gate_failures) or f"held over {self.gate.checks} checks"))
        return cases


def _phase_case(p: Mapping[str, Any], suite: str) -> Case:
    outcome = {"pass": "pass", "not_run": "skipped", "skipped": "skipped"}.get(p["outcome"], "fail")
    return Case(f"{p['name']} ({p['kind']})", suite, outcome, p["reason"] or p["outcome"],
                time_s=p["duration_s"] or 0.0)
