"""The analytics store (the read model): ClickHouse and ClickHouse Keeper, run by Altinity's operator.

- The operator (Helm, system node group) reconciles two custom resources:
  a `ClickHouseKeeperInstallation` (the Raft coordination service replicated tables need; 3 nodes in
  prod, one per zone) and a `ClickHouseInstallation` of `shards` x `replicas` servers whose replicas of
  a shard never share a zone.
- Every pod runs on the data pool (on-demand, tainted) with its own gp3 volume.
- PodDisruptionBudgets (one server pod, one keeper at a time) are declared here, and the operator's
  own per-cluster PDBs are switched off (`pdbManaged: "no"`): a pod matched by two PDBs cannot be
  evicted at all (the eviction API refuses), which would block every node drain.
- The enricher writes through a user of its own, limited to the VPC, whose password is a Kubernetes
  Secret the installation reads (`valueFrom.secretKeyRef`), never a literal in the CR.

The password: `pulumi config set --secret openbell-secrets:clickhouseEnricherPassword ...` sets it
(rotated by changing the value). Without it, a random one is generated on the first `pulumi up` and
kept: the program makes a new candidate each run, but the Secret ignores changes to its data, so the
stored value stays (pulumi_random, the usual tool, is not a dependency of this project). The
namespace is not `openbell:` because every `openbell:` key is validated against the stack schema.
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s

from infra import kube
from infra.cluster import DEFAULT_STORAGE_CLASS
from infra.config import PlatformConfig
from infra.kube import resources, system_placement

NAMESPACE = kube.NAMESPACES["clickhouse"]
INSTALLATION = "openbell"  # services: clickhouse-<name> (servers), keeper-<name> (keeper)
CLUSTER = "analytics"  # the ClickHouse cluster name in remote_servers (ON CLUSTER analytics)
KEEPER_CLUSTER = "keeper"
OPERATOR_REPO = "https://docs.altinity.com/clickhouse-operator/"
SERVER_IMAGE = "clickhouse/clickhouse-server"
# Keeper ships with the server and is released with it: the same pinned version for both.
KEEPER_IMAGE = "clickhouse/clickhouse-keeper"
KEEPER_PORT = 2181
HTTP_PORT = 8123
NATIVE_PORT = 9000
METRICS_PORT = 9363
KEEPER_METRICS_PORT = 7000
ENRICHER_USER = "enricher"
PASSWORD_KEY = "enricher-password"
SECRET_CONFIG = ("openbell-secrets", "clickhouseEnricherPassword")
STORAGE_CLASS = DEFAULT_STORAGE_CLASS  # the cluster's default class: encrypted gp3
# Keeper stores only Raft logs and snapshots of the replication metadata.
KEEPER_STORAGE_GI = 20
# Not in the stack schema (yet): prod servers ingest ~2.5 M enriched rows/s over the shards and answer
# analytics queries (8 vCPU / 32 GiB each, an r7i.2xlarge's worth); elsewhere a fraction of that.
SERVER_RESOURCES = {True: ("8", "32Gi"), False: ("2", "8Gi")}
KEEPER_RESOURCES = {True: ("1", "4Gi"), False: ("250m", "1Gi")}


class ClickHouseCluster(Protocol):
    """What ClickHouse needs of the EKS cluster: only its Kubernetes provider."""

    @property
    def provider(self) -> pulumi.ProviderResource: ...


def server_labels() -> dict[str, str]:
    """Labels of every ClickHouse server pod (set by the pod template; the PDB and spread select them)."""
    return kube.labels("clickhouse", "clickhouse-server")


def keeper_labels() -> dict[str, str]:
    """Labels of every Keeper pod."""
    return kube.labels("clickhouse", "clickhouse-keeper")


def pod_spec(container: dict[str, Any], match_labels: dict[str, str], one_per_zone: bool) -> dict[str, Any]:
    """A data-pool pod spec spread over zones; `one_per_zone` makes it a required zone anti-affinity."""
    spec: dict[str, Any] = {
        "containers": [container],
        **kube.data_placement(),
        "topologySpreadConstraints": kube.zone_spread(match_labels),
        # The clickhouse user (101) owns the data volume.
        "securityContext": {"fsGroup": 101, "runAsUser": 101, "runAsGroup": 101, "runAsNonRoot": True},
    }
    if one_per_zone:
        spec["affinity"] = kube.zone_anti_affinity(match_labels)
    return spec


def volume_claim(name: str, size_gi: int) -> dict[str, Any]:
    return {"name": name, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                                   "resources": {"requests": {"storage": f"{size_gi}Gi"}}}}


def pdb(name: str, resource_name: str, match_labels: dict[str, str], parent: pulumi.Resource,
        provider: pulumi.ProviderResource, depends_on: list[pulumi.Resource]) -> k8s.policy.v1.PodDisruptionBudget:
    """At most one pod of the set down for voluntary disruptions (drains, Karpenter, upgrades)."""
    return k8s.policy.v1.PodDisruptionBudget(
        resource_name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=NAMESPACE, labels=match_labels),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match_labels)),
        opts=kube.child(parent, provider=provider, depends_on=depends_on))


class ClickHouse(pulumi.ComponentResource):
    """Altinity's operator, ClickHouse Keeper and a sharded, replicated ClickHouse.

    `host` is the service over every server; `enricher_user` / `enricher_password` (a secret Output)
    are the enricher's credentials, `password_secret` the Secret (namespace clickhouse) holding them.
    """

    host: str
    namespace: str
    keeper_host: str
    enricher_user: str
    enricher_password: pulumi.Output[str]
    password_secret: str

    def __init__(self, name: str, cfg: PlatformConfig, cluster: ClickHouseCluster,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:ClickHouse", name, None, opts)
        provider = cluster.provider
        cc = cfg.clickhouse
        self.namespace = NAMESPACE
        self.host = f"clickhouse-{INSTALLATION}.{NAMESPACE}.svc"
        self.keeper_host = f"keeper-{INSTALLATION}.{NAMESPACE}.svc"
        self.enricher_user = ENRICHER_USER
        self.password_secret = f"{INSTALLATION}-clickhouse-users"

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": NAMESPACE, "labels": kube.labels("clickhouse")},
            opts=kube.child(self, provider=provider))

        # On an existing cluster Altinity's operator is the owner's.
        operator = None if cfg.existing else k8s.helm.v3.Release(
            f"{name}-operator",
            k8s.helm.v3.ReleaseArgs(
                name="clickhouse-operator",
                chart="altinity-clickhouse-operator",
                version=cc.operator_version,
                namespace=NAMESPACE,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=OPERATOR_REPO),
                values={
                    "operator": {"resources": resources("100m", "256Mi")},
                    "metrics": {"enabled": True, "resources": resources("50m", "128Mi")},
                    **system_placement(),
                },
            ),
            opts=kube.child(self, provider=provider, depends_on=[ns]))

        configured = pulumi.Config(SECRET_CONFIG[0]).get_secret(SECRET_CONFIG[1])
        password: pulumi.Input[str] = configured if configured is not None else pulumi.Output.secret(
            secrets.token_urlsafe(24))
        users_secret = k8s.core.v1.Secret(
            f"{name}-users",
            metadata={"name": self.password_secret, "namespace": NAMESPACE,
                      "labels": kube.labels("clickhouse", "clickhouse-users")},
            type="Opaque",
            string_data={PASSWORD_KEY: password},
            opts=pulumi.ResourceOptions.merge(
                kube.child(self, provider=provider, depends_on=[ns]),
                pulumi.ResourceOptions(
                    additional_secret_outputs=["data", "stringData"],
                    # A generated password is kept once created (see the module docstring).
                    ignore_changes=[] if configured is not None else ["stringData", "data"])))
        self.enricher_password = kube.secret_value(users_secret, PASSWORD_KEY)

        version = cc.clickhouse_version
        keeper_one_per_zone = cc.keeper_replicas <= len(cfg.network.azs)
        keeper = k8s.apiextensions.CustomResource(
            f"{name}-keeper",
            api_version="clickhouse-keeper.altinity.com/v1",
            kind="ClickHouseKeeperInstallation",
            metadata={"name": INSTALLATION, "namespace": NAMESPACE, "labels": kube.labels("clickhouse", "keeper")},
            spec={
                "configuration": {
                    "clusters": [{"name": KEEPER_CLUSTER, "layout": {"replicasCount": cc.keeper_replicas},
                                  # Our PDB below replaces the operator's (see the module docstring).
                                  "pdbManaged": "no"}],
                    "settings": {
                        "logger/level": "information",
                        "logger/console": "true",
                        "prometheus/endpoint": "/metrics",
                        "prometheus/port": KEEPER_METRICS_PORT,
                        "prometheus/metrics": "true",
                        "prometheus/events": "true",
                        "prometheus/asynchronous_metrics": "true",
                    },
                },
                "defaults": {"templates": {"podTemplate": "keeper", "dataVolumeClaimTemplate": "keeper-data"}},
                "templates": {
                    "podTemplates": [{
                        "name": "keeper",
                        "metadata": {"labels": keeper_labels()},
                        # Quorum survives a zone: one keeper per zone when there are no more keepers than zones.
                        "spec": pod_spec(
                            {"name": "clickhouse-keeper", "image": f"{KEEPER_IMAGE}:{version}",
                             "resources": resources(*KEEPER_RESOURCES[cfg.prod])},
                            keeper_labels(), one_per_zone=keeper_one_per_zone),
                    }],
                    "volumeClaimTemplates": [volume_claim("keeper-data", KEEPER_STORAGE_GI)],
                },
            },
            opts=kube.child(self, provider=provider, depends_on=kube.present(operator)))

        self.installation = k8s.apiextensions.CustomResource(
            f"{name}-installation",
            api_version="clickhouse.altinity.com/v1",
            kind="ClickHouseInstallation",
            metadata={"name": INSTALLATION, "namespace": NAMESPACE, "labels": kube.labels("clickhouse")},
            spec={
                "configuration": {
                    "zookeeper": {"nodes": [{"host": f"keeper-{INSTALLATION}", "port": KEEPER_PORT}]},
                    "users": {
                        f"{ENRICHER_USER}/password": {
                            "valueFrom": {"secretKeyRef": {"name": self.password_secret, "key": PASSWORD_KEY}}},
                        # Pods get VPC addresses (VPC CNI): only the VPC may log in as the enricher.
                        f"{ENRICHER_USER}/networks/ip": [cfg.network.cidr],
                        f"{ENRICHER_USER}/profile": "default",
                        f"{ENRICHER_USER}/quota": "default",
                    },
                    "settings": {
                        "prometheus/endpoint": "/metrics",
                        "prometheus/port": METRICS_PORT,
                        "prometheus/metrics": "true",
                        "prometheus/events": "true",
                        "prometheus/asynchronous_metrics": "true",
                    },
                    "clusters": [{
                        "name": CLUSTER,
                        "layout": {"shardsCount": cc.shards, "replicasCount": cc.replicas},
                        "pdbManaged": "no",
                        # Servers authenticate to each other with a generated shared secret, not as `default`.
                        "secret": {"auto": "true"},
                    }],
                },
                "defaults": {"templates": {"podTemplate": "server", "dataVolumeClaimTemplate": "server-data",
                                           "serviceTemplate": "internal"}},
                "templates": {
                    "podTemplates": [{
                        "name": "server",
                        "metadata": {"labels": server_labels()},
                        # The replicas of one shard never share a zone (the operator's shard anti-affinity),
                        # and all servers spread evenly over the zones.
                        "podDistribution": [{"type": "ShardAntiAffinity", "topologyKey": kube.ZONE}],
                        "spec": pod_spec(
                            {"name": "clickhouse", "image": f"{SERVER_IMAGE}:{version}",
                             "resources": resources(*SERVER_RESOURCES[cfg.prod])},
                            server_labels(), one_per_zone=False),
                    }],
                    "volumeClaimTemplates": [volume_claim("server-data", cc.storage_gi)],
                    # A ClusterIP service, never a load balancer: analytics is reached inside the VPC only.
                    "serviceTemplates": [{
                        "name": "internal",
                        "generateName": "clickhouse-{chi}",
                        "spec": {"type": "ClusterIP", "ports": [
                            {"name": "http", "port": HTTP_PORT, "targetPort": HTTP_PORT},
                            {"name": "tcp", "port": NATIVE_PORT, "targetPort": NATIVE_PORT}]},
                    }],
                },
            },
            opts=kube.child(self, provider=provider, depends_on=kube.present(operator, keeper, users_secret)))

        self.keeper = keeper
        self.keeper_pdb = pdb(f"{INSTALLATION}-keeper", f"{name}-keeper-pdb", keeper_labels(), self, provider, [ns])
        self.server_pdb = pdb(f"{INSTALLATION}-clickhouse", f"{name}-server-pdb", server_labels(), self, provider,
                              [ns])
        self.register_outputs({"host": self.host})
