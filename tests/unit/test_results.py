"""The typed results each capability writes with --output json and reads back (load/result.py,
canary/result.py, chaos/result.py): a round trip keeps every field; missing or foreign fields read as unknown,
never as a crash."""

from __future__ import annotations

import json

from openbell.canary import machine
from openbell.canary.result import CanaryResult
from openbell.chaos.journal import Step
from openbell.chaos.result import ChaosResult
from openbell.load.result import LoadResult
from openbell.slo.verdict import Verdict


def _through_json(doc: dict[str, object]) -> dict[str, object]:
    return dict(json.loads(json.dumps(doc)))


def test_a_rolled_back_rollout_round_trips_and_says_where_it_stopped() -> None:
    policy = machine.Policy(steps=(10, 50, 100), hold_s=25.0)
    rollout = machine.start("gateway", "rc-1", "sandbox", policy, 100.0, baseline_version="v1")
    rollout, _ = machine.canary_ready(rollout, 101.0)
    rollout, _ = machine.abort(rollout, 120.0, "api/api-errors: canary burns its budget")
    rollout = machine.completed(rollout, 121.0, "verified")
    result = CanaryResult.of(rollout, {"judge": {"outcome": "fail"}})
    doc = result.to_json()
    assert (doc["outcome"], doc["exit_code"], doc["step"], doc["weight"]) == ("rolled_back", 1, 1, 0)
    back = CanaryResult.from_json(_through_json(doc))
    assert back.to_json() == _through_json(doc)
    assert back.where_rolled_back() == "step 1 (10%)" and [e.kind for e in back.timeline][:2] == ["start", "canary"]
    assert CanaryResult.from_json({"step": "x", "timeline": [1, {"at": 5, "kind": "step"}]}).step is None
    assert CanaryResult.from_json({}).where_rolled_back() == "step ? (?%)"


def test_an_unhealthy_canary_says_what_burned() -> None:
    doc = CanaryResult("gateway", "rc-1", outcome="unhealthy", exit_code=1, reason="burning",
                       burning=({"slo": "api/api-errors"},)).to_json()
    assert doc == {"service": "gateway", "version": "rc-1", "outcome": "unhealthy", "exit_code": 1,
                   "reason": "burning", "burning": [{"slo": "api/api-errors"}]}
    assert CanaryResult.from_json(doc).burning == ({"slo": "api/api-errors"},)


def test_a_load_result_round_trips_and_knows_a_thresholds_only_failure() -> None:
    verdict = Verdict("fail", ("k6 threshold failed",), {"thresholds": [{"passed": False}, {"passed": True}],
                                                           "traders": 40, "slo_gate": None})
    result = LoadResult("nyse-open", "sandbox", "/tmp/s.json", "/tmp/k6.log", verdict)
    back = LoadResult.from_json(_through_json(result.to_json()))
    assert back == result and back.thresholds_only
    assert back.figures() == {"traders": 40, "thresholds_crossed": 1}
    assert LoadResult.from_json({"verdict": {"outcome": "maybe"}}).verdict.outcome == "inconclusive"


def test_a_chaos_result_round_trips_with_its_timeline_and_safeguard() -> None:
    step = Step("method", "action", "kill-9-kafka", "succeeded", 10.0, 11.5, None, False, "")
    verdict = Verdict("fail", ("safeguard tripped",), {"safeguard": {"tripped": True, "reason": "burning"}})
    result = ChaosResult("kafka-broker-loss", "Broker loss", "experiments/x.yaml", "sandbox", "fail", 1,
                         "/tmp/j.json", "/tmp/c.log", 12.3, verdict, (step,))
    back = ChaosResult.from_json(_through_json(result.to_json()))
    assert back == result and back.safeguard["tripped"] is True
    assert back.timeline[0].duration_s == 1.5
    assert ChaosResult.from_json({"timeline": [{"phase": "method"}, "x"]}).timeline[0].start is None
