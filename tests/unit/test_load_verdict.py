"""A load run's verdict from k6's thresholds and the SLO gate (load/verdict.py)."""

from __future__ import annotations

from openbell.load import summary
from openbell.load.runner import K6_THRESHOLDS_FAILED, RunResult
from openbell.load.verdict import load_verdict
from openbell.slo.verdict import Verdict
from tests.unit.test_load_summary import EXPORT


def test_verdict_fails_on_a_threshold_and_names_it() -> None:
    result = RunResult(K6_THRESHOLDS_FAILED, summary.parse(EXPORT), 61.0)
    verdict = load_verdict(result, Verdict("pass"))
    assert verdict.outcome == "fail"
    assert verdict.reasons == ("k6 threshold ws_push_latency_ms p(99)<50 failed (observed 73.2)",)
    assert verdict.figures["k6_exit_code"] == 99 and verdict.figures["slo_gate"]["outcome"] == "pass"


def test_verdict_passes_when_thresholds_hold_and_an_inconclusive_gate_does_not_overrule_them() -> None:
    ok = {"metrics": {"ws_push_latency_ms": {"p(99)": 20.0, "thresholds": {"p(99)<50": False}}}}
    verdict = load_verdict(RunResult(0, summary.parse(ok), 30.0), Verdict("inconclusive", ("no data",)))
    assert verdict.outcome == "pass"
    assert any("inconclusive" in r for r in verdict.reasons)


def test_verdict_fails_when_the_gate_stopped_the_run_and_an_interrupt_is_inconclusive() -> None:
    stopped = RunResult(105, None, 12.0, stopped_by_gate=Verdict("fail", ("gateway-push-latency burns 20x",)))
    assert load_verdict(stopped, None).outcome == "fail"
    interrupted = RunResult(105, summary.parse(EXPORT), 5.0, interrupted=True)
    verdict = load_verdict(interrupted, None)
    assert verdict.outcome == "inconclusive" and verdict.reasons[0].startswith("interrupted")


def test_k6_saying_thresholds_failed_is_a_fail_even_if_the_summary_disagrees() -> None:
    ok = {"metrics": {"ws_push_latency_ms": {"p(99)": 20.0, "thresholds": {"p(99)<50": False}}}}
    assert load_verdict(RunResult(K6_THRESHOLDS_FAILED, summary.parse(ok), 30.0), None).outcome == "fail"
