"""The rollout state machine (canary/machine.py) on plain values: steps, holds, gates, rollback, promotion."""

from __future__ import annotations

import pytest

from openbell.canary import machine
from openbell.canary.machine import Churn, Observation, Policy, Promote, RollBack, SetWeight

POLICY = Policy(steps=(10, 50, 100), hold_s=30, max_extension_s=20, inconclusive="fail", churn=True)


def started(policy: Policy = POLICY) -> machine.Rollout:
    rollout = machine.start("gateway", "v2", "sandbox", policy, now=1000.0, baseline_version="v1")
    rollout, actions = machine.canary_ready(rollout, 1001.0)
    assert actions == [SetWeight(10), Churn(10)]
    return rollout


def test_a_healthy_rollout_walks_every_step_then_promotes() -> None:
    rollout = started()
    t = 1001.0
    for weight in (10, 50, 100):
        assert rollout.phase == "progressing" and rollout.weight == weight
        held, actions = machine.advance(rollout, Observation(t + 10, "pass", "pass"))
        assert held == rollout and actions == []  # still holding
        rollout, actions = machine.advance(rollout, Observation(t + 30, "pass", "pass"))
        t += 30
        if weight != 100:
            assert actions == [SetWeight(rollout.weight), Churn(rollout.weight)]
    assert rollout.phase == "promoting" and actions == [Promote()]
    done = machine.completed(rollout, t + 5, "verified")
    assert done.phase == "promoted" and done.weight == 0 and done.finished_at == t + 5
    assert machine.exit_code(done) == 0
    assert [e.kind for e in done.events].count("step") == 3


@pytest.mark.parametrize("slo,judge,named", [("fail", "pass", "SLO burn"), ("pass", "fail", "judge"),
                                             ("fail", "inconclusive", "SLO burn")])
def test_a_failing_gate_rolls_back_at_once_mid_hold(slo: str, judge: str, named: str) -> None:
    rollout = started()
    rollout, actions = machine.advance(rollout, Observation(1003.0, slo, judge, ("burn 20x",)))  # type: ignore[arg-type]
    assert rollout.phase == "rolling_back" and isinstance(actions[0], RollBack)
    assert named in rollout.reason and "step 1 (10%)" in rollout.reason and "burn 20x" in rollout.reason
    done = machine.completed(rollout, 1005.0)
    assert done.phase == "rolled_back" and machine.exit_code(done) == 1


def test_inconclusive_extends_the_hold_once_then_follows_the_policy() -> None:
    rollout = started()
    rollout, actions = machine.advance(rollout, Observation(1031.0, "pass", "inconclusive", ("too few",)))
    assert rollout.extended and actions == [] and rollout.events[-1].kind == "extend"
    again, actions = machine.advance(rollout, Observation(1040.0, "pass", "inconclusive"))
    assert again == rollout  # extended once, logged once
    failed, actions = machine.advance(rollout, Observation(1052.0, "pass", "inconclusive", ("too few",)))
    assert failed.phase == "rolling_back" and "inconclusive" in failed.reason
    lenient = started(Policy(steps=(10, 100), hold_s=30, max_extension_s=20, inconclusive="pass"))
    lenient, _ = machine.advance(lenient, Observation(1031.0, "pass", "inconclusive"))
    lenient, actions = machine.advance(lenient, Observation(1052.0, "pass", "inconclusive"))
    assert lenient.phase == "progressing" and lenient.weight == 100 and SetWeight(100) in actions


def test_a_pass_after_an_extension_moves_on() -> None:
    rollout = started()
    rollout, _ = machine.advance(rollout, Observation(1031.0, "pass", "inconclusive"))
    rollout, actions = machine.advance(rollout, Observation(1040.0, "pass", "pass"))
    assert rollout.weight == 50 and actions == [SetWeight(50), Churn(50)]
    assert rollout.weight == 50 and not rollout.extended


def test_operator_requests_promote_or_abort() -> None:
    rollout, actions = machine.advance(started(), Observation(1002.0, "pass", "pass", request="promote"))
    assert rollout.phase == "promoting" and actions == [Promote()]
    rollout, actions = machine.advance(started(), Observation(1002.0, "pass", "pass", request="abort"))
    assert rollout.phase == "rolling_back" and "operator" in rollout.reason
    # A failing gate wins over a promotion request.
    rollout, actions = machine.advance(started(), Observation(1002.0, "fail", "pass", request="promote"))
    assert rollout.phase == "rolling_back"


def test_resume_restarts_the_hold_and_redoes_unfinished_endings() -> None:
    rollout = started()
    resumed, actions = machine.resumed(rollout, 2000.0)
    assert resumed.step_started_at == 2000.0 and actions == [SetWeight(10), Churn(10)]
    rolling, _ = machine.advance(rollout, Observation(1002.0, "fail", "pass"))
    again, actions = machine.resumed(rolling, 2000.0)
    assert again.phase == "rolling_back" and isinstance(actions[0], RollBack)
    aborted, actions = machine.abort(rolling, 2001.0)
    assert aborted.phase == "rolling_back" and isinstance(actions[0], RollBack)
    done = machine.completed(aborted, 2002.0)
    assert machine.abort(done, 2003.0) == (done, [])


def test_an_abort_during_a_promotion_finishes_it_and_an_unverified_end_fails() -> None:
    rollout, _ = machine.advance(started(), Observation(1002.0, "pass", "pass", request="promote"))
    assert rollout.phase == "promoting"
    finishing, actions = machine.abort(rollout, 1003.0, "interrupted")
    assert finishing.phase == "promoting" and actions == [Promote()]
    done = machine.completed(finishing, 1010.0, "NOT verified")
    assert machine.exit_code(done) == 0
    unverified = done.log(1010.0, "verify", "end state not verified: 2 sessions on the canary")
    assert machine.exit_code(unverified) == 1 and not machine.verified(unverified)


def test_rollouts_survive_their_json_round_trip() -> None:
    rollout, _ = machine.advance(started(), Observation(1031.0, "pass", "inconclusive"))
    assert machine.Rollout.from_dict(rollout.to_dict()) == rollout


@pytest.mark.parametrize("steps,ok", [((10, 25, 50, 100), True), ((100,), True), ((), False), ((10, 10), False),
                                      ((50, 25), False), ((0, 50), False), ((10, 101), False)])
def test_steps_must_be_increasing_percentages(steps: tuple[int, ...], ok: bool) -> None:
    assert (machine.check_steps(steps) is None) == ok


SEQUENTIAL = Policy(steps=(10, 50, 100), hold_s=30, max_extension_s=20, inconclusive="fail", judge="sequential",
                    min_hold_s=5)


def test_the_sequential_judge_ends_a_step_once_shown_non_inferior_but_not_before_the_minimum_hold() -> None:
    rollout = started(SEQUENTIAL)
    assert "hold 5-30s, sequential judge (alpha 0.01" in rollout.events[0].message
    early, actions = machine.advance(rollout, Observation(1004.0, "pass", "pass", evidence="non-inferior on 3"))
    assert early == rollout and actions == []  # shown, but the minimum hold is not over
    waiting, actions = machine.advance(rollout, Observation(1010.0, "pass", "inconclusive", ("not yet",)))
    assert waiting == rollout and actions == []  # not yet shown: the step holds on, up to its maximum
    moved, actions = machine.advance(rollout, Observation(1012.0, "pass", "pass", evidence="non-inferior on 3"))
    assert moved.weight == 50 and actions == [SetWeight(50), Churn(50)]
    gate = [e for e in moved.events if e.kind == "gate"][-1]
    assert gate.message == "step 1 shown non-inferior after 11s: non-inferior on 3"
    # Not shown by the maximum hold: the extension and the inconclusive policy, as with the fixed judge.
    extended, _ = machine.advance(moved, Observation(1043.0, "pass", "inconclusive", ("not yet",)))
    assert extended.extended and extended.events[-1].kind == "extend"
    # Shown worse: rolled back at once, minimum hold or not.
    worse, actions = machine.advance(moved, Observation(1013.0, "pass", "fail", ("errors: canary worse",)))
    assert worse.phase == "rolling_back" and isinstance(actions[0], RollBack)


def test_a_policy_round_trips_with_its_judge_and_an_old_record_reads_as_fixed() -> None:
    assert Policy.from_dict(SEQUENTIAL.to_dict()) == SEQUENTIAL
    old = {k: v for k, v in POLICY.to_dict().items()
           if k not in ("judge", "min_hold_s", "alpha", "latency_tolerance", "error_tolerance")}
    assert Policy.from_dict(old) == POLICY and POLICY.judge == "fixed" and POLICY.earliest_s == 30
    assert machine.check_judge(0.01, 0.5, 0.05) is None
    assert "alpha" in (machine.check_judge(0.0, 0.5, 0.05) or "")
    assert "error tolerance" in (machine.check_judge(0.01, 0.5, 1.5) or "")
