"""The canary's pure parts on plain values: state machine, judge statistics, SLO scoping, spans, the run store."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openbell.canary import machine
from openbell.canary.judge import JudgeMetric, binomial_sf, decide_scoped, judge_metric, mann_whitney, ranks
from openbell.canary.machine import Churn, Observation, Policy, Promote, RollBack, SetWeight
from openbell.slo.loader import load_slos
from openbell.slo.promql import error_ratio
from openbell.slo.scope import inject, scope, selects_job
from openbell.targets.base import RunConflict
from openbell.targets.sandbox import SandboxRunStore, parse_faults

ROOT = Path(__file__).resolve().parents[2]
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


def test_ranks_average_ties() -> None:
    assert ranks([10.0, 20.0, 20.0, 5.0]) == [2.0, 3.5, 3.5, 1.0]


def test_mann_whitney_matches_the_textbook() -> None:
    low, high = [float(v) for v in range(1, 9)], [float(v) for v in range(9, 17)]
    test = mann_whitney(low, high)
    # n1 = n2 = 8, U = 0: z = (32 - 0.5) / sqrt(8*8*17/12) = 3.308, one-sided p = 4.70e-4 (scipy agrees).
    assert test.u == 0.0 and test.p_less == pytest.approx(4.695e-4, rel=1e-3) and test.p_greater > 0.99
    assert test.shift == -8.0
    assert mann_whitney([1.0] * 5, [1.0] * 9).p_greater == 1.0  # all tied: no evidence


LATENCY = JudgeMetric("push_latency_mean", "q", "ms", relative_tolerance=0.25, absolute_tolerance=5.0, min_samples=8)


def test_the_judge_needs_samples_significance_and_effect() -> None:
    stable = [4.0 + 0.1 * (i % 7) for i in range(20)]
    assert judge_metric(LATENCY, [90.0] * 5, stable).outcome == "inconclusive"
    worse = judge_metric(LATENCY, [85.0 + (i % 3) for i in range(10)], stable)
    assert worse.outcome == "fail" and worse.p_value is not None and worse.p_value < 1e-3 and "worse" in worse.reason
    # Significant but harmless: +1 ms on 4 ms is under the 5 ms absolute tolerance.
    slight = judge_metric(LATENCY, [5.0 + 0.1 * (i % 7) for i in range(20)], stable)
    assert slight.outcome == "pass" and slight.p_value is not None and slight.p_value < 1e-3
    nan = judge_metric(LATENCY, [math.nan] * 20, stable)
    assert nan.outcome == "inconclusive" and nan.canary_samples == 0


def test_binomial_tail_is_exact_on_small_cases() -> None:
    assert binomial_sf(0, 10, 0.3) == 1.0
    assert binomial_sf(11, 10, 0.3) == 0.0
    assert binomial_sf(10, 10, 0.5) == pytest.approx(0.5 ** 10)
    assert binomial_sf(2, 3, 0.5) == pytest.approx(0.5)
    assert binomial_sf(2, 67, 0.00144) == pytest.approx(0.0043, rel=0.05)


def slos() -> dict[str, object]:
    return {s.name: s for s in load_slos([ROOT / "slo"])}


def test_a_canary_burning_far_above_the_page_threshold_fails_on_few_events() -> None:
    api = load_slos([ROOT / "slo" / "api-errors.yaml"])[0]  # 99.99%: slowest page threshold 6x, 0.06%
    # A 5% error canary probed at 5 requests a second: its second error is evidence (p < 0.01).
    assert decide_scoped("api", api, 25, 2 / 122, 122, stable_ratio=0.0).outcome == "fail"
    assert decide_scoped("api", api, 20, 3 / 60, 60).outcome == "fail"
    assert decide_scoped("api", api, 20, 0.0, 60).outcome == "pass"
    assert decide_scoped("api", api, 20, 1 / 60, 60).outcome == "pass"  # one error: not yet evidence
    assert decide_scoped("api", api, 20, None, 0).outcome is None
    # The whole platform burning alike is the fleet gate's business, not the canary's fault.
    alike = decide_scoped("api", api, 20, 3 / 60, 60, stable_ratio=0.04)
    assert alike.outcome == "pass" and "not the canary's doing" in alike.reason
    assert decide_scoped("api", api, 20, 3 / 60, 60, stable_ratio=0.001).outcome == "fail"


def test_scoping_adds_the_matcher_to_every_selector() -> None:
    expr = 'sum(rate(gateway_ws_handshakes_total{job="gateway", result="error"}[{{.window}}]))'
    assert inject(expr, 'role="canary"') == (
        'sum(rate(gateway_ws_handshakes_total{job="gateway", result="error", role="canary"}[{{.window}}]))')
    assert inject("sum(rate(x[5m])) / sum by (le) (rate(y{}[5m]))", 'r="c"') == (
        'sum(rate(x{r="c"}[5m])) / sum by (le) (rate(y{r="c"}[5m]))')
    assert inject("1 - avg(up)", 'r="c"') is None
    assert inject('sum(rate({__name__="x"}[5m]))', 'r="c"') is None
    assert inject('sum(rate(x{route=~"/v1/{id}"}[5m]))', 'r="c"') is None
    by_name = {s.name: s for s in load_slos([ROOT / "slo"])}
    latency = scope(by_name["gateway-push-latency"], 'role="canary"')
    assert latency is not None and 'role="canary"' in error_ratio(latency, 60)
    availability = scope(by_name["gateway-availability"], 'role="canary"')
    assert availability is not None and error_ratio(availability, 60).count('role="canary"') == 3
    assert selects_job(by_name["api-errors"], "gateway") and selects_job(by_name["gateway-availability"], "gateway")
    assert not selects_job(by_name["ledger-write-availability"], "gateway")


def test_sandbox_faults_are_validated() -> None:
    assert parse_faults(["error_rate=0.05", "latency_ms=80"]) == {"error_rate": "0.05", "latency_ms": "80"}
    for bad in ("error_rate=2", "latency_ms=-1", "latency=80", "error_rate", "latency_ms=fast"):
        with pytest.raises(Exception, match="--sandbox-fault"):
            parse_faults([bad])


def test_spans_follow_the_timeline_and_share_one_trace() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from openbell.canary.telemetry import Spans, new_ids

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = Spans(provider)
    trace_id, root_id = new_ids()
    rollout = started()
    emitted = spans.emit(rollout, trace_id, root_id, 0)
    assert emitted == len(rollout.events) - 1  # the open step has no end yet
    rollout, _ = machine.advance(rollout, Observation(1003.0, "fail", "pass", ("burn",)))
    rollout = machine.completed(rollout, 1004.0)
    spans.emit(rollout, trace_id, root_id, emitted)
    finished = exporter.get_finished_spans()
    names = [s.name for s in finished]
    assert names[-1] == "canary gateway v2" and "canary.step" in names and "canary.rollback" in names
    assert {f"{s.context.trace_id:032x}" for s in finished} == {trace_id}
    root = finished[-1]
    assert f"{root.context.span_id:016x}" == root_id
    assert all(s.parent is not None and f"{s.parent.span_id:016x}" == root_id for s in finished[:-1])
    step = next(s for s in finished if s.name == "canary.step")
    assert step.attributes is not None and step.attributes["openbell.canary.weight"] == 10
    assert step.end_time is not None and step.start_time is not None and step.end_time >= step.start_time


HOLD_LOCK = """
import sys, time
sys.path.insert(0, {cli!r})
from pathlib import Path
from openbell.targets.sandbox import SandboxRunStore
store = SandboxRunStore(Path({d!r}), "gateway")
store.acquire("holder-process")
print("held", flush=True)
time.sleep(60)
"""


def test_the_run_lock_refuses_a_second_run_and_dies_with_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(cli=str(ROOT / "cli"), d=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        store = SandboxRunStore(tmp_path, "gateway")
        with pytest.raises(RunConflict, match="holder-process"):
            store.acquire("me")
        assert store.holder() == "holder-process"
        holder.kill()  # kill -9: the kernel releases the flock with the process
        holder.wait(10)
        deadline = time.monotonic() + 5
        while store.holder() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        store.acquire("me")
        store.release()
    finally:
        holder.kill()


def test_the_store_keeps_documents_and_requests(tmp_path: Path) -> None:
    store = SandboxRunStore(tmp_path / "canary", "gateway")
    assert store.load() is None and store.take_request() is None
    store.save({"rollout": {"phase": "progressing"}})
    store.request("abort")
    assert store.load() == {"rollout": {"phase": "progressing"}}
    assert store.take_request() == "abort" and store.take_request() is None


@pytest.mark.parametrize("args,code,expected", [
    (["run", "gateway", "--version", "v2"], 3, "not running: `openbell sandbox up` first"),
    (["run", "gateway", "--version", "v2", "--steps", "25,10"], 2, "strictly increasing"),
    (["run", "gateway", "--version", "v2", "--on-inconclusive", "maybe"], 2, "expected fail or pass"),
    (["abort", "gateway"], 3, "not running"),
    (["status", "gateway"], 0, "no rollout of gateway recorded"),
])
def test_the_cli_without_a_sandbox(tmp_path: Path, args: list[str], code: int, expected: str) -> None:
    done = subprocess.run([sys.executable, "-m", "openbell", "canary", *args, "--home", str(tmp_path / "none"),
                           *(["--slo", str(ROOT / "slo")] if args[0] == "run" else [])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
