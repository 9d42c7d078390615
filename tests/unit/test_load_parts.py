"""Load's pure parts on plain values: SLO -> k6 thresholds, k6's summary export, the verdict, and the
k6-operator objects checked against the TestRun CRD's schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from openbell.errors import SpecError
from openbell.load import catalogue, render, summary
from openbell.load.runner import K6_THRESHOLDS_FAILED, RunResult, _go_duration_s, k6_error_line
from openbell.load.thresholds import thresholds_for
from openbell.load.verdict import load_verdict
from openbell.slo.loader import load_slos
from openbell.slo.verdict import Verdict

ROOT = Path(__file__).resolve().parents[2]


def test_platform_slos_become_push_latency_page_latency_and_error_rate_thresholds() -> None:
    assert thresholds_for(load_slos([ROOT / "slo"])) == {
        "ws_push_latency_ms": ["p(99)<50"],
        "http_req_duration{kind:page}": ["p(95)<400"],
        "http_req_failed{kind:page}": ["rate<0.0001"],
    }


EXPORT: dict[str, Any] = {"metrics": {
    "ws_push_latency_ms": {"p(50)": 8.0, "p(95)": 31.5, "p(99)": 73.2, "thresholds": {"p(99)<50": True}},
    "http_req_duration{kind:page}": {"p(95)": 120.0, "p(99)": 180.0, "thresholds": {"p(95)<400": False}},
    "http_req_failed": {"passes": 0, "fails": 900, "value": 0, "thresholds": {"rate<0.0001": False}},
    "http_reqs": {"count": 900, "rate": 30.0},
    "ws_messages": {"count": 12000, "rate": 400.0},
    "ws_seq_gaps": {"count": 0, "rate": 0},
    "vus_max": {"value": 40, "min": 40, "max": 40},
}}


def test_summary_export_gives_figures_and_which_threshold_failed_with_the_observed_value() -> None:
    parsed = summary.parse(EXPORT)
    assert parsed.figures["push_latency_p99_ms"] == 73.2
    assert parsed.figures["ws_messages_per_s"] == 400.0 and parsed.figures["http_failure_ratio"] == 0
    assert [(t.metric, t.expression, t.observed) for t in parsed.failed] == [
        ("ws_push_latency_ms", "p(99)<50", 73.2)]
    assert {t.expression: t.passed for t in parsed.thresholds}["rate<0.0001"] is True


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


def test_k6_durations_and_error_lines_are_read() -> None:
    assert _go_duration_s("1h2m3.5s") == 3723.5
    assert _go_duration_s("") is None


def test_k6_error_line_is_its_own_message_on_one_line(tmp_path: Path) -> None:
    log = tmp_path / "k6.log"
    log.write_text('time="2026-11-22T07:00:00Z" level=info msg="starting"\n'
                   'time="2026-11-22T07:00:00Z" level=error msg="SyntaxError: file:///x.js: Unexpected token (3:5)'
                   '\\n  at file:///x.js:3:5(0)" hint="script exception"\n')
    assert k6_error_line(log) == "SyntaxError: file:///x.js: Unexpected token (3:5) at file:///x.js:3:5(0)"


# The fields of k6-operator's TestRun (k6.io/v1alpha1) that `load render` writes, with their types as the
# operator's CRD declares them (config/crd/bases/k6.io_testruns.yaml); unknown fields are refused here
# where the API server would silently prune them, so a typo fails the test.
TESTRUN_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "k6.io/v1alpha1"}, "kind": {"const": "TestRun"},
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
            "namespace": {"type": "string"}, "labels": {"type": "object",
                                                         "additionalProperties": {"type": "string"}}}},
        "spec": {"type": "object", "required": ["parallelism", "script"], "additionalProperties": False,
                 "properties": {
                     "parallelism": {"type": "integer", "minimum": 1, "maximum": 2147483647},
                     "script": {"type": "object", "additionalProperties": False, "properties": {
                         "configMap": {"type": "object", "required": ["name"], "additionalProperties": False,
                                       "properties": {"name": {"type": "string"}, "file": {"type": "string"}}},
                         "localFile": {"type": "string"},
                         "volumeClaim": {"type": "object", "required": ["name"]}}},
                     "separate": {"type": "boolean"},
                     "cleanup": {"enum": ["post"]},
                     "arguments": {"type": "string"},
                     "quiet": {"type": "string"}, "paused": {"type": "string"},
                     "runner": {"type": "object", "additionalProperties": False, "properties": {
                         "image": {"type": "string"},
                         "env": {"type": "array", "items": {
                             "type": "object", "required": ["name"], "additionalProperties": False,
                             "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
                         "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
                         "resources": {"type": "object", "additionalProperties": False, "properties": {
                             "requests": {"type": "object", "additionalProperties": {"type": "string"}},
                             "limits": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}},
    },
}


def _profile(tmp_path: Path) -> catalogue.Profile:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "trader.js").write_text("export function trader() {}\n")
    script = tmp_path / "nyse-open.js"
    script.write_text("// profile: nyse-open\n// description: the opening bell\n"
                      "import { trader } from './lib/trader.js';\nexport default function () { trader(); }\n")
    return catalogue.read_profile(script)


def test_rendered_testrun_matches_the_crd_and_the_configmap_carries_script_and_library(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    assert (profile.name, profile.description) == ("nyse-open", "the opening bell")
    name = render.object_name(profile)
    run = render.testrun(profile, name, "loadtest", 8, {"BASE_URL": "http://gw", "SCALE": "1"})
    jsonschema.validate(run, TESTRUN_SCHEMA)
    cm = render.configmap(profile, name, "loadtest")
    assert set(cm["data"]) == {"nyse-open.js", "trader.js"}
    assert all(render.CONFIGMAP_KEY.match(k) for k in cm["data"])
    assert "from './trader.js'" in cm["data"]["nyse-open.js"]
    assert run["spec"]["script"]["configMap"] == {"name": cm["metadata"]["name"], "file": "nyse-open.js"}


def test_a_typo_in_the_testrun_is_caught_by_the_schema(tmp_path: Path) -> None:
    run = render.testrun(_profile(tmp_path), "openbell-x", "loadtest", 2, {})
    run["spec"]["paralellism"] = run["spec"].pop("parallelism")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(run, TESTRUN_SCHEMA)


def test_render_refuses_zero_runners_and_an_unknown_profile_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="parallelism"):
        render.testrun(_profile(tmp_path), "openbell-x", "loadtest", 0, {})
    with pytest.raises(SpecError, match="unknown profile"):
        catalogue.find("tokyo-open", tmp_path)


def _openbell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_load_render_prints_a_configmap_and_a_testrun_that_match_the_crd() -> None:
    done = _openbell("load", "render", "nyse-open", "--parallelism", "8", "--scale", "1")
    assert done.returncode == 0, done.stderr
    cm, run = list(yaml.safe_load_all(done.stdout))
    jsonschema.validate(run, TESTRUN_SCHEMA)
    assert run["spec"]["parallelism"] == 8 and cm["kind"] == "ConfigMap"
    assert set(cm["data"]) == {"nyse-open.js", "trader.js"}
    env = {e["name"]: e["value"] for e in run["spec"]["runner"]["env"]}
    assert env["SCALE"] == "1" and json.loads(env["OPENBELL_THRESHOLDS"])["ws_push_latency_ms"] == ["p(99)<50"]


def test_load_render_to_kubernetes_without_a_kubeconfig_says_so_and_exits_3(tmp_path: Path) -> None:
    done = _openbell("load", "render", "soak", "--target", "kubernetes", "--kubeconfig", str(tmp_path / "none"))
    assert done.returncode == 3 and "no kubeconfig" in done.stderr and done.stderr.count("\n") == 1


def test_k6_saying_thresholds_failed_is_a_fail_even_if_the_summary_disagrees() -> None:
    ok = {"metrics": {"ws_push_latency_ms": {"p(99)": 20.0, "thresholds": {"p(99)<50": False}}}}
    assert load_verdict(RunResult(K6_THRESHOLDS_FAILED, summary.parse(ok), 30.0), None).outcome == "fail"


def test_a_gate_whose_prometheus_is_gone_answers_inconclusive_instead_of_raising() -> None:
    from openbell.errors import UnreachableError
    from openbell.load.runner import safe_gate

    def gone() -> Verdict:
        raise UnreachableError("prometheus: connection refused")

    verdict = safe_gate(gone)()
    assert verdict.outcome == "inconclusive" and "connection refused" in verdict.reasons[0]
