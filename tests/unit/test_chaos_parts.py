"""Chaos parts on plain values: journals written by hand in the shape chaostoolkit 1.19 / chaostoolkit-lib 1.44
writes them (pass, deviated, steady state failing before the method, interrupted by the safeguard or by
Ctrl-C), the safeguard's decisions, the Kubernetes allow-list, the experiment catalogue, and the CLI's
refusals and validation messages as a user meets them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from openbell.chaos import allowlist, catalogue, journal
from openbell.chaos.actions import parse_signal
from openbell.chaos.controls import Policy, refusal
from openbell.chaos.runner import error_lines, has_safeguard
from openbell.errors import SpecError, UsageError

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
SANDBOX_EXPERIMENTS = {"gateway-replica-loss", "gateway-all-replicas-loss", "kafka-broker-loss",
                       "postgres-primary-loss", "enricher-stall", "gateway-kafka-latency", "gateway-kafka-partition"}


# --- journals as chaostoolkit writes them ------------------------------------------------------------------

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


# --- the safeguard's decisions -----------------------------------------------------------------------------


def summary(outcome: str, budgets: dict[str, float | None] | None = None) -> dict[str, Any]:
    return {"outcome": outcome, "reasons": [f"reason {outcome}"], "budget_remaining": budgets or {}}


def test_the_safeguard_refuses_a_burn_a_blind_gate_and_a_budget_below_the_fraction() -> None:
    policy = Policy(("slo/",), min_budget_remaining=0.25)
    assert refusal(summary("pass", {"a": 0.9, "b": None}), policy) is None
    assert refusal(summary("fail"), policy) == "page-severity burn before the experiment: reason fail"
    assert refusal(summary("inconclusive"), policy) == "the SLO gate cannot see (inconclusive): reason inconclusive"
    assert refusal(summary("inconclusive"), Policy(("slo/",), on_inconclusive="proceed")) is None
    assert refusal(summary("pass", {"api/api-errors": 0.1, "x": 0.5}), policy) == \
        "error budget below 25%: api/api-errors 10.0%"
    assert refusal(summary("pass", {"api/api-errors": -3.0}), Policy(("slo/",), min_budget_remaining=None)) is None


def test_the_safeguard_arguments_are_validated() -> None:
    policy = Policy.from_arguments({"slo_paths": "slo/", "interval_s": 2, "min_budget_remaining": None})
    assert policy.slo_paths == ("slo/",) and policy.interval_s == 2.0 and policy.min_budget_remaining is None
    assert Policy.from_arguments({"slo_paths": ["slo/"]}).min_budget_remaining == 0.1
    for bad, field in (({}, "slo_paths"), ({"slo_paths": ["slo"], "severity": "sev1"}, "severity"),
                       ({"slo_paths": ["slo"], "interval_s": 0}, "interval_s"),
                       ({"slo_paths": ["slo"], "min_budget_remaining": 2}, "min_budget_remaining"),
                       ({"slo_paths": ["slo"], "poll": 1}, "poll")):
        with pytest.raises(ValueError, match=field):
            Policy.from_arguments(bad)


# --- the allow-list ----------------------------------------------------------------------------------------

ALLOW = {"allow": [{"context": "staging-eks", "namespaces": ["openbell", "kafka"], "experiments": ["gateway-pod-loss"]},
                   {"context": "dev-eks", "namespaces": ["*"], "experiments": ["*"]}]}


def test_the_allow_list_needs_context_every_namespace_and_experiment_to_match() -> None:
    rules = allowlist.parse(ALLOW, "allow.yaml")
    allowlist.check(rules, "gateway-pod-loss", "staging-eks", {"openbell", "kafka"})
    allowlist.check(rules, "zone-loss", "dev-eks", {"anything"})
    for experiment, context, namespaces in (("zone-loss", "staging-eks", {"openbell"}),
                                            ("gateway-pod-loss", "staging-eks", {"openbell", "postgres"}),
                                            ("gateway-pod-loss", "prod-eks", {"openbell"})):
        with pytest.raises(UsageError, match="refused"):
            allowlist.check(rules, experiment, context, namespaces)


def test_the_namespaces_an_experiment_touches_are_read_from_its_activities() -> None:
    doc = {"steady-state-hypothesis": {"probes": [{"provider": {"arguments": {"ns": "openbell"}}}]},
           "method": [{"provider": {"arguments": {"ns": "kafka", "label_selector": "x"}}},
                      {"provider": {"arguments": {"namespace": "${target_ns}"}}}],
           "rollbacks": [{"provider": {"arguments": {"namespace": "postgres"}}}]}
    assert allowlist.experiment_namespaces(doc) == {"openbell", "kafka", "postgres"}
    pod_loss = catalogue.find("gateway-pod-loss", EXPERIMENTS, "kubernetes").document
    assert "openbell" in allowlist.experiment_namespaces(pod_loss)


@pytest.mark.parametrize(("doc", "field"), [
    ({"allow": "all"}, "allow"),
    ({"allow": [{"context": "*", "namespaces": ["a"], "experiments": ["b"]}]}, r"allow\[0\].context"),
    ({"allow": [{"context": "c", "namespaces": [], "experiments": ["b"]}]}, r"allow\[0\].namespaces"),
    ({"allow": [{"context": "c", "namespaces": ["a"], "experiments": ["b"], "prod": True}]}, r"allow\[0\].prod"),
])
def test_a_malformed_allow_list_names_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=field):
        allowlist.parse(doc, "allow.yaml")


def test_no_allow_list_file_is_a_refusal(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no chaos allow-list"):
        allowlist.load(tmp_path / "absent.yaml")


# --- the catalogue and the experiments ---------------------------------------------------------------------


def test_the_catalogue_lists_the_sandbox_experiments_with_what_they_prove_and_skips_other_files() -> None:
    found = catalogue.list_experiments(EXPERIMENTS, "sandbox")
    assert {e.name for e in found} == SANDBOX_EXPERIMENTS
    for experiment in found:
        assert experiment.target == "sandbox" and experiment.path.suffix == ".json"
        assert experiment.description.startswith(("Proves", "The deliberately harsh")), experiment.name
        assert len(experiment.description) > 150
    # The edge SLO kept beside the experiments is no experiment.
    assert not any(e.path.parent.name == "slo" for e in catalogue.list_experiments(EXPERIMENTS))


def test_find_by_name_prefers_the_target_and_unknown_names_list_the_known_ones(tmp_path: Path) -> None:
    assert catalogue.find("gateway-replica-loss", EXPERIMENTS, "sandbox").target == "sandbox"
    with pytest.raises(SpecError, match="gateway-replica-loss"):
        catalogue.find("gateway-replica-los", EXPERIMENTS, "sandbox")
    own = tmp_path / "mine.yaml"
    own.write_text(yaml.safe_dump({"title": "t", "description": "d", "method": []}))
    assert catalogue.find(str(own), EXPERIMENTS).name == "mine"
    broken = tmp_path / "broken.json"
    broken.write_text('{"title": ')
    with pytest.raises(SpecError, match="not valid JSON"):
        catalogue.find(str(broken), EXPERIMENTS)


@pytest.mark.parametrize("name", sorted(SANDBOX_EXPERIMENTS))
def test_every_sandbox_experiment_is_guarded_restores_the_platform_and_passes_chaoslib(name: str) -> None:
    from chaoslib.experiment import ensure_experiment_is_valid  # type: ignore[import-untyped]

    experiment = catalogue.find(name, EXPERIMENTS, "sandbox")
    doc = experiment.document
    assert has_safeguard(doc)
    assert doc["runtime"]["rollbacks"]["strategy"] == "always"
    probes = [p["provider"]["func"] for p in doc["steady-state-hypothesis"]["probes"]]
    assert probes[:2] == ["slo_gate", "component_healthy"]
    assert doc["rollbacks"][-1]["provider"]["func"] == "heal"
    ensure_experiment_is_valid(json.loads(json.dumps(doc)))  # imports openbell.chaos.* and binds the arguments


def test_signals_by_name_or_number() -> None:
    assert parse_signal("SIGKILL") == 9 and parse_signal("kill") == 9 and parse_signal("15") == 15
    with pytest.raises(SpecError, match="signal"):
        parse_signal("SIGNOPE")


def test_chaos_error_lines_lose_their_colours() -> None:
    out = ("\x1b[32m[2025-03-03 10:00:00 INFO] Validating\n"
           "\x1b[31m[2025-03-03 10:00:00 ERROR] experiment requires a title\n")
    assert error_lines(out) == "experiment requires a title"
    assert error_lines("Traceback...\njson.decoder.JSONDecodeError: Expecting value\n") == \
        "json.decoder.JSONDecodeError: Expecting value"


# --- the CLI as a user meets it ----------------------------------------------------------------------------


def openbell(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def test_chaos_list_json_and_validate_a_catalogued_experiment() -> None:
    listed = openbell("chaos", "list", "--target", "sandbox", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert {e["name"] for e in json.loads(listed.stdout)} == SANDBOX_EXPERIMENTS
    done = openbell("chaos", "validate", "kafka-broker-loss", "--output", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"experiment": "kafka-broker-loss",
                                       "path": str(EXPERIMENTS / "sandbox" / "kafka-broker-loss.json"),
                                       "valid": True, "safeguard": True}


def test_an_invalid_experiment_is_exit_2_with_chaostoolkits_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"title": "no description", "method": []}))
    done = openbell("chaos", "validate", str(bad))
    assert done.returncode == 2
    assert done.stderr == f"openbell: {bad}: experiment requires a description\n"


def kubeconfig(path: Path, context: str, namespace: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u", "namespace": namespace}}]}))
    return path


def test_a_kubernetes_target_is_refused_unless_context_namespace_and_experiment_are_allowed(tmp_path: Path) -> None:
    env = {"KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", "prod-eks", "openbell")),
           "OPENBELL_CHAOS_ALLOW": str(tmp_path / "allow.yaml")}
    done = openbell("chaos", "run", "gateway-pod-loss", "--target", "kubernetes", env=env)
    assert done.returncode == 2 and "no chaos allow-list" in done.stderr and done.stderr.count("\n") == 1
    (tmp_path / "allow.yaml").write_text(yaml.safe_dump(ALLOW))
    done = openbell("chaos", "run", "gateway-pod-loss", "--target", "kubernetes", env=env)
    assert done.returncode == 2
    assert "does not allow experiment 'gateway-pod-loss' in context 'prod-eks', namespace 'openbell'" in done.stderr
    # Allowed in the current namespace, but the experiment also touches one that is not listed.
    (tmp_path / "allow.yaml").write_text(yaml.safe_dump({"allow": [
        {"context": "prod-eks", "namespaces": ["default"], "experiments": ["gateway-pod-loss"]}]}))
    env["KUBECONFIG"] = str(kubeconfig(tmp_path / "kubeconfig", "prod-eks", "default"))
    done = openbell("chaos", "run", "gateway-pod-loss", "--target", "kubernetes", env=env)
    assert done.returncode == 2 and "namespaces 'default', 'openbell'" in done.stderr
    (tmp_path / "allow.yaml").write_text(yaml.safe_dump(ALLOW))
    # A sandbox experiment is not run against a cluster, allowed or not.
    done = openbell("chaos", "run", "enricher-stall", "--target", "kubernetes", env=env)
    assert done.returncode == 2 and "is for the sandbox target" in done.stderr
