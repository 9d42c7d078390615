"""The experiment catalogue (chaos/catalogue.py) and the experiments in it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from openbell.chaos import catalogue
from openbell.chaos.runner import has_safeguard
from openbell.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]


EXPERIMENTS = ROOT / "experiments"


SANDBOX_EXPERIMENTS = {"gateway-replica-loss", "gateway-all-replicas-loss", "kafka-broker-loss",
                       "postgres-primary-loss", "enricher-stall", "gateway-kafka-latency", "gateway-kafka-partition"}


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
