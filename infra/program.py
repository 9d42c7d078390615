"""The whole platform, in dependency order: one ComponentResource per part.

network -> cluster (EKS) -> karpenter (node pools) -> data tier (Kafka, PostgreSQL, ClickHouse) and
observability -> the services (gateway, enricher, feed, ledger) -> in-cluster tooling (k6-operator,
Chaos Mesh). `build(cfg)` is all the Pulumi program does; the offline plan and the tests call it too.
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
    from infra.cluster import Cluster
    from infra.kafka import Kafka
    from infra.karpenter import Karpenter
    from infra.network import Network
    from infra.observability import Observability
    from infra.postgres import Postgres
    from infra.tooling import Tooling

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
    outputs = {
        "vpcId": network.vpc.id,
        "clusterName": cluster.name,
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
