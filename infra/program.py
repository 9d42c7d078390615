"""The whole platform, in dependency order: one ComponentResource per part.

network -> cluster (EKS) -> karpenter (node pools) -> data tier (Kafka, PostgreSQL, ClickHouse) and
observability -> the services (gateway, enricher, feed, ledger) -> in-cluster tooling (k6-operator,
Chaos Mesh). `build(cfg)` is all the Pulumi program does; the offline plan and the tests call it too.

With target existing-cluster only the Kubernetes layer is declared, on a cluster someone else runs: no network,
no EKS, no IAM, no bucket, no Helm release (the operators and their CRDs are assumed installed); the same
namespaces, workloads, custom resources and SLO rules, under the same names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from infra.config import PlatformConfig

ROOT = Path(__file__).resolve().parents[1]


def build(cfg: PlatformConfig, slo_dir: Path | None = None) -> dict[str, Any]:
    from infra.apps import Apps
    from infra.clickhouse import ClickHouse
    from infra.cluster import Cluster, ExistingCluster
    from infra.kafka import Kafka
    from infra.karpenter import Karpenter, KarpenterPools
    from infra.network import Network
    from infra.observability import Observability
    from infra.postgres import Postgres
    from infra.tooling import Tooling

    network: Network | None = None
    cluster: Cluster | ExistingCluster
    karpenter: pulumi.Resource
    if cfg.existing:
        cluster = ExistingCluster("cluster", cfg)
        karpenter = KarpenterPools("karpenter", cfg, cluster)
    else:
        network = Network("network", cfg)
        cluster = Cluster("cluster", cfg, network)
        karpenter = Karpenter("karpenter", cfg, cluster, network)
    # The data tier and the services need nodes: Karpenter's pools exist before anything asks for them.
    after_nodes = pulumi.ResourceOptions(depends_on=[karpenter])
    observability = Observability("observability", cfg, cluster, slo_dir or ROOT / "slo", opts=after_nodes)
    kafka = Kafka("kafka", cfg, cluster, opts=pulumi.ResourceOptions(depends_on=[karpenter, observability]))
    postgres = Postgres("postgres", cfg, cluster, opts=pulumi.ResourceOptions(depends_on=[karpenter, observability]))
    clickhouse = ClickHouse("clickhouse", cfg, cluster, opts=after_nodes)
    apps = Apps("apps", cfg, cluster, kafka=kafka, postgres=postgres, clickhouse=clickhouse,
                opts=pulumi.ResourceOptions(depends_on=[karpenter, observability]))
    tooling = Tooling("tooling", cfg, cluster, opts=after_nodes)
    outputs: dict[str, Any] = {} if network is None or not isinstance(cluster, Cluster) else {
        "vpcId": network.vpc.id,
        "clusterName": cluster.name,
    }
    outputs |= {
        "kafkaBootstrap": kafka.bootstrap,
        "postgresHost": postgres.host,
        "clickhouseHost": clickhouse.host,
        "gatewayHostname": apps.hostname,
        "prometheusUrl": observability.prometheus_url,
        "k6Operator": tooling.k6_operator_enabled,
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


def main() -> None:
    """The Pulumi program: the stack's config validated (one line naming the key, before a single resource is
    declared), then the platform. Run inline by `openbell infra preview|up|destroy`, and by infra/__main__.py."""
    from infra.config import ConfigError, from_pulumi

    try:
        config = from_pulumi(pulumi.Config("openbell"), pulumi.get_stack())
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    build(config)
