"""The stack config schema: every stack file validates; a bad value names its key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import ConfigError, from_values, load_stack_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod", "local"])
def test_every_stack_file_validates(stack: str) -> None:
    cfg = load_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml")
    assert cfg.environment == ("dev" if stack == "local" else stack) and len(cfg.network.azs) >= 3
    assert "spot" not in cfg.karpenter.data.capacity_types


def test_prod_is_sized_for_the_opening_bell() -> None:
    cfg = load_stack_file(ROOT / "stacks" / "Pulumi.prod.yaml")
    # 100,000 traders at the HPA's connections per pod must fit under the gateway's max replicas.
    assert cfg.apps.gateway.max_replicas * cfg.apps.connections_per_pod >= 100_000
    assert cfg.kafka.replication_factor == 3 and cfg.kafka.min_insync_replicas == 2 and cfg.kafka.brokers >= 3
    assert cfg.network.nat_gateways == "per-az" and not cfg.cluster.public_endpoint


@pytest.mark.parametrize("values,key,expected", [
    ({"openbell:kafka": {"brokers": "many"}}, "kafka.brokers", "expected an integer"),
    ({"openbell:kafka": {"brokers": 500}}, "kafka.brokers", "within 1..100"),
    ({"openbell:apps": {"tag": "latest"}}, "apps.tag", "not `latest`"),
    ({"openbell:network": {"azs": ["us-east-1a", "us-east-1b"]}}, "network.azs", "at least 3"),
    ({"openbell:network": {"natGateways": "two"}}, "network.natGateways", "one of single, per-az"),
    ({"openbell:cluster": {"version": "1.19"}}, "cluster.version", "pinned"),
    ({"openbell:karpenter": {"data": {"capacityTypes": ["spot", "on-demand"]}}}, "karpenter.data.capacityTypes",
     "never runs on spot"),
    ({"openbell:kafka": {"brokers": 1, "replicationFactor": 3}}, "kafka.replicationFactor", "at most"),
    ({"openbell:kafka": {"minInsyncReplicas": 3}}, "kafka.minInsyncReplicas", "less than kafka.replicationFactor"),
    ({"openbell:cluster": {"version": "1.33"}}, "cluster.version", "pinned add-ons"),
    ({"openbell:network": {"cidr": "10.50.1.0/16"}}, "network.cidr", "network address"),
    ({"openbell:network": {"azs": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]}}, "network.azs", "zones of us-east-1"),
    ({"openbell:karpenter": {"marketHoursUtc": "13:00-13:00"}}, "karpenter.marketHoursUtc", "different start"),
    ({"openbell:clickhouse": {"keeperReplicas": 4}}, "clickhouse.keeperReplicas", "odd number"),
    ({"openbell:clickhouse": {"replicas": 5}}, "clickhouse.replicas", "one replica per zone"),
    ({"openbell:kafka": {"brokerMemory": "1Mi"}}, "kafka.brokerMemory", "at least 2Gi"),
    ({"openbell:cluster": {"systemNodes": {"instanceTypes": ["m7g.large", "m7i.large"]}}},
     "cluster.systemNodes.instanceTypes", "one architecture"),
    ({"openbell:environment": "prod", "openbell:cluster": {"adminRoleArns": ["arn:aws:iam::123456789012:role/x"],
      "publicEndpoint": True, "publicAccessCidrs": ["0.0.0.0/0"]}}, "cluster.publicAccessCidrs", "not 0.0.0.0/0"),
    ({"openbell:apps": {"gateway": {"minReplicas": 9, "maxReplicas": 3}}}, "apps.gateway.minReplicas", "at most"),
    ({"openbell:kafka": {"partitions": {"tick": 3}}}, "kafka.partitions.tick", "unknown key"),
    ({"openbell:tooling": {"chaosMesh": "yes"}}, "tooling.chaosMesh", "true or false"),
    ({"openbell:environment": "prod", "openbell:cluster": {"adminRoleArns": ["arn:aws:iam::123456789012:role/x"]},
      "openbell:postgres": {"instances": 1}}, "postgres.instances", "at least 3 in prod"),
    ({"openbell:environment": "staging"}, "cluster.adminRoleArns", "outside dev"),
])
def test_a_bad_value_names_its_key(values: dict[str, object], key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as failure:
        from_values(values, "Pulumi.test.yaml")
    assert failure.value.key == key and expected in str(failure.value)
    assert str(failure.value).startswith(f"Pulumi.test.yaml: {key}: ")


def test_a_broken_stack_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  openbell:kafka: {brokers: [1, 2]}\n")
    with pytest.raises(ConfigError, match=r"Pulumi.bad.yaml: kafka.brokers: expected an integer"):
        load_stack_file(bad)
    with pytest.raises(ConfigError, match="no such stack file"):
        load_stack_file(tmp_path / "Pulumi.none.yaml")


def test_an_existing_cluster_needs_a_backup_destination() -> None:
    with pytest.raises(ConfigError) as err:
        from_values({"openbell:target": "existing-cluster"})
    assert err.value.key == "existingCluster.backupDestination"
    cfg = from_values({"openbell:target": "existing-cluster", "openbell:environment": "staging",
                       "openbell:existingCluster": {"backupDestination": "s3://b-ups/ledger/"}})
    # The cluster's access is its owner's: no adminRoleArns needed outside dev.
    assert cfg.existing and cfg.existing_cluster.node_class.kind == "EC2NodeClass"


@pytest.mark.parametrize(("values", "key"), [
    ({"openbell:target": "gke"}, "target"),
    ({"openbell:existingCluster": {"nodeClass": {"kind": "ec2"}}}, "existingCluster.nodeClass.kind"),
    ({"openbell:existingCluster": {"backupDestination": "s3://bucket"}}, "existingCluster.backupDestination"),
])
def test_existing_cluster_values_are_checked(values: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_values(values)
    assert err.value.key == key
