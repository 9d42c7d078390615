"""The gameday orchestrator (gameday/runner.py): its children's command lines and results, and the loop
with real child processes (short Python programs standing in for the tools)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from openbell.gameday.plan import ChaosPhase, SloPhase, load_plan
from openbell.gameday.runner import Gameday, PhaseRun, Where, child_events, judge_phase
from tests.unit.test_gameday_plan import DEFAULT

ROOT = Path(__file__).resolve().parents[2]


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
         "start": 1795000000.0, "tolerance_met": True},
        {"phase": "method", "type": "action", "name": "kill-9-kafka", "status": "succeeded",
         "start": 1795000001.0},
        {"phase": "rollbacks", "type": "action", "name": "restart-kafka", "status": "failed",
         "start": 1795000009.0}],
        "verdict": {"figures": {"safeguard": {"tripped": True, "reason": "burning", "signalled_at": 1795000005.0}}}}
    events = child_events(_phase("chaos"), chaos)
    assert [(e.kind, e.severity) for e in events] == [("fault", "warning"), ("rollback", "critical"),
                                                      ("safeguard", "critical")]
    assert events[0].message == "method: kill-9-kafka (succeeded)"


def _game(tmp_path: Path, target: str = "sandbox") -> Gameday:
    where = (Where("sandbox", "http://127.0.0.1:9090", tmp_path / "home") if target == "sandbox" else
             Where("kubernetes", "http://prom:9090", None, "https://trade.example.com", "staging", "openbell"))
    return Gameday(load_plan(DEFAULT), where, gate=None, run_id="R1", workdir=tmp_path)  # type: ignore[arg-type]


def test_phase_command_lines(tmp_path: Path) -> None:
    game = _game(tmp_path)
    plan = game.plan
    load = game.argv(plan.phases[0])
    assert load[3:7] == ["--output", "json", "load", "run"]
    assert "--no-gate" in load and load[load.index("--target") + 1] == "sandbox"
    assert load[load.index("--time-scale") + 1] == "0.05"
    canary = game.argv(plan.phases[1])
    assert canary[canary.index("--version") + 1].startswith("rc-R1")
    assert canary[canary.index("--steps") + 1] == "10,50,100" and canary[canary.index("--hold") + 1] == "25s"
    assert canary[canary.index("--probe-rate") + 1] == "5"
    assert canary[canary.index("--judge") + 1] == "sequential" and canary[canary.index("--min-hold") + 1] == "5s"
    assert canary[canary.index("--alpha") + 1] == "0.01" and "--tolerance" not in canary  # the CLI's defaults
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
    assert not game._due(canary, 1039.0) and game._due(canary, 1040.0)
    assert not game._due(replica, 2000.0)  # the canary has not ended
    canary.state, canary.finished_at = "done", 1150.0
    assert not game._due(replica, 1154.0) and game._due(replica, 1155.0)  # 5 s delay
    replica.state, replica.finished_at = "done", 1180.0
    broker.state, broker.finished_at = "done", 1230.0
    assert not game._due(closing, 1300.0)  # the load still runs
    load.state, load.finished_at = "done", 1290.0
    assert game._due(closing, 1300.0)
    assert isinstance(closing.phase.action, SloPhase) and isinstance(broker.phase.action, ChaosPhase)


class _Gate:
    """A stand-in for the SLO gate (the real one needs Prometheus: tests/scenario covers it): always passes."""

    started_at = 0.0
    burning: ClassVar[list[Any]] = []

    def preflight(self, now: float) -> list[Any]:
        return list(self.burning)

    def check(self, now: float, expected: set[str], severity: str | None = None) -> Any:
        from openbell.slo.verdict import Verdict

        return Verdict("pass", ("ok",), {"spend": []})


class _Scripted(Gameday):
    """Each phase runs a Python one-liner instead of an openbell command."""

    scripts: ClassVar[dict[str, str]] = {}

    def argv(self, phase: Any) -> list[str]:
        return [sys.executable, "-c", self.scripts[phase.name]]


_SLEEP_THEN_STOP = ("import signal, sys, time, json\n"
                    "def stop(*a):\n    print(json.dumps({'verdict': {'reasons': ['stopped']}})); sys.exit(130)\n"
                    "signal.signal(signal.SIGINT, stop)\ntime.sleep(30)")


def _scripted(tmp_path: Path, scripts: dict[str, str]) -> _Scripted:
    import time as _time

    gate = _Gate()
    gate.started_at = _time.time()
    game = _Scripted(load_plan(DEFAULT), Where("sandbox", "http://127.0.0.1:1", tmp_path), gate=gate,  # type: ignore[arg-type]
                     run_id="T", workdir=tmp_path, poll_s=0.05, grace_s=2.0)
    game.scripts = scripts
    return game


def test_a_failing_phase_stops_the_running_ones_and_skips_the_rest(tmp_path: Path) -> None:
    import dataclasses
    import time as _time

    game = _scripted(tmp_path, {
        "market-open": _SLEEP_THEN_STOP,
        "canary-at-the-bell": "import json, sys; print(json.dumps({'step': 1, 'weight': 10, 'reason': 'bad'}));"
                              " sys.exit(1)"})
    plan = game.plan
    phases = list(plan.phases)
    phases[1] = dataclasses.replace(phases[1], start=dataclasses.replace(phases[1].start, at_s=0.3))
    game.plan = dataclasses.replace(plan, phases=tuple(phases))
    started = _time.monotonic()
    outcome = game.run()
    assert _time.monotonic() - started < 10
    assert outcome.verdict == "fail" and outcome.exit_code == 1
    assert outcome.reason == "canary-at-the-bell failed: rolled back at step 1 (10%): bad"
    got = {r.phase.name: r.outcome for r in game.runs}
    assert got == {"market-open": "stopped", "canary-at-the-bell": "fail", "gateway-replica-loss": "not_run",
                   "kafka-broker-loss": "not_run", "closing-budget": "not_run"}
    assert all(r.proc is None or r.proc.poll() is not None for r in game.runs)


def test_a_platform_burning_before_the_gameday_ends_it_at_once_with_what_burns_and_since_when(
        tmp_path: Path) -> None:
    import time as _time

    from openbell.slo.burning import Burning

    marker = tmp_path / "started"
    game = _scripted(tmp_path, {name: f"open({str(marker)!r}, 'w')" for name in
                                ("market-open", "canary-at-the-bell", "gateway-replica-loss", "kafka-broker-loss")})
    burning = Burning("gateway/gateway-push-latency{exchange=XLON}", "page 6h/30m: burn rate 7.1x (long) and 7.1x "
                      "(short) exceed 6x", _time.time() - 125, "runbooks/gateway-push-latency.md", "A")
    game.gate = type("Burning", (_Gate,), {"burning": [burning]})()  # type: ignore[assignment]
    started = _time.monotonic()
    outcome = game.run()
    assert _time.monotonic() - started < 2
    assert (outcome.verdict, outcome.exit_code) == ("unhealthy", 1)
    assert outcome.reason.startswith("unhealthy before the gameday: gateway/gateway-push-latency{exchange=XLON}: page")
    assert "burning since" in outcome.reason and "(2m 5s ago)" in outcome.reason
    assert outcome.reason.endswith("runbook runbooks/gateway-push-latency.md")
    assert {r.outcome for r in game.runs} == {"not_run"} and not marker.exists()
    assert [e.kind for e in game.events] == ["gameday-start", "unhealthy", "gameday-end"]


class _BurnsDuringTheCanary(_Gate):
    """A stand-in gate that fails on api-errors (an SLO the gateway canary is gated on) once the canary runs."""

    from openbell.slo.loader import load_slos as _load

    slos: ClassVar[list[Any]] = _load([ROOT / "slo"])
    burns_from = 0.0

    def check(self, now: float, expected: set[str], severity: str | None = None) -> Any:
        from openbell.slo.verdict import Verdict

        if now < self.burns_from:
            return Verdict("pass", ("ok",), {"spend": []})
        return Verdict("fail", ("api/api-errors: page 6h/30m: burn rate 11.4x (long) and 11.4x (short) exceed 6x",),
                       {"spend": [], "failing": ["api-errors"]})


def _burning_during_the_canary(tmp_path: Path, canary: str) -> Gameday:
    """The default plan with the canary at 0.2 s running `canary`, the gate asked every 0.3 s, and api-errors
    burning from 0.6 s on."""
    import dataclasses

    game = _scripted(tmp_path, {"market-open": _SLEEP_THEN_STOP, "canary-at-the-bell": canary})
    game.gate = _BurnsDuringTheCanary()  # type: ignore[assignment]
    game.gate.burns_from = time.time() + 0.6  # type: ignore[attr-defined]
    phases = list(game.plan.phases)
    phases[1] = dataclasses.replace(phases[1], start=dataclasses.replace(phases[1].start, at_s=0.2),
                                    action=dataclasses.replace(phases[1].action, interval_s=0.2))
    game.plan = dataclasses.replace(game.plan, phases=tuple(phases),
                                    gate=dataclasses.replace(game.plan.gate, interval_s=0.3))
    return game


def test_a_burn_of_the_canarys_own_slos_is_left_to_the_canary_which_the_gameday_then_fails_for(
        tmp_path: Path) -> None:
    rolled_back = ("import json, sys, time; time.sleep(1.5); print(json.dumps({'step': 1, 'policy': {'steps': [10]}, "
                   "'reason': 'api/api-errors: canary burns its budget'})); sys.exit(1)")
    game = _burning_during_the_canary(tmp_path, rolled_back)
    outcome = game.run()
    assert outcome.verdict == "fail"
    assert outcome.reason == ("canary-at-the-bell failed: rolled back at step 1 (10%): api/api-errors: canary burns "
                              "its budget")
    waiting = [e for e in game.events if e.kind == "gate" and e.severity == "warning"]
    assert waiting and "its own gates have" in waiting[0].message


def test_a_canary_that_does_not_act_on_its_slos_burn_is_stopped_after_the_grace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openbell.gameday import runner

    monkeypatch.setattr(runner, "CANARY_GRACE_MIN_S", 1.0)
    game = _burning_during_the_canary(tmp_path, _SLEEP_THEN_STOP)
    outcome = game.run()
    assert outcome.verdict == "fail" and outcome.reason.startswith("SLO gate: api/api-errors")
    assert {r.phase.name: r.outcome for r in game.runs}["canary-at-the-bell"] == "stopped"


def test_a_phase_that_ignores_sigint_is_killed_with_its_children(tmp_path: Path) -> None:
    import dataclasses

    stubborn = ("import signal, subprocess, sys, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
                "start_new_session=True)\nopen(sys.argv[0] if False else 'child.pid', 'w').write(str(child.pid))\n"
                "time.sleep(60)")
    game = _scripted(tmp_path, {"market-open": stubborn, "canary-at-the-bell": "import sys; sys.exit(3)"})
    phases = list(game.plan.phases)
    phases[1] = dataclasses.replace(phases[1], start=dataclasses.replace(phases[1].start, at_s=0.5))
    game.plan = dataclasses.replace(game.plan, phases=tuple(phases))
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        outcome = game.run()
    finally:
        os.chdir(cwd)
    assert outcome.verdict == "error" and outcome.exit_code == 3
    assert any(e.kind == "kill" for e in game.events)
    grandchild = int((tmp_path / "child.pid").read_text())
    import time as _time

    _time.sleep(0.2)
    state = Path(f"/proc/{grandchild}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_ctrl_c_stops_every_phase_and_ends_interrupted(tmp_path: Path) -> None:
    import os
    import threading

    # The runner must restore the handler it found. Start from Python's own: a process started in the background
    # by a non-interactive shell (as a CI job may start the suite) begins with SIGINT ignored, and Python keeps
    # that, so the runner rightly restores SIG_IGN there (issue 18's note took it for an earlier test's leak).
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    slow_rollback = _SLEEP_THEN_STOP.replace("def stop(*a):\n", "def stop(*a):\n    time.sleep(1.5)\n")
    game = _scripted(tmp_path, {"market-open": slow_rollback})
    first = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    second = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))  # during the rollback: ignored
    first.start()
    second.start()
    outcome = game.run()
    first.join()
    second.join()
    assert outcome.verdict == "interrupted" and outcome.exit_code == 130
    assert {r.phase.name: r.outcome for r in game.runs}["market-open"] == "interrupted"
    restored = signal.signal(signal.SIGINT, found)
    assert restored is signal.default_int_handler
