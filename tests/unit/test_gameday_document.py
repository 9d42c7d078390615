"""The gameday's typed document (gameday/document.py): gameday.json's shape, the JUnit cases, a report
without Prometheus."""

from __future__ import annotations

import json

from openbell.gameday.core import Outcome
from openbell.gameday.document import SCHEMA, GamedayDocument, GateSummary
from openbell.gameday.events import Event
from openbell.slo.verdict import Verdict

ROW = {"name": "market-open", "kind": "load", "outcome": "pass", "reason": "", "duration_s": 60.0}


def _doc(outcome: Outcome, rows: tuple[dict[str, object], ...] = (ROW,)) -> GamedayDocument:
    gate = GateSummary("page", 5.0, 0.05, (), 12, Verdict("pass", ("ok",)))
    events = (Event(110.0, None, "gameday-end", "ended"), Event(100.0, None, "gameday-start", "started"))
    return GamedayDocument("opening-bell", "d", "gamedays/opening-bell.yaml", "sandbox", "R1", 100.0, 170.25,
                           outcome, gate, rows, events, logs={"market-open": "phases/market-open.log"})


def test_the_document_is_gameday_json_with_events_in_time_order() -> None:
    doc = _doc(Outcome("pass", 0, "every phase passed", ["market-open: pass"])).to_json()
    assert doc["schema"] == SCHEMA and doc["duration_s"] == 70.25 and "report_error" not in doc
    assert [e["kind"] for e in doc["events"]] == ["gameday-start", "gameday-end"]
    assert doc["gate"]["last"]["outcome"] == "pass" and doc["gate"]["checks"] == 12
    assert doc["artifacts"]["logs"] == {"market-open": "phases/market-open.log"} and doc["load"] == []
    assert json.loads(json.dumps(doc)) == doc


def test_without_prometheus_the_verdict_stands_and_says_why_the_plots_are_missing() -> None:
    doc = _doc(Outcome("fail", 1, "SLO gate: lag", ["SLO gate: lag"])).without_prometheus("ConnectError()")
    data = doc.to_json()
    assert data["verdict"]["outcome"] == "fail" and data["verdict"]["reason"] == "SLO gate: lag"
    assert data["report_error"] == "plots and budgets could not be read from Prometheus: ConnectError()"
    assert data["verdict"]["reasons"][-1] == f"(report: {data['report_error']})"


def test_junit_has_the_health_before_a_case_per_phase_and_the_gate() -> None:
    cases = _doc(Outcome("fail", 1, "SLO gate: lag", ["SLO gate: lag"])).junit_cases()
    assert [(c.name, c.outcome) for c in cases] == [("platform healthy before the gameday", "pass"),
                                                    ("market-open (load)", "pass"), ("SLO gate", "fail")]
    skipped = {**ROW, "outcome": "not_run", "duration_s": None}
    cases = _doc(Outcome("unhealthy", 1, "burning", ["lag burning"]), (skipped,)).junit_cases()
    assert [(c.name, c.outcome) for c in cases] == [("platform healthy before the gameday", "fail"),
                                                    ("market-open (load)", "skipped"), ("SLO gate", "skipped")]
