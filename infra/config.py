"""The stack configuration: a typed schema, validated before any resource is declared.

Every stack file (stacks/Pulumi.<stack>.yaml) sets keys under the `openbell:` namespace; `load()` turns
them into a PlatformConfig or fails with ConfigError naming the key and what was expected. The same
validation runs inside the Pulumi program and in `openbell infra plan` (which reads the stack file
directly), so CI catches a bad value without cloud credentials.

Sized for production: 100,000 concurrent traders, 2.5 million ticks/s at peak, three availability zones.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

NAMESPACE = "openbell"
# Kubernetes versions whose EKS add-ons are pinned (infra/cluster.py ADDON_VERSIONS has a row for each).
SUPPORTED_KUBERNETES = ("1.30", "1.31", "1.32")


class ConfigError(ValueError):
    """A stack value is missing or invalid: `key` is the full config key, `expected` says what would do."""

    def __init__(self, source: str, key: str, expected: str) -> None:
        self.source, self.key, self.expected = source, key, expected
        super().__init__(f"{source}: {key}: {expected}")


def _meta(minimum: float | None = None, maximum: float | None = None, pattern: str | None = None,
          doc: str = "") -> dict[str, Any]:
    return {"min": minimum, "max": maximum, "pattern": pattern, "doc": doc}


def num(default: Any, minimum: float | None = None, maximum: float | None = None, doc: str = "") -> Any:
    return field(default=default, metadata=_meta(minimum, maximum, doc=doc))


def text(default: Any, pattern: str | None = None, doc: str = "") -> Any:
    return field(default=default, metadata=_meta(pattern=pattern, doc=doc))


def items(default: list[str], pattern: str | None = None, minimum: int | None = None, doc: str = "") -> Any:
    return field(default_factory=lambda: list(default), metadata=_meta(minimum, pattern=pattern, doc=doc))


def section(cls: type) -> Any:
    return field(default_factory=cls)


_VERSION = r"^\d+\.\d+(\.\d+)?$"
_IMAGE_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$|^sha256:[a-f0-9]{64}$"
_CIDR = r"^(\d{1,3}\.){3}\d{1,3}/(1[6-9]|2[0-4])$"
_AZ = r"^[a-z]{2}-[a-z]+-\d[a-z]$"
_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$"
_WINDOW = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str = text("10.40.0.0/16", _CIDR, "the VPC's CIDR, /16 to /24")
    azs: list[str] = items(["us-east-1a", "us-east-1b", "us-east-1c"], _AZ, 3,
                           "availability zones, at least three")
    nat_gateways: Literal["single", "per-az"] = text("per-az", doc="one NAT gateway, or one per zone")


@dataclass(frozen=True)
class NodeGroupConfig:
    instance_types: list[str] = items(["m7i.large"], r"^[a-z0-9]+\.[a-z0-9]+$", 1)
    min_size: int = num(2, 1, 20)
    desired_size: int = num(2, 1, 20)
    max_size: int = num(3, 1, 20)


@dataclass(frozen=True)
class ClusterConfig:
    version: str = text("1.31", r"^1\.3[012]$",
                        "an EKS version with pinned add-ons: " + ", ".join(SUPPORTED_KUBERNETES))
    system_nodes: NodeGroupConfig = section(NodeGroupConfig)
    admin_role_arns: list[str] = items([], _ARN, doc="IAM roles given cluster-admin through access entries")
    log_types: list[str] = items(["api", "audit", "authenticator", "controllerManager", "scheduler"],
                                 r"^(api|audit|authenticator|controllerManager|scheduler)$", 1)
    public_endpoint: bool = False
    # Who may reach a public API endpoint (the deployer's CI egress, a VPN): never 0.0.0.0/0 in prod.
    public_access_cidrs: list[str] = items([], r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$", doc="IPv4 CIDRs")


@dataclass(frozen=True)
class NodePoolConfig:
    capacity_types: list[str] = items(["spot", "on-demand"], r"^(spot|on-demand)$", 1)
    instance_families: list[str] = items(["c7i", "c7a", "c6i"], r"^[a-z][a-z0-9-]*$", 1)
    cpu_limit: int = num(2000, 8, 100000, "vCPUs the pool may hold in all")
    memory_limit_gi: int = num(4000, 16, 400000)


@dataclass(frozen=True)
class KarpenterConfig:
    version: str = text("1.3.3", _VERSION)
    gateway: NodePoolConfig = section(NodePoolConfig)
    data: NodePoolConfig = field(default_factory=lambda: NodePoolConfig(
        capacity_types=["on-demand"], instance_families=["r7i", "r7a", "r6i"], cpu_limit=1000,
        memory_limit_gi=8000))
    market_hours_utc: str = text("13:00-21:00", _WINDOW,
                                 "HH:MM-HH:MM (UTC) when the gateway pool may not be disrupted voluntarily")
    market_days: str = text("mon-fri", r"^(mon|tue|wed|thu|fri|sat|sun)-(mon|tue|wed|thu|fri|sat|sun)$")


@dataclass(frozen=True)
class TopicConfig:
    ticks: int = num(96, 1, 10000)
    enriched: int = num(96, 1, 10000)
    orders: int = num(12, 1, 10000)


@dataclass(frozen=True)
class KafkaConfig:
    version: str = text("4.1.0", _VERSION, "Apache Kafka version run by Strimzi")
    strimzi_version: str = text("0.48.0", _VERSION)
    controllers: int = num(3, 1, 9)
    brokers: int = num(6, 1, 100)
    broker_storage_gi: int = num(1000, 10, 16000)
    broker_cpu: str = text("8", r"^\d+(\.\d+)?m?$")
    broker_memory: str = text("32Gi", r"^\d+(Mi|Gi)$")
    replication_factor: int = num(3, 1, 5)
    min_insync_replicas: int = num(2, 1, 4)
    partitions: TopicConfig = section(TopicConfig)


@dataclass(frozen=True)
class PostgresConfig:
    cnpg_version: str = text("0.26.0", _VERSION, "CloudNativePG Helm chart version")
    postgres_version: str = text("17", r"^1[4-8]$")
    instances: int = num(3, 1, 9)
    storage_gi: int = num(500, 10, 64000)
    cpu: str = text("4", r"^\d+(\.\d+)?m?$")
    memory: str = text("16Gi", r"^\d+(Mi|Gi)$")
    backup_retention_days: int = num(30, 1, 3650)


@dataclass(frozen=True)
class ClickHouseConfig:
    operator_version: str = text("0.25.4", _VERSION, "Altinity clickhouse-operator chart version")
    clickhouse_version: str = text("25.8", r"^\d+\.\d+(\.\d+){0,2}$")
    shards: int = num(2, 1, 64)
    replicas: int = num(3, 1, 9)
    keeper_replicas: int = num(3, 1, 7)
    storage_gi: int = num(1000, 10, 64000)


@dataclass(frozen=True)
class ServiceScale:
    min_replicas: int = num(2, 1, 500)
    max_replicas: int = num(4, 1, 500)
    cpu: str = text("1", r"^\d+(\.\d+)?m?$")
    memory: str = text("1Gi", r"^\d+(Mi|Gi)$")


@dataclass(frozen=True)
class AppsConfig:
    registry: str = text("123456789012.dkr.ecr.us-east-1.amazonaws.com/openbell",
                         r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+$", "container registry path for services/ images")
    tag: str = text("1.0.0", _IMAGE_TAG, "image tag or sha256 digest (never `latest`)")
    # 100,000 traders at ~5,000 WebSockets per pod, plus headroom for a lost zone: 24 at peak.
    gateway: ServiceScale = field(default_factory=lambda: ServiceScale(8, 36, "2", "4Gi"))
    connections_per_pod: int = num(5000, 100, 50000, "HPA target: open WebSockets per gateway pod")
    enricher: ServiceScale = field(default_factory=lambda: ServiceScale(6, 24, "2", "4Gi"))
    # One feed: two replicas of the same feed would publish two sessions, and consumers keep only the newest.
    feed: ServiceScale = field(default_factory=lambda: ServiceScale(1, 1, "1", "1Gi"))
    ledger: ServiceScale = field(default_factory=lambda: ServiceScale(3, 12, "1", "2Gi"))
    hostname: str = text("market.openbell.example", r"^[a-z0-9.-]+$")
    canary_weight: int = num(0, 0, 100, "the canary's weight at deploy time (openbell canary drives it)")


@dataclass(frozen=True)
class ObservabilityConfig:
    prometheus_stack_version: str = text("77.0.0", _VERSION, "kube-prometheus-stack chart version")
    retention_days: int = num(15, 1, 90)
    tempo: bool = True
    tempo_version: str = text("1.23.0", _VERSION)
    otel_collector_version: str = text("0.131.0", _VERSION)
    runbook_base_url: str = text("https://github.com/openbell/openbell/blob/main/runbooks/",
                                 r"^https://\S+/$")
    pager_receiver: str = text("pagerduty-market-data", r"^[a-z0-9-]+$")


@dataclass(frozen=True)
class ToolingConfig:
    k6_operator: bool = True
    k6_operator_version: str = text("3.14.0", _VERSION)
    chaos_mesh: bool = False
    chaos_mesh_version: str = text("2.7.2", _VERSION)


@dataclass(frozen=True)
class NodeClassRef:
    """The Karpenter node class the NodePools use on an existing cluster (its owner's, not this program's)."""

    group: str = text("karpenter.k8s.aws", r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "an API group")
    kind: str = text("EC2NodeClass", r"^[A-Z][A-Za-z0-9]*$", "a kind, e.g. EC2NodeClass")
    name: str = text("default", r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "a node class name")


@dataclass(frozen=True)
class ExistingClusterConfig:
    """target: existing-cluster. The cluster, its network, nodes' IAM, the backup bucket and the operators (Strimzi,
    CloudNativePG with the Barman Cloud plugin, Altinity, the Prometheus Operator, Envoy Gateway, Karpenter) are
    someone else's: the program declares only the platform's Kubernetes objects and custom resources."""

    context: str = text("", r"^[A-Za-z0-9@._:/-]*$", "a kubeconfig context name (empty: the kubeconfig's current)")
    node_class: NodeClassRef = section(NodeClassRef)
    backup_destination: str = text("", r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?/$",
                                   "an s3://bucket/prefix/ the ledger's backups go to (ending in /)")


@dataclass(frozen=True)
class PlatformConfig:
    """Everything a stack sets. Defaults are production-sized; dev and staging override them."""

    environment: Literal["dev", "staging", "prod"] = text("dev")
    # aws: the whole platform, the VPC and EKS included; existing-cluster: its Kubernetes layer on a cluster
    # someone else runs (existingCluster says which), no AWS resource and no Helm chart.
    target: Literal["aws", "existing-cluster"] = text("aws")
    existing_cluster: ExistingClusterConfig = section(ExistingClusterConfig)
    region: str = text("us-east-1", r"^[a-z]{2}-[a-z]+-\d$")
    network: NetworkConfig = section(NetworkConfig)
    cluster: ClusterConfig = section(ClusterConfig)
    karpenter: KarpenterConfig = section(KarpenterConfig)
    kafka: KafkaConfig = section(KafkaConfig)
    postgres: PostgresConfig = section(PostgresConfig)
    clickhouse: ClickHouseConfig = section(ClickHouseConfig)
    apps: AppsConfig = section(AppsConfig)
    observability: ObservabilityConfig = section(ObservabilityConfig)
    tooling: ToolingConfig = section(ToolingConfig)

    @property
    def prod(self) -> bool:
        return self.environment == "prod"

    @property
    def existing(self) -> bool:
        """Only the Kubernetes layer, on a cluster that exists (target: existing-cluster)."""
        return self.target == "existing-cluster"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _build(cls: type, raw: Any, key: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(source, key, f"expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {_camel(f.name): f for f in dataclasses.fields(cls)}
    for name in raw:
        if name not in known:
            raise ConfigError(source, f"{key}.{name}" if key else name,
                              f"unknown key; expected one of {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for camel, f in known.items():
        if camel in raw:
            values[f.name] = _value(hints[f.name], raw[camel], f"{key}.{camel}" if key else camel, source,
                                    f.metadata)
    try:
        return cls(**values)
    except TypeError as exc:  # pragma: no cover - every field has a default
        raise ConfigError(source, key, str(exc)) from None


def _value(hint: Any, raw: Any, key: str, source: str, meta: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, raw, key, source)  # type: ignore[arg-type]
    if origin is Literal:
        allowed = typing.get_args(hint)
        if raw not in allowed:
            raise ConfigError(source, key, f"expected one of {', '.join(map(str, allowed))}, got {raw!r}")
        return raw
    if origin is list:
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise ConfigError(source, key, f"expected a list of strings, got {raw!r}")
        if meta.get("min") is not None and len(raw) < meta["min"]:
            raise ConfigError(source, key, f"expected at least {meta['min']:g} items, got {len(raw)}")
        for item in raw:
            _check_pattern(item, key, source, meta)
        if len(set(raw)) != len(raw):
            raise ConfigError(source, key, f"expected distinct items, got {raw!r}")
        return list(raw)
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(source, key, f"expected true or false, got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(source, key, f"expected an integer, got {raw!r}")
        _check_range(raw, key, source, meta)
        return raw
    if hint is str:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = str(raw)  # YAML reads 1.31 or 17 as numbers
        if not isinstance(raw, str):
            raise ConfigError(source, key, f"expected a string, got {raw!r}")
        _check_pattern(raw, key, source, meta)
        return raw
    if isinstance(hint, types.UnionType):  # pragma: no cover - not used by the schema today
        raise ConfigError(source, key, "unsupported type")
    raise ConfigError(source, key, f"unsupported type {hint!r}")  # pragma: no cover


def _check_range(value: float, key: str, source: str, meta: Any) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(source, key, f"expected a number within {lo:g}..{hi:g}, got {value}")


def _check_pattern(value: str, key: str, source: str, meta: Any) -> None:
    pattern = meta.get("pattern")
    if pattern and not re.fullmatch(pattern, value):
        doc = meta.get("doc") or f"a value matching {pattern}"
        raise ConfigError(source, key, f"expected {doc}, got {value!r}")


def _consistency(cfg: PlatformConfig, source: str) -> None:
    """Rules that tie several keys together."""
    def at_most(a: int, b: int, key_a: str, key_b: str) -> None:
        if a > b:
            raise ConfigError(source, key_a, f"expected at most {key_b} ({b}), got {a}")

    if cfg.existing and not cfg.existing_cluster.backup_destination:
        raise ConfigError(source, "existingCluster.backupDestination",
                          "expected the s3://bucket/prefix/ for the ledger's backups (target existing-cluster: "
                          "the bucket is not created here)")
    if cfg.apps.feed.max_replicas != 1:
        raise ConfigError(source, "apps.feed.maxReplicas",
                          "expected 1: the feed is one session per topic (consumers keep only the newest)")
    for name in ("gateway", "enricher", "feed", "ledger"):
        scale = getattr(cfg.apps, name)
        at_most(scale.min_replicas, scale.max_replicas, f"apps.{name}.minReplicas", f"apps.{name}.maxReplicas")
    if cfg.apps.tag == "latest":
        raise ConfigError(source, "apps.tag", "expected a pinned tag or sha256 digest, not `latest`")
    import ipaddress

    try:
        ipaddress.IPv4Network(cfg.network.cidr)  # strict: host bits set is refused, as AWS does
    except ValueError as exc:
        raise ConfigError(source, "network.cidr", f"expected a network address like 10.40.0.0/16 ({exc})") from None
    for az in cfg.network.azs:
        if not az.startswith(cfg.region):
            raise ConfigError(source, "network.azs", f"expected zones of {cfg.region}, got {az!r}")
    start, _, end = cfg.karpenter.market_hours_utc.partition("-")
    if start == end:
        raise ConfigError(source, "karpenter.marketHoursUtc", "expected a window with different start and end")
    if cfg.clickhouse.keeper_replicas % 2 == 0:
        raise ConfigError(source, "clickhouse.keeperReplicas", "expected an odd number (a Raft quorum)")
    if cfg.clickhouse.replicas > len(cfg.network.azs):
        raise ConfigError(source, "clickhouse.replicas", f"expected at most one replica per zone "
                          f"({len(cfg.network.azs)}), got {cfg.clickhouse.replicas}")
    if int(cfg.kafka.broker_memory[:-2]) * (1024 if cfg.kafka.broker_memory.endswith("Gi") else 1) < 2048:
        raise ConfigError(source, "kafka.brokerMemory", f"expected at least 2Gi, got {cfg.kafka.broker_memory}")
    if cfg.kafka.replication_factor > 1 and cfg.kafka.min_insync_replicas >= cfg.kafka.replication_factor:
        raise ConfigError(source, "kafka.minInsyncReplicas",
                          f"expected less than kafka.replicationFactor ({cfg.kafka.replication_factor}): "
                          "losing one broker must not stop producers")
    arm = {t for t in cfg.cluster.system_nodes.instance_types if re.match(r"^[a-z]+\d+g", t)}
    if arm and arm != set(cfg.cluster.system_nodes.instance_types):
        raise ConfigError(source, "cluster.systemNodes.instanceTypes",
                          "expected one architecture (all Graviton or all x86): one AMI serves the group")
    nodes = cfg.cluster.system_nodes
    at_most(nodes.min_size, nodes.desired_size, "cluster.systemNodes.minSize", "cluster.systemNodes.desiredSize")
    at_most(nodes.desired_size, nodes.max_size, "cluster.systemNodes.desiredSize", "cluster.systemNodes.maxSize")
    at_most(cfg.kafka.min_insync_replicas, cfg.kafka.replication_factor, "kafka.minInsyncReplicas",
            "kafka.replicationFactor")
    at_most(cfg.kafka.replication_factor, cfg.kafka.brokers, "kafka.replicationFactor", "kafka.brokers")
    if "on-demand" not in cfg.karpenter.data.capacity_types or "spot" in cfg.karpenter.data.capacity_types:
        raise ConfigError(source, "karpenter.data.capacityTypes",
                          "expected [on-demand] only: the data tier never runs on spot")
    if cfg.environment != "dev" and not cfg.existing and not cfg.cluster.admin_role_arns:
        # The cluster is created without the creator's implicit admin: without an access entry for the
        # deployer (CI) role, the first Kubernetes object of `pulumi up` would be refused.
        raise ConfigError(source, "cluster.adminRoleArns",
                          "expected at least one IAM role (the deployer's) outside dev")
    if cfg.prod:
        for key, value, minimum in (("kafka.controllers", cfg.kafka.controllers, 3),
                                    ("kafka.brokers", cfg.kafka.brokers, 3),
                                    ("kafka.replicationFactor", cfg.kafka.replication_factor, 3),
                                    ("kafka.minInsyncReplicas", cfg.kafka.min_insync_replicas, 2),
                                    ("postgres.instances", cfg.postgres.instances, 3),
                                    ("clickhouse.replicas", cfg.clickhouse.replicas, 3),
                                    ("clickhouse.keeperReplicas", cfg.clickhouse.keeper_replicas, 3)):
            if value < minimum:
                raise ConfigError(source, key, f"expected at least {minimum} in prod, got {value}")
        if cfg.network.nat_gateways != "per-az" and not cfg.existing:
            raise ConfigError(source, "network.natGateways", "expected per-az in prod (a NAT per zone)")
        if not cfg.existing and cfg.cluster.public_endpoint and (not cfg.cluster.public_access_cidrs
                                            or "0.0.0.0/0" in cfg.cluster.public_access_cidrs):
            raise ConfigError(source, "cluster.publicAccessCidrs",
                              "expected the deployer's CIDRs (not 0.0.0.0/0) when prod's API endpoint is public")


def from_values(values: dict[str, Any], source: str = "stack config") -> PlatformConfig:
    """Validate a mapping of config keys (with or without the `openbell:` prefix; `aws:region` too)."""
    raw: dict[str, Any] = {}
    for key, value in values.items():
        if key == "aws:region":
            raw["region"] = value
            continue
        ns, sep, name = key.partition(":")
        if sep and ns != NAMESPACE:
            continue  # other providers' keys (kubernetes:..., pulumi:...) are not ours to check
        raw[name if sep else key] = value
    cfg: PlatformConfig = _build(PlatformConfig, raw, "", source)
    _consistency(cfg, source)
    return cfg


def load_stack_file(path: Path) -> PlatformConfig:
    """Read stacks/Pulumi.<stack>.yaml and validate its `config:` block."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "", "no such stack file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"not valid YAML ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise ConfigError(str(path), "config", "expected a `config:` mapping")
    values = {k: (v.get("value") if isinstance(v, dict) and set(v) == {"value"} else v)
              for k, v in document["config"].items()}
    return from_values(values, str(path))


def from_pulumi(config: Any, stack: str) -> PlatformConfig:
    """Inside the Pulumi program: every `openbell:` key plus `aws:region`, validated the same way."""
    import json

    import pulumi

    values: dict[str, Any] = {}
    for key in [_camel(f.name) for f in dataclasses.fields(PlatformConfig)]:
        raw = config.get(key)
        if raw is None:
            continue
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    region = pulumi.Config("aws").get("region")
    if region:
        values["aws:region"] = region
    return from_values(values, f"stack {stack}")
