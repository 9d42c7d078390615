"""The gameday's pure core (gameday/core.py) on plain values: no process, no clock, no Prometheus. The default
plan: market-open load at 0 s, the canary at 40 s, replica loss after the canary (+5 s), broker loss after the
replica loss, and the closing SLO check after everything."""

from __future__ import annotations

from pathlib import Path

from openbell.canary.result import CanaryResult
from openbell.gameday import core
from openbell.gameday.plan import load_plan
from openbell.load.result import LoadResult
from openbell.slo.verdict import Verdict

ROOT = Path(__file__).resolve().parents[2]
PLAN = load_plan(ROOT / "gamedays" / "opening-bell.yaml")
T0 = 1000.0
PASS = Verdict("pass", ("ok",), {"spend": []})


def _begin(**policy: object) -> core.State:
    return core.begin(PLAN, core.Policy(**policy), T0, T0)  # type: ignore[arg-type]


def _step(state: core.State, now: float, **seen: object) -> tuple[core.State, list[core.Action]]:
    """A step, with the gate's question answered at once (as the runner does) by `PASS`."""
    state, actions = core.step(state, now, core.Seen(**seen))  # type: ignore[arg-type]
    done = [a for a in actions if not isinstance(a, core.AskGate)]
    while asked := [a for a in actions if isinstance(a, core.AskGate)]:
        state, actions = core.step(state, now, core.Seen(gate=PASS, gate_for=asked[0].phase,
                                                         alive=seen.get("alive", ())))  # type: ignore[arg-type]
        done += [a for a in actions if not isinstance(a, core.AskGate)]
    return state, done


def _kinds(actions: list[core.Action]) -> list[tuple[str, str]]:
    return [(type(a).__name__, getattr(a, "name", "")) for a in actions if not isinstance(a, core.Record)]


def test_the_first_step_asks_the_gate_then_starts_what_is_due() -> None:
    state, actions = core.step(_begin(), T0, core.Seen())
    assert actions == [core.AskGate()]  # asked first; nothing starts before its answer
    state, actions = core.step(state, T0, core.Seen(gate=PASS))
    assert _kinds(actions) == [("Start", "market-open")]
    assert state.phase("market-open").state == "running" and state.next_gate_at == T0 + PLAN.gate.interval_s
    _, actions = _step(state, T0 + 39.0, alive={"market-open"})
    assert _kinds(actions) == []
    _, actions = _step(state, T0 + 40.0, alive={"market-open"})
    assert _kinds(actions) == [("Start", "canary-at-the-bell")]


def test_a_failed_phase_stops_the_rest_with_one_sigint_each_then_kills_after_the_grace() -> None:
    state, _ = _step(_begin(grace_s=10.0), T0)
    state, _ = _step(state, T0 + 40.0, alive={"market-open"})
    rolled_back = CanaryResult(step=1, policy={"steps": [10]}, reason="bad")
    state, actions = _step(state, T0 + 60.0, alive={"market-open"},
                           exited={"canary-at-the-bell": core.Exited(1, rolled_back)})
    assert state.stopping == "canary-at-the-bell failed: rolled back at step 1 (10%): bad"
    assert _kinds(actions) == [("Interrupt", "market-open")]
    assert {p.phase.name: p.outcome for p in state.phases if p.state == "done"} == {
        "canary-at-the-bell": "fail", "gateway-replica-loss": "not_run", "kafka-broker-loss": "not_run",
        "closing-budget": "not_run"}
    _, actions = _step(state, T0 + 65.0, alive={"market-open"})
    assert _kinds(actions) == []  # within the grace: waiting for its rollback
    state, actions = _step(state, T0 + 70.5, alive={"market-open"})
    assert _kinds(actions) == [("Kill", "market-open")] and actions[-1] == core.Kill("market-open", False)
    state, _ = _step(state, T0 + 71.0, exited={"market-open": core.Exited(-9, None, "killed")})
    assert state.done and state.phase("market-open").outcome == "error"
    out = core.outcome(state)
    assert (out.verdict, out.exit_code) == ("error", 1)


def test_ctrl_c_stops_everything_and_the_gameday_ends_interrupted() -> None:
    state, _ = _step(_begin(), T0)
    state, actions = _step(state, T0 + 1.0, interrupted=True, alive={"market-open"})
    assert state.interrupted and _kinds(actions) == [("Interrupt", "market-open")]
    state, _ = _step(state, T0 + 2.0, exited={"market-open": core.Exited(130, LoadResult())})
    assert state.phase("market-open").outcome == "interrupted" and state.done
    assert core.outcome(state).exit_code == 130


def test_a_burn_of_the_canarys_own_slo_waits_for_the_canary_then_stops_the_gameday() -> None:
    state, _ = _step(_begin(canary_grace_min_s=8.0, canary_slos={"canary-at-the-bell": frozenset({"api-errors"})}),
                     T0)
    state, _ = _step(state, T0 + 40.0, alive={"market-open"})
    burning = Verdict("fail", ("api/api-errors: burn",), {"failing": ["api-errors"]})
    alive = {"market-open", "canary-at-the-bell"}
    state, actions = core.step(state, T0 + 41.0, core.Seen(gate=burning, alive=alive))
    assert not state.stopping and state.canary_grace_until == T0 + 41.0 + 8.0
    assert [a.event.kind for a in actions if isinstance(a, core.Record)] == ["gate"]
    state, _ = core.step(state, T0 + 50.0, core.Seen(gate=burning, alive=alive))
    assert state.stopping == "SLO gate: api/api-errors: burn"
    # A burn of an SLO the canary is not gated on stops the gameday at once.
    other, _ = core.step(_step(_step(_begin(), T0)[0], T0 + 40.0, alive={"market-open"})[0], T0 + 41.0,
                         core.Seen(gate=Verdict("fail", ("lag",), {"failing": ["kafka-consumer-lag"]}), alive=alive))
    assert other.stopping == "SLO gate: lag"


def test_the_closing_slo_phase_is_the_gates_answer_at_its_severity() -> None:
    state = _begin()
    phases = {p.phase.name: p for p in state.phases}
    ended = {n: core.PhaseState(p.phase, state="done", outcome="pass", started_at=T0, finished_at=T0 + 100.0)
             for n, p in phases.items() if n != "closing-budget"}
    state = core.State(PLAN, state.policy, T0, T0 + 1e9, tuple(ended.get(p.phase.name, p) for p in state.phases))
    state, actions = core.step(state, T0 + 200.0, core.Seen())
    severity = PLAN.phases[-1].action.severity  # type: ignore[union-attr]
    assert actions[-1] == core.AskGate(severity, "closing-budget")
    assert state.phase("closing-budget").state == "running"  # until the answer comes
    burning = Verdict("fail", ("lag burns",), {"spend": [], "notes": []})
    state, _ = core.step(state, T0 + 200.0, core.Seen(gate=burning, gate_for="closing-budget"))
    closing = state.phase("closing-budget")
    assert (closing.outcome, closing.exit_code, closing.reason) == ("fail", 1, "lag burns")
    assert state.done and core.outcome(state).reason == "closing-budget: lag burns"


def test_a_platform_burning_before_is_refused_and_nothing_runs() -> None:
    state = core.begin(PLAN, core.Policy(), T0, T0, ["svc/lag: burning since 09:00Z"])
    state, _ = core.refuse(state, ["svc/lag: burning since 09:00Z"], T0)
    assert state.done and {p.outcome for p in state.phases} == {"not_run"}
    out = core.outcome(state)
    assert (out.verdict, out.exit_code) == ("unhealthy", 1) and state.gate_checks[0]["outcome"] == "fail"
