"""The Kubernetes allow-list (chaos/allowlist.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openbell.chaos import allowlist, catalogue
from openbell.errors import SpecError, UsageError

ROOT = Path(__file__).resolve().parents[2]


EXPERIMENTS = ROOT / "experiments"


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
