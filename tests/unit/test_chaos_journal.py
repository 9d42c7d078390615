"""Chaos journals (chaos/journal.py) written by hand in the shape chaostoolkit 1.19 / chaostoolkit-lib 1.44
writes them: pass, deviated, steady state failing before the method, interrupted by the safeguard or by Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openbell.chaos import journal

T0 = "2025-03-03T14:30:00.000000+00:00"


def at(seconds: float) -> str:
    return f"2025-03-03T14:30:{seconds:09.6f}+00:00"


def activity_run(kind: str, name: str, start: float, end: float, output: Any = None, status: str = "succeeded",
                 tolerance_met: bool | None = None, exception: list[str] | None = None) -> dict[str, Any]:
    run: dict[str, Any] = {
        "activity": {"type": kind, "name": name,
                     "provider": {"type": "python", "module": "openbell.chaos.probes", "func": "slo_gate",
                                  "arguments": {"slo_paths": ["slo/"]}}},
        "output": output, "start": at(start), "status": status, "end": at(end), "duration": end - start,
    }
    if tolerance_met is not None:
        run["tolerance_met"] = tolerance_met
    if exception is not None:
        run["exception"] = exception
    return run


GATE_OK = {"ok": True, "outcome": "pass", "reasons": ["3 SLO series within their burn-rate thresholds"]}


GATE_BURNING = {"ok": False, "outcome": "fail",
                "reasons": ["gateway/gateway-edge-availability: page 1h/5m: burn rate 22.0x (long) and 22.0x (short) "
                            "exceed 14.4x (error ratio 1.0994% > 0.7200%)"]}


def hypothesis(met: bool, start: float, gate: dict[str, Any] | None = None) -> dict[str, Any]:
    gate = gate or (GATE_OK if met else GATE_BURNING)
    return {"steady_state_met": met,
            "probes": [activity_run("probe", "slo-gate-page", start, start + 0.2, gate, tolerance_met=met)]}


def make_journal(status: str = "completed", deviated: bool = False, before: dict[str, Any] | None = None,
                 after: dict[str, Any] | None = None, run: list[dict[str, Any]] | None = None,
                 rollbacks: list[dict[str, Any]] | None = None,
                 extensions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "chaoslib-version": "1.44.0", "platform": "Linux", "node": "ci",
        "experiment": {"title": "gateway replica loss", "description": "..."},
        "start": T0, "status": status, "deviated": deviated,
        "steady_states": {"before": before, "after": after, "during": []},
        "run": run if run is not None else [], "rollbacks": rollbacks if rollbacks is not None else [],
        "end": at(20.0), "duration": 20.0,
    }
    if extensions is not None:
        doc["extensions"] = extensions
    return doc


KILL = activity_run("action", "kill-9-gateway-1", 1.0, 1.1, {"component": "gateway-1", "pid": 4242})


RESTART = activity_run("action", "restart-gateway-1", 7.1, 8.0, {"component": "gateway-1", "up_s": 0.9})


HEAL = activity_run("action", "heal-sandbox", 9.0, 9.5, {"state": "up"})


def test_a_completed_run_whose_steady_state_held_passes_with_a_timeline_in_order() -> None:
    doc = make_journal(before=hypothesis(True, 0.0), after=hypothesis(True, 8.5), run=[KILL, RESTART],
                       rollbacks=[HEAL])
    reading = journal.read(doc)
    verdict, code = journal.judge(reading)
    assert (verdict.outcome, code) == ("pass", 0)
    assert [(s.phase, s.name) for s in reading.timeline] == [
        ("steady-state-before", "slo-gate-page"), ("method", "kill-9-gateway-1"), ("method", "restart-gateway-1"),
        ("steady-state-after", "slo-gate-page"), ("rollbacks", "heal-sandbox")]
    assert reading.timeline[2].duration_s == pytest.approx(0.9)
    assert reading.duration_s == pytest.approx(20.0)
    assert verdict.figures["steady_state_before"] is True and verdict.figures["activities"] == 2
    assert journal.timeline_json(reading)[1]["start"] == pytest.approx(reading.start + 1.0)  # type: ignore[operator]


def test_a_deviated_run_fails_naming_the_probe_and_its_reasons() -> None:
    doc = make_journal(deviated=True, before=hypothesis(True, 0.0), after=hypothesis(False, 8.5),
                       run=[KILL, RESTART], rollbacks=[HEAL])
    verdict, code = journal.judge(journal.read(doc))
    assert (verdict.outcome, code) == ("fail", 1)
    assert verdict.reasons[0].startswith("steady state deviated after the method: probe slo-gate-page: ")
    assert "burn rate 22.0x" in verdict.reasons[0]


def test_a_steady_state_failing_before_the_method_fails_though_chaos_called_it_completed() -> None:
    # chaoslib: status "completed", not deviated, no method run, and `chaos run` exits 0.
    doc = make_journal(status="completed", before=hypothesis(False, 0.0), run=[], rollbacks=[HEAL])
    verdict, code = journal.judge(journal.read(doc))
    assert (verdict.outcome, code) == ("fail", 1)
    assert "before the method (nothing was injected)" in verdict.reasons[0]
    assert "gateway-edge-availability" in verdict.reasons[0]


def test_a_probe_that_raised_before_the_method_fails_with_its_exception() -> None:
    probe = activity_run("probe", "every-component-healthy", 0.0, 0.1, status="failed", tolerance_met=False,
                         exception=["Traceback (most recent call last):\n", "  ...\n",
                                    "chaoslib.exceptions.ActivityFailed: UnreachableError: sandbox is not up\n"])
    doc = make_journal(status="failed", before={"steady_state_met": False, "probes": [probe]})
    verdict, code = journal.judge(journal.read(doc))
    assert code == 1
    assert "every-component-healthy: chaoslib.exceptions.ActivityFailed: UnreachableError" in verdict.reasons[0]


SAFEGUARD_TRIP = {
    "name": "openbell-slo-safeguard", "tripped": True, "refused": False, "phase": "method", "polls": 3,
    "reason": "page-severity burn during the method: " + GATE_BURNING["reasons"][0], "signalled_at": 1741012203.5,
    "trip": {"outcome": "fail", "burning": [{"slo": "gateway/gateway-edge-availability", "severity": "page",
                                             "long_window_s": 3600.0, "short_window_s": 300.0, "long_burn_rate": 22.0,
                                             "short_burn_rate": 22.0, "burn_rate_threshold": 14.4,
                                             "budget_remaining": -20.99}],
             "budget_remaining": {"gateway/gateway-edge-availability": -20.99}},
}


def test_an_interruption_by_the_safeguard_fails_with_the_slo_figures_that_tripped_it() -> None:
    doc = make_journal(status="interrupted", before=hypothesis(True, 0.0),
                       run=[activity_run("action", "kill-9-every-gateway", 1.0, 1.1)], rollbacks=[HEAL],
                       extensions=[SAFEGUARD_TRIP])
    reading = journal.read(doc)
    verdict, code = journal.judge(reading, interrupted_by_user=False)
    assert (verdict.outcome, code) == ("fail", 1)
    assert verdict.reasons[0].startswith("stopped by the SLO safeguard: page-severity burn during the method")
    guard = verdict.figures["safeguard"]
    assert guard["tripped"] and guard["phase"] == "method" and guard["polls"] == 3
    assert guard["burning"][0]["slo"] == "gateway/gateway-edge-availability"
    assert guard["burning"][0]["short_burn_rate"] > guard["burning"][0]["burn_rate_threshold"]
    assert [s.name for s in reading.timeline if s.phase == "rollbacks"] == ["heal-sandbox"]


def test_a_refusal_to_start_fails_without_a_method() -> None:
    record = {**SAFEGUARD_TRIP, "tripped": False, "refused": True, "phase": "before-experiment",
              "reason": "page-severity burn before the experiment: ..."}
    doc = make_journal(status="interrupted", run=[], rollbacks=[HEAL], extensions=[record])
    verdict, code = journal.judge(journal.read(doc))
    assert code == 1 and verdict.reasons[0].startswith("the SLO safeguard refused to start")
    assert verdict.figures["steady_state_before"] is None


def test_a_refusal_of_a_platform_already_burning_is_its_own_outcome_with_since_when() -> None:
    from openbell.chaos.runner import RunResult

    line = ("gateway/gateway-edge-availability: page 1h/5m: burn rate 22.0x (long) and 22.0x (short) exceed 14.4x; "
            "burning since 14:02:11Z (3m 10s ago); runbook runbooks/gateway-availability.md")
    record = {**SAFEGUARD_TRIP, "tripped": False, "refused": True, "phase": "before-experiment",
              "reason": f"unhealthy before the experiment: {line}",
              "unhealthy": [{"slo": "gateway/gateway-edge-availability", "since": 1741012011.0}]}
    doc = make_journal(status="interrupted", run=[], rollbacks=[HEAL], extensions=[record])
    verdict, code = journal.judge(journal.read(doc))
    assert code == 1
    assert verdict.reasons[0] == f"the SLO safeguard refused to start: unhealthy before the experiment: {line}"
    result = RunResult(experiment=None, verdict=verdict, exit_code=code, journal_path=Path("j"),  # type: ignore[arg-type]
                       log_path=Path("l"), reading=None)
    assert result.outcome == "unhealthy"
    plain = journal.judge(journal.read(make_journal(status="interrupted", run=[], rollbacks=[HEAL], extensions=[
        {**record, "unhealthy": [], "reason": "the SLO gate cannot see (inconclusive): no data"}])))[0]
    assert RunResult(None, plain, 1, Path("j"), Path("l"), None).outcome == "fail"  # type: ignore[arg-type]


def test_ctrl_c_is_exit_130_and_a_signal_from_elsewhere_is_a_failure() -> None:
    doc = make_journal(status="interrupted", before=hypothesis(True, 0.0), run=[KILL], rollbacks=[HEAL])
    assert journal.judge(journal.read(doc), interrupted_by_user=True)[1] == 130
    assert journal.judge(journal.read(doc), interrupted_by_user=False)[1] == 1


def test_a_failed_rollback_or_method_action_fails_an_otherwise_good_run() -> None:
    broken_heal = activity_run("action", "heal-sandbox", 9.0, 9.5, status="failed",
                               exception=["openbell.errors.UnreachableError: kafka exited during start-up\n"])
    doc = make_journal(before=hypothesis(True, 0.0), after=hypothesis(True, 8.5), run=[KILL], rollbacks=[broken_heal])
    verdict, code = journal.judge(journal.read(doc))
    assert code == 1 and "rollback heal-sandbox failed" in verdict.reasons[-1]
    assert "may not be restored" in verdict.reasons[-1]
    failed_kill = {**KILL, "status": "failed", "exception": ["ActionError: gateway-1 is not running\n"]}
    doc = make_journal(before=hypothesis(True, 0.0), after=hypothesis(True, 8.5), run=[failed_kill], rollbacks=[HEAL])
    verdict, code = journal.judge(journal.read(doc))
    assert code == 1 and verdict.reasons == ("action kill-9-gateway-1 failed in the method: ActionError: "
                                             "gateway-1 is not running",)


def test_junit_has_a_case_per_activity_and_for_the_steady_state_before_and_after() -> None:
    doc = make_journal(status="interrupted", before=hypothesis(True, 0.0),
                       run=[activity_run("action", "kill-9-every-gateway", 1.0, 1.1)], rollbacks=[HEAL],
                       extensions=[SAFEGUARD_TRIP])
    reading = journal.read(doc)
    verdict, _ = journal.judge(reading)
    cases = {c.name: c for c in journal.junit_cases(reading, verdict, "chaos.gateway-all-replicas-loss")}
    assert list(cases) == ["steady state before the method", "action: kill-9-every-gateway",
                           "rollback: heal-sandbox", "steady state after the method", "SLO safeguard", "experiment"]
    assert cases["steady state before the method"].outcome == "pass"
    assert cases["steady state after the method"].outcome == "skipped"
    assert cases["SLO safeguard"].outcome == "fail" and "burn rate 22.0x" in cases["SLO safeguard"].message
    assert cases["experiment"].outcome == "fail"
