"""The gameday plan (validation, one line naming the field) and the orchestrator's pure parts: how a child's
exit code and JSON become a phase outcome, its timeline events, the command lines, the schedule."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from openbell.commands.app import app
from openbell.errors import SpecError
from openbell.gameday.collect import final_outcomes
from openbell.gameday.plan import CanaryPhase, ChaosPhase, LoadPhase, SloPhase, check_references, load_plan, parse_plan
from openbell.gameday.runner import Gameday, PhaseRun, Where, child_events, judge_phase

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "gamedays" / "opening-bell.yaml"


def _doc() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT.read_text())


def test_the_default_plan_is_valid_and_resolves() -> None:
    plan = load_plan(DEFAULT)
    assert plan.name == "opening-bell"
    kinds = [p.kind for p in plan.phases]
    assert kinds == ["load", "canary", "chaos", "chaos", "slo"]
    assert plan.slo_paths == (ROOT / "slo",)
    load, canary = plan.phases[0].action, plan.phases[1].action
    assert isinstance(load, LoadPhase) and load.profile == "nyse-open" and load.thresholds == "report"
    assert isinstance(canary, CanaryPhase) and canary.steps == (10, 50, 100) and "{run}" in canary.version
    assert plan.phases[1].start.at_s == 52.0
    assert plan.phases[3].expected_burn == ("kafka-consumer-lag",)
    assert plan.phases[4].start.after == ("market-open", "kafka-broker-loss")
    check_references(plan, "sandbox", {"kafka-consumer-lag"}, ["nyse-open"],
                     ["gateway-replica-loss", "kafka-broker-loss"])


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "field", "expected"), [
    ("kind", "Rollout", "kind", "expected Gameday"),
    ("apiVersion", "v2", "apiVersion", "expected openbell/v1"),
    ("metadata.name", "Opening Bell", "metadata.name", "lowercase name"),
    ("spec.phases", [], "spec.phases", "non-empty list"),
    ("spec.gate.interval", "soon", "spec.gate.interval", "duration"),
    ("spec.gate.max_budget_consumed", 2, "spec.gate.max_budget_consumed", "(0, 1]"),
    ("spec.gate.severity", "sms", "spec.gate.severity", "page, ticket"),
    ("spec.phases.1.canary.hold", "long", "spec.phases[1].canary.hold", "duration"),
    ("spec.phases.1.canary.steps", [50, 10], "spec.phases[1].canary.steps", "increasing"),
    ("spec.phases.1.canary.steps", "10,50", "spec.phases[1].canary.steps", "list of whole percentages"),
    ("spec.phases.1.canary.version", "has space", "spec.phases[1].canary.version", "without spaces"),
    ("spec.phases.1.canary.sandbox_faults", {"error_rate": 2}, "spec.phases[1].canary.sandbox_faults", "0..1"),
    ("spec.phases.1.canary.colour", "blue", "spec.phases[1].canary.colour", "unknown field"),
    ("spec.phases.0.load.scale", -1, "spec.phases[0].load.scale", "number in"),
    ("spec.phases.0.load.thresholds", "ignore", "spec.phases[0].load.thresholds", "report, gate"),
    ("spec.phases.2.start", {"after": "nowhere"}, "spec.phases[2].start.after", "not an earlier phase"),
    ("spec.phases.2.start", {"after": "kafka-broker-loss"}, "spec.phases[2].start.after", "not an earlier phase"),
    ("spec.phases.2.start", {"at": "10s", "after": "market-open"}, "spec.phases[2].start", "not both"),
    ("spec.phases.2.name", "market-open", "spec.phases[2].name", "unique"),
    ("spec.phases.2.chaos", _DELETE, "spec.phases[2]", "exactly one of load, canary, chaos, slo"),
    ("spec.phases.4.slo.severity", "sms", "spec.phases[4].slo.severity", "page, ticket"),
    ("spec.phases.3.expected_burn", {"a": 1}, "spec.phases[3].expected_burn", "list of names"),
])
def test_a_malformed_plan_names_the_field(path: str, value: Any, field: str, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_plan(_set(_doc(), path, value), DEFAULT)
    assert err.value.field == field
    assert expected in err.value.expected
    assert str(err.value).startswith(str(DEFAULT))


def test_references_name_the_field() -> None:
    plan = load_plan(DEFAULT)
    with pytest.raises(SpecError, match=r"spec.phases\[0\].expected_burn: 'kafka-consumer-lag' is not an SLO"):
        check_references(plan, "sandbox", {"api-errors"}, ["nyse-open"], ["gateway-replica-loss", "kafka-broker-loss"])
    with pytest.raises(SpecError, match=r"spec.phases\[0\].load.profile: unknown profile 'nyse-open'"):
        check_references(plan, "sandbox", {"kafka-consumer-lag"}, ["soak"], ["gateway-replica-loss",
                                                                            "kafka-broker-loss"])
    with pytest.raises(SpecError, match=r"spec.phases\[2\].chaos.experiment: no kubernetes experiment"):
        check_references(plan, "kubernetes", {"kafka-consumer-lag"}, ["nyse-open"], ["gateway-pod-loss"])


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match="line 2: not valid YAML"):
        load_plan(bad)
    with pytest.raises(SpecError, match="cannot read the plan"):
        load_plan(tmp_path / "absent.yaml")


def test_the_command_exits_2_with_one_line_before_touching_anything(tmp_path: Path) -> None:
    plan = tmp_path / "gamedays" / "broken.yaml"
    plan.parent.mkdir()
    plan.write_text(yaml.safe_dump(_set(_doc(), "spec.phases.1.canary.hold", "forever")))
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "openbell", "gameday", "--plan", str(plan), "--home", str(home)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"openbell: {plan}: spec.phases[1].canary.hold: expected a duration such as 30d, 1h or 250ms, got 'forever'"]
    assert done.stdout == ""
    assert not home.exists()  # no sandbox was brought up for a plan that cannot run
    result = CliRunner().invoke(app, ["gameday", "--plan", str(tmp_path / "none.yaml")])
    assert isinstance(result.exception, SpecError) and result.exception.exit_code == 2


# -- outcomes --------------------------------------------------------------------------------------------------

def _phase(kind: str) -> Any:
    plan = load_plan(DEFAULT)
    return next(p for p in plan.phases if p.kind == kind)


def test_a_load_run_failing_only_on_k6_thresholds_passes_when_thresholds_are_reported() -> None:
    failed = {"verdict": {"outcome": "fail", "reasons": ["k6 threshold ws_push_latency_ms p(99)<50 failed"],
                          "figures": {"thresholds": [{"metric": "ws_push_latency_ms", "passed": False}]}}}
    outcome, reason = judge_phase(_phase("load"), 1, failed, None)
    assert outcome == "pass" and "reported, not gating" in reason
    gating = _phase("load")
    import dataclasses

    gating = dataclasses.replace(gating, action=dataclasses.replace(gating.action, thresholds="gate"))
    assert judge_phase(gating, 1, failed, None)[0] == "fail"


def test_canary_and_chaos_outcomes(tmp_path: Path) -> None:
    rolled = {"version": "rc-1", "outcome": "rolled_back", "step": 1, "weight": 10, "reason": "5% errors"}
    assert judge_phase(_phase("canary"), 1, rolled, None) == ("fail", "rolled back at step 1 (10%): 5% errors")
    assert judge_phase(_phase("canary"), 0, {"version": "rc-1", "reason": ""}, None)[0] == "pass"
    chaos = {"verdict": {"outcome": "fail", "reasons": ["steady state deviated after the method"]}}
    assert judge_phase(_phase("chaos"), 1, chaos, None) == ("fail", "steady state deviated after the method")
    log = tmp_path / "c.log"
    log.write_text("starting\nopenbell: target sandbox: it is not running\n")
    assert judge_phase(_phase("chaos"), 3, None, log) == ("error", "openbell: target sandbox: it is not running")
    assert judge_phase(_phase("chaos"), 130, None, None)[0] == "interrupted"
    assert judge_phase(_phase("chaos"), -9, None, None)[0] == "error"


def test_child_events_carry_the_canary_and_chaos_timelines() -> None:
    canary = {"timeline": [
        {"at": 100.0, "kind": "step", "message": "step 1/3: weight 10%"},
        {"at": 101.0, "kind": "poll", "message": "noise"},
        {"at": 110.0, "kind": "rollback", "message": "rolling back: 5% errors"}]}
    events = child_events(_phase("canary"), canary)
    assert [(e.kind, e.severity) for e in events] == [("step", "info"), ("rollback", "critical")]
    chaos = {"timeline": [
        {"phase": "steady-state-before", "type": "probe", "name": "slo-gate", "status": "succeeded",
         "start": "2026-11-22T12:00:00", "tolerance_met": True},
        {"phase": "method", "type": "action", "name": "kill-9-kafka", "status": "succeeded",
         "start": "2026-11-22T12:00:01"},
        {"phase": "rollbacks", "type": "action", "name": "restart-kafka", "status": "failed",
         "start": "2026-11-22T12:00:09"}],
        "verdict": {"figures": {"safeguard": {"tripped": True, "reason": "burning", "signalled_at": 1795000005.0}}}}
    events = child_events(_phase("chaos"), chaos)
    assert [(e.kind, e.severity) for e in events] == [("fault", "warning"), ("rollback", "critical"),
                                                      ("safeguard", "critical")]
    assert events[0].message == "method: kill-9-kafka (succeeded)"


# -- command lines and schedule -----------------------------------------------------------------------------

def _game(tmp_path: Path, target: str = "sandbox") -> Gameday:
    where = (Where("sandbox", "http://127.0.0.1:9090", tmp_path / "home") if target == "sandbox" else
             Where("kubernetes", "http://prom:9090", None, "https://trade.example.com", "staging", "openbell"))
    return Gameday(load_plan(DEFAULT), where, gate=None, run_id="R1", workdir=tmp_path)  # type: ignore[arg-type]


def test_phase_command_lines(tmp_path: Path) -> None:
    game = _game(tmp_path)
    plan = game.plan
    load = game.argv(plan.phases[0])
    assert load[3:] [:4] == ["--output", "json", "load", "run"][:4] or load[3:7] == ["--output", "json", "load", "run"]
    assert "--no-gate" in load and load[load.index("--target") + 1] == "sandbox"
    assert load[load.index("--time-scale") + 1] == "0.065"
    canary = game.argv(plan.phases[1])
    assert canary[canary.index("--version") + 1].startswith("rc-R1")
    assert canary[canary.index("--steps") + 1] == "10,50,100" and canary[canary.index("--hold") + 1] == "25s"
    chaos = game.argv(plan.phases[2])
    assert chaos[chaos.index("run") + 1] == "gateway-replica-loss" and "--context" not in chaos
    kube = _game(tmp_path, "kubernetes")
    k_load = kube.argv(plan.phases[0])
    assert k_load[k_load.index("--target") + 1] == "https://trade.example.com"
    assert k_load[k_load.index("--prometheus") + 1] == "http://prom:9090"
    k_chaos = kube.argv(plan.phases[2])
    assert k_chaos[k_chaos.index("--context") + 1] == "staging" and "--namespace" in k_chaos


def test_the_schedule(tmp_path: Path) -> None:
    game = _game(tmp_path)
    game.started_at = 1000.0
    game.runs = [PhaseRun(p) for p in game.plan.phases]
    load, canary, replica, broker, closing = game.runs
    assert game._due(load, 1000.0)
    assert not game._due(canary, 1051.0) and game._due(canary, 1052.0)
    assert not game._due(replica, 2000.0)  # the canary has not ended
    canary.state, canary.finished_at = "done", 1150.0
    assert not game._due(replica, 1154.0) and game._due(replica, 1155.0)  # 5 s delay
    replica.state, replica.finished_at = "done", 1180.0
    broker.state, broker.finished_at = "done", 1230.0
    assert not game._due(closing, 1300.0)  # the load still runs
    load.state, load.finished_at = "done", 1290.0
    assert game._due(closing, 1300.0)
    assert isinstance(closing.phase.action, SloPhase) and isinstance(broker.phase.action, ChaosPhase)


def test_final_outcomes_per_slo() -> None:
    from openbell.slo.loader import load_slos

    slos = load_slos([ROOT / "slo"])
    spend = [{"slo": s.name, "error_ratio": 0.0} for s in slos if s.name != "analytics-query-latency"]
    out = final_outcomes(["api/api-errors: page 1h/5m: burn rate 20x"], slos, spend)
    assert out["api-errors"] == "fail"
    assert out["analytics-query-latency"] == "inconclusive"
    assert out["gateway-push-latency"] == "pass"
