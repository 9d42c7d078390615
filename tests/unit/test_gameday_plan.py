"""Gameday plans (gameday/plan.py): the defaults resolve, a malformed plan names its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from openbell.errors import SpecError
from openbell.gameday.plan import CanaryPhase, LoadPhase, check_references, load_plan, parse_plan

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
    # The default load fits the machine: a quarter of what every SLO held at here (the plan fixes no scale).
    assert load.calibrated and load.scale is None and load.capacity_fraction == 0.25
    assert isinstance(canary, CanaryPhase) and canary.steps == (10, 50, 100) and "{run}" in canary.version
    assert canary.probe_rate == 5
    assert plan.phases[1].start.at_s == 40.0
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
    ("spec.phases.0.load.scale", "auto", "spec.phases[0].load.scale", "or calibrated"),
    ("spec.phases.0.load.capacity_fraction", 0.8, "spec.phases[0].load.capacity_fraction", "(0, 0.5]"),
    ("spec.phases.1.canary.probe_rate", -2, "spec.phases[1].canary.probe_rate", "number in"),
    ("spec.phases.0.load.thresholds", "ignore", "spec.phases[0].load.thresholds", "report, gate"),
    ("spec.phases.2.start", {"after": "nowhere"}, "spec.phases[2].start.after", "not an earlier phase"),
    ("spec.phases.2.start", {"after": "kafka-broker-loss"}, "spec.phases[2].start.after", "not an earlier phase"),
    ("spec.phases.2.start", {"at": "10s", "after": "market-open"}, "spec.phases[2].start", "not both"),
    ("spec.phases.2.name", "market-open", "spec.phases[2].name", "unique"),
    ("spec.phases.2.chaos", _DELETE, "spec.phases[2]", "exactly one of load, canary, chaos, slo"),
    ("spec.phases.4.slo.severity", "sms", "spec.phases[4].slo.severity", "page, ticket"),
    ("spec.phases.3.expected_burn", {"a": 1}, "spec.phases[3].expected_burn", "list of names"),
    ("spec.phases.1.canary.judge", "bayesian", "spec.phases[1].canary.judge", "fixed, sequential"),
    ("spec.phases.1.canary.min_hold", "60s", "spec.phases[1].canary.min_hold", "at most the hold"),
    ("spec.phases.1.canary.alpha", 0.7, "spec.phases[1].canary.alpha", "number in (0, 0.5]"),
    ("spec.phases.1.canary.tolerance", {"latency": 0}, "spec.phases[1].canary.tolerance.latency", "number in"),
    ("spec.phases.1.canary.tolerance", {"cpu": 0.1}, "spec.phases[1].canary.tolerance.cpu", "unknown field"),
    ("spec.phases.1.canary.tolerance", 0.1, "spec.phases[1].canary.tolerance", "expected a mapping"),
])
def test_a_malformed_plan_names_the_field(path: str, value: Any, field: str, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_plan(_set(_doc(), path, value), DEFAULT)
    assert err.value.field == field
    assert expected in err.value.expected
    assert str(err.value).startswith(str(DEFAULT))


def test_the_judge_and_its_settings_are_read_and_the_fixed_judge_takes_none_of_them() -> None:
    plan = parse_plan(_set(_set(_doc(), "spec.phases.1.canary.alpha", 0.001), "spec.phases.1.canary.tolerance",
                           {"errors": 0.1}), DEFAULT)
    canary = plan.phases[1].action
    assert isinstance(canary, CanaryPhase) and canary.judge == "sequential" and canary.alpha == 0.001
    assert canary.error_tolerance == 0.1 and canary.latency_tolerance is None
    fixed = _set(_doc(), "spec.phases.1.canary.judge", "fixed")
    del fixed["spec"]["phases"][1]["canary"]["min_hold"]
    assert parse_plan(fixed, DEFAULT).phases[1].action.judge == "fixed"  # type: ignore[union-attr]
    with pytest.raises(SpecError, match=r"spec.phases\[1\].canary.judge: min_hold, alpha and tolerance belong"):
        parse_plan(_set(fixed, "spec.phases.1.canary.alpha", 0.05), DEFAULT)


def test_references_name_the_field() -> None:
    plan = load_plan(DEFAULT)
    with pytest.raises(SpecError, match=r"spec.phases\[3\].expected_burn: 'kafka-consumer-lag' is not an SLO"):
        check_references(plan, "sandbox", {"api-errors"}, ["nyse-open"], ["gateway-replica-loss", "kafka-broker-loss"])
    with pytest.raises(SpecError, match=r"spec.phases\[0\].load.profile: unknown profile 'nyse-open'"):
        check_references(plan, "sandbox", {"kafka-consumer-lag"}, ["soak"], ["gateway-replica-loss",
                                                                            "kafka-broker-loss"])
    with pytest.raises(SpecError, match=r"spec.phases\[0\].load.scale: calibrated needs the sandbox target"):
        check_references(plan, "kubernetes", {"kafka-consumer-lag"}, ["nyse-open"], ["gateway-pod-loss"])
    fixed_scale = _set(_set(_doc(), "spec.phases.0.load.scale", 0.0005), "spec.phases.0.load.capacity_fraction",
                       _DELETE)
    fixed = parse_plan(_set(fixed_scale, "spec.phases.1.canary.probe_rate", 0), DEFAULT)
    with pytest.raises(SpecError, match=r"spec.phases\[2\].chaos.experiment: no kubernetes experiment"):
        check_references(fixed, "kubernetes", {"kafka-consumer-lag"}, ["nyse-open"], ["gateway-pod-loss"])
    with pytest.raises(SpecError, match=r"spec.phases\[0\].load.capacity_fraction: only with scale: calibrated"):
        parse_plan(_set(_set(_doc(), "spec.phases.0.load.scale", 0.0005), "spec.phases.0.load.capacity_fraction",
                        0.5), DEFAULT)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match="line 2: not valid YAML"):
        load_plan(bad)
    with pytest.raises(SpecError, match="cannot read the plan"):
        load_plan(tmp_path / "absent.yaml")


def test_the_kubernetes_plan_resolves_against_the_kubernetes_catalogue() -> None:
    from openbell.chaos.catalogue import experiments_dir, list_experiments
    from openbell.load.catalogue import list_profiles, profiles_dir
    from openbell.slo.loader import load_slos

    plan = load_plan(ROOT / "gamedays" / "opening-bell-kubernetes.yaml")
    names = {s.name for s in load_slos(list(plan.slo_paths))}
    check_references(plan, "kubernetes", names, [p.name for p in list_profiles(profiles_dir())],
                     [e.name for e in list_experiments(experiments_dir(), "kubernetes")])
    with pytest.raises(SpecError, match="no sandbox experiment 'gateway-pod-loss'"):
        check_references(plan, "sandbox", names, [p.name for p in list_profiles(profiles_dir())],
                         [e.name for e in list_experiments(experiments_dir(), "sandbox")])
    assert plan.phases[1].timeout_s == 2400.0
