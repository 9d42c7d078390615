"""The rules the platform lives by, as pure functions over declared resources.

Each rule looks at a resource's type token (e.g. `kubernetes:apps/v1:Deployment`, `aws:sqs/queue:Queue`) and
its properties, and returns what is wrong in one line each. Some rules need the whole stack (a PDB that
selects a Deployment's pods, a public-access block that refers to a bucket): those are stack checks over
every resource. The same functions run in two places, so they always agree:

- the pulumi_policy pack (infra/policies/__main__.py), for `pulumi preview --policy-pack infra/policies`;
- `openbell infra plan --offline`, over the resources recorded under pulumi's mocks.

Nothing here imports pulumi: the rules are data in, messages out. Properties may hold Pulumi's camelCase
inputs (as the engine and the mocks see them), numbers as floats, and - in a real preview - `UNKNOWN`
for values computed later; a check never fails on a value it cannot know.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Props = Mapping[str, Any]

POOL_LABEL = "openbell.dev/pool"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
ZONE = "topology.kubernetes.io/zone"
# The data tier's namespaces (infra/kube.py NAMESPACES kafka/postgres/clickhouse; a test keeps them equal).
DATA_NAMESPACES = frozenset({"kafka", "postgres", "clickhouse"})
ON_DEMAND = frozenset({"on-demand", "reserved"})


class _Unknown:
    """A value a preview cannot know yet (an ARN, an id): present, but never compared."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Context:
    """What a rule may depend on besides the resource: the stack's environment (dev, staging, prod)."""

    environment: str = "dev"

    @property
    def prod(self) -> bool:
        return self.environment == "prod"


@dataclass(frozen=True)
class Resource:
    """A declared resource. `refs` maps a property to the names of the resources its value came from (a
    public-access block's `bucket` -> the bucket), which is how stack checks connect resources."""

    type: str
    name: str
    props: Props
    refs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str
    type: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "resource": self.resource, "type": self.type, "message": self.message}


ResourceCheck = Callable[[str, Props, Context], list[str]]
StackCheck = Callable[[Sequence[Resource], Context], list[tuple[Resource, str]]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None


# --- reading properties --------------------------------------------------------------------------------


def get(obj: Any, *path: str | int) -> Any:
    """obj[path[0]][path[1]]..., None where anything on the way is missing."""
    for key in path:
        if isinstance(key, int):
            if not isinstance(obj, Sequence) or isinstance(obj, str) or key >= len(obj):
                return None
        elif not isinstance(obj, Mapping):
            return None
        obj = obj[key] if isinstance(key, int) else obj.get(key)
    return obj


def items(value: Any) -> list[Any]:
    """A list property as a list ([] when missing or unknown)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return []


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def known(value: Any) -> bool:
    return value is not UNKNOWN


def number(value: Any, default: float | None = None) -> float | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    return default


def truthy(value: Any) -> bool:
    """True for true/"true"/"yes"... - AWS and operators spell booleans as strings too."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "enabled", "enable")


def falsy(value: Any) -> bool:
    """Explicitly false (missing is neither)."""
    if isinstance(value, bool):
        return not value
    return isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off", "disabled", "disable")


def k8s(type_: str) -> tuple[str, str] | None:
    """(apiVersion, kind) of a Kubernetes resource type token: kubernetes:apps/v1:Deployment -> (apps/v1,
    Deployment), kubernetes:core/v1:Service -> (v1, Service); None for anything else."""
    parts = type_.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or parts[1].startswith(("helm.sh", "yaml", "kustomize")):
        return None
    api_version = parts[1][len("core/"):] if parts[1].startswith("core/") else parts[1]
    return api_version, parts[2]


def kind_of(type_: str) -> str | None:
    found = k8s(type_)
    return found[1] if found else None


def namespace(props: Props) -> str:
    ns = get(props, "metadata", "namespace")
    return ns if isinstance(ns, str) and ns else "default"


def name_of(props: Props, fallback: str = "") -> str:
    name = get(props, "metadata", "name")
    return name if isinstance(name, str) and name else fallback


WORKLOADS = {"Deployment": "apps", "StatefulSet": "apps", "DaemonSet": "apps", "ReplicaSet": "apps", "Job": "batch",
             "CronJob": "batch", "Pod": "", "ReplicationController": ""}
"""Core kinds with a pod template, and their API group."""


def pod_specs(type_: str, props: Props) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, pod spec) of every pod template in a resource: core workloads and the operators' CRs whose
    pod templates are plain PodSpecs (Altinity's podTemplates)."""
    kind = kind_of(type_)
    if kind in WORKLOADS and _group(type_) == WORKLOADS[kind]:
        if kind == "Pod":
            yield "spec", mapping(get(props, "spec"))
        elif kind == "CronJob":
            yield "spec.jobTemplate.spec.template.spec", mapping(get(props, "spec", "jobTemplate", "spec", "template",
                                                                     "spec"))
        else:
            yield "spec.template.spec", mapping(get(props, "spec", "template", "spec"))
    elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        for i, template in enumerate(items(get(props, "spec", "templates", "podTemplates"))):
            yield f"spec.templates.podTemplates[{i}].spec", mapping(get(template, "spec"))


def _group(type_: str) -> str:
    found = k8s(type_)
    if not found:
        return ""
    return found[0].rsplit("/", 1)[0] if "/" in found[0] else ""


def containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for key in ("initContainers", "containers"):
        for i, c in enumerate(items(pod.get(key))):
            yield f"{key}[{i}]", mapping(c)


def replicas(type_: str, props: Props) -> float:
    """The replica count a workload or an operator CR asks for (1 when unset)."""
    kind = kind_of(type_)
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        return number(get(props, "spec", "replicas"), 1.0) or 0.0
    if kind == "KafkaNodePool":
        return number(get(props, "spec", "replicas"), 0.0) or 0.0
    if kind == "Cluster" and _group(type_) == "postgresql.cnpg.io":
        return number(get(props, "spec", "instances"), 1.0) or 0.0
    if kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        counts = [number(get(c, "layout", "replicasCount"), 1.0) or 0.0
                  for c in items(get(props, "spec", "configuration", "clusters"))]
        return min(counts) if counts else 1.0
    return 1.0


# --- placement -----------------------------------------------------------------------------------------


def _term_pins(term: Any, key: str, allowed: frozenset[str]) -> bool | None:
    """Whether a node selector term pins `key` to values within `allowed` (None: it does not mention key)."""
    for expr in items(get(term, "matchExpressions")):
        if get(expr, "key") != key:
            continue
        values = {str(v) for v in items(get(expr, "values"))}
        # Only In narrows a label to a known set; NotIn/Exists leave every other value possible.
        return get(expr, "operator") == "In" and bool(values) and values <= allowed
    return None


def pins(placement: Mapping[str, Any], key: str, allowed: frozenset[str]) -> bool:
    """The pod may only land on nodes whose `key` label is in `allowed` (nodeSelector, or every required
    node-affinity term - they are ORed)."""
    selected = get(placement, "nodeSelector", key)
    if isinstance(selected, str) and selected in allowed:
        return True
    terms = items(get(placement, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
                      "nodeSelectorTerms"))
    return bool(terms) and all(_term_pins(t, key, allowed) for t in terms)


def allows_spot(placement: Mapping[str, Any]) -> bool:
    """The pod asks for spot capacity explicitly (nodeSelector or a required term)."""
    if get(placement, "nodeSelector", CAPACITY_TYPE) == "spot":
        return True
    terms = items(get(placement, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
                      "nodeSelectorTerms"))
    for term in terms:
        for expr in items(get(term, "matchExpressions")):
            if get(expr, "key") == CAPACITY_TYPE and get(expr, "operator") == "In" and "spot" in items(
                    get(expr, "values")):
                return True
    return False


def on_data_pool(placement: Mapping[str, Any]) -> bool:
    return pins(placement, POOL_LABEL, frozenset({"data"})) or pins(placement, CAPACITY_TYPE, ON_DEMAND)


def data_placements(type_: str, props: Props) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, placement) of every data-tier pod a resource creates; a placement has nodeSelector/affinity/
    tolerations/topologySpreadConstraints keys like a pod spec."""
    kind, group = kind_of(type_), _group(type_)
    if kind == "KafkaNodePool":
        yield "spec.template.pod", mapping(get(props, "spec", "template", "pod"))
    elif kind == "Cluster" and group == "postgresql.cnpg.io":
        yield "spec.affinity", mapping(get(props, "spec", "affinity"))
    elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation") or (
            kind == "StatefulSet" and namespace(props) in DATA_NAMESPACES):
        yield from pod_specs(type_, props)


def _spreads_over_zones(placement: Mapping[str, Any]) -> bool:
    for tsc in items(placement.get("topologySpreadConstraints")):
        if get(tsc, "topologyKey") == ZONE and get(tsc, "whenUnsatisfiable") == "DoNotSchedule":
            return True
    for term in items(get(placement, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution")):
        if get(term, "topologyKey") == ZONE:
            return True
    return False


def _pool_data(props: Props) -> bool:
    """A NodePool that is (or claims to be) the data pool: named data, or labelling/tainting its nodes so."""
    if name_of(props) == "data":
        return True
    spec = mapping(get(props, "spec", "template"))
    if get(spec, "metadata", "labels", POOL_LABEL) == "data":
        return True
    return any(get(t, "key") == POOL_LABEL and get(t, "value") == "data" for t in items(get(spec, "spec", "taints")))


# --- rule: data-tier-never-on-spot ---------------------------------------------------------------------


def data_tier_never_on_spot(type_: str, props: Props, ctx: Context) -> list[str]:
    """The data pool is on-demand only, and every data-tier pod is pinned to it (or to on-demand nodes):
    a spot reclaim takes a broker, a Postgres primary or a ClickHouse replica with two minutes' notice."""
    out: list[str] = []
    kind = kind_of(type_)
    if kind == "NodePool" and _group(type_) == "karpenter.sh" and _pool_data(props):
        requirements = items(get(props, "spec", "template", "spec", "requirements"))
        capacity = [r for r in requirements if get(r, "key") == CAPACITY_TYPE]
        if not capacity:
            out.append(f"NodePool {name_of(props)!r} (data) does not pin {CAPACITY_TYPE}: "
                       "add a requirement `In [on-demand]`")
        for r in capacity:
            op, values = get(r, "operator"), {str(v) for v in items(get(r, "values"))}
            if op == "In" and not values <= ON_DEMAND:
                out.append(f"NodePool {name_of(props)!r} (data) allows {sorted(values - ON_DEMAND)} capacity: "
                           "the data tier never runs on spot")
            elif op == "NotIn" and "spot" not in values:
                out.append(f"NodePool {name_of(props)!r} (data): {CAPACITY_TYPE} NotIn {sorted(values)} still "
                           "allows spot")
            elif op not in ("In", "NotIn"):
                out.append(f"NodePool {name_of(props)!r} (data): {CAPACITY_TYPE} {op} does not exclude spot")
        return out
    for path, placement in data_placements(type_, props):
        if allows_spot(placement):
            out.append(f"{kind} {name_of(props)!r}: {path} asks for spot capacity; the data tier never runs on spot")
        elif not on_data_pool(placement):
            out.append(f"{kind} {name_of(props)!r}: {path} does not pin the data pool ({POOL_LABEL}=data) or "
                       f"on-demand capacity ({CAPACITY_TYPE}=on-demand) with a nodeSelector or required node "
                       "affinity, so its pods may land on spot nodes")
    return out


# --- rule: stateful-spread-3-zones-in-prod -------------------------------------------------------------


def _clickhouse_zone_distribution(props: Props) -> bool:
    """Every pod template spreads over zones: a podDistribution on the zone key, or the PodSpec's own spread."""
    templates = items(get(props, "spec", "templates", "podTemplates"))
    if not templates:
        return False
    for template in templates:
        by_distribution = any(get(d, "topologyKey") == ZONE for d in items(get(template, "podDistribution")))
        if not by_distribution and not _spreads_over_zones(mapping(get(template, "spec"))):
            return False
    return True


def stateful_spread_3_zones(type_: str, props: Props, ctx: Context) -> list[str]:
    """In prod, each stateful set (Kafka node pools, the Postgres cluster, ClickHouse and its Keeper) has at
    least three members spread over zones with a hard constraint, so losing a zone loses one member."""
    if not ctx.prod:
        return []
    kind, group, name = kind_of(type_), _group(type_), name_of(props)
    out: list[str] = []
    if kind == "NodePool" and group == "karpenter.sh":
        for r in items(get(props, "spec", "template", "spec", "requirements")):
            values = items(get(r, "values"))
            if get(r, "key") == ZONE and get(r, "operator") == "In" and len(values) < 3:
                out.append(f"NodePool {name!r} limits nodes to {len(values)} zone(s) {values}: prod needs >= 3")
        return out
    stateful = kind in ("KafkaNodePool", "ClickHouseInstallation", "ClickHouseKeeperInstallation") or (
        kind == "Cluster" and group == "postgresql.cnpg.io") or (
        kind == "StatefulSet" and namespace(props) in DATA_NAMESPACES)
    if not stateful:
        return out
    count = replicas(type_, props)
    if count < 3:
        out.append(f"{kind} {name!r} has {count:g} replica(s): prod needs >= 3 to span three zones")
    if kind == "Cluster":
        affinity = mapping(get(props, "spec", "affinity"))
        cnpg_ok = (not falsy(affinity.get("enablePodAntiAffinity")) and affinity.get("topologyKey") == ZONE
                   and affinity.get("podAntiAffinityType") == "required")
        spread_ok = any(get(t, "topologyKey") == ZONE and get(t, "whenUnsatisfiable") == "DoNotSchedule"
                        for t in items(get(props, "spec", "topologySpreadConstraints")))
        if not (cnpg_ok or spread_ok):
            out.append(f"Cluster {name!r}: set spec.affinity topologyKey {ZONE} with podAntiAffinityType required "
                       "(or a DoNotSchedule zone spread) so no two instances share a zone")
    elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        if not _clickhouse_zone_distribution(props):
            out.append(f"{kind} {name!r}: every podTemplate needs a zone podDistribution (topologyKey {ZONE}) or a "
                       "DoNotSchedule zone topologySpreadConstraint / required zone anti-affinity")
    else:
        for path, placement in data_placements(type_, props):
            if not _spreads_over_zones(placement):
                out.append(f"{kind} {name!r}: {path} needs a topologySpreadConstraint on {ZONE} with "
                           "whenUnsatisfiable DoNotSchedule (or required zone anti-affinity)")
    return out


# --- rule: pdb-for-replicated-workloads ----------------------------------------------------------------


def selects(selector: Any, labels: Mapping[str, Any]) -> bool:
    """A metav1.LabelSelector against a label set (an empty selector selects everything)."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in mapping(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in items(selector.get("matchExpressions")):
        key, op, values = get(expr, "key"), get(expr, "operator"), items(get(expr, "values"))
        present = key in labels
        if (op == "In" and (not present or labels[key] not in values)) or (
                op == "NotIn" and present and labels[key] in values) or (
                op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


@dataclass(frozen=True)
class _PodGroup:
    """Pods some resource creates: their labels, how many, and whether their operator brings its own PDB."""

    resource: Resource
    namespace: str
    labels: Mapping[str, Any]
    replicas: float
    operator_pdb: bool


def _pod_groups(resources: Sequence[Resource]) -> list[_PodGroup]:
    hpa_min: dict[tuple[str, str, str], float] = {}
    for r in resources:
        if kind_of(r.type) == "HorizontalPodAutoscaler":
            target = mapping(get(r.props, "spec", "scaleTargetRef"))
            key = (namespace(r.props), str(target.get("kind")), str(target.get("name")))
            hpa_min[key] = number(get(r.props, "spec", "minReplicas"), 1.0) or 1.0
    groups: list[_PodGroup] = []
    for r in resources:
        kind, props, ns = kind_of(r.type), r.props, namespace(r.props)
        if kind in ("Deployment", "StatefulSet"):
            count = max(replicas(r.type, props), hpa_min.get((ns, kind, name_of(props)), 0.0))
            labels = mapping(get(props, "spec", "template", "metadata", "labels"))
            groups.append(_PodGroup(r, ns, labels, count, operator_pdb=False))
        elif kind == "KafkaNodePool":
            cluster = str(get(props, "metadata", "labels", "strimzi.io/cluster") or "")
            labels = {"strimzi.io/cluster": cluster, "strimzi.io/kind": "Kafka", "strimzi.io/name": f"{cluster}-kafka",
                      "strimzi.io/pool-name": name_of(props),
                      **mapping(get(props, "spec", "template", "pod", "metadata", "labels"))}
            # Strimzi always creates one PDB for the cluster's Kafka pods; its settings live on the Kafka CR.
            groups.append(_PodGroup(r, ns, labels, replicas(r.type, props), operator_pdb=True))
        elif kind == "Cluster" and _group(r.type) == "postgresql.cnpg.io":
            if falsy(get(props, "spec", "enablePDB")):
                continue  # pdb_operator_settings says to turn it back on; an explicit PDB is no substitute
            labels = {"cnpg.io/cluster": name_of(props), "cnpg.io/podRole": "instance",
                      **mapping(get(props, "spec", "inheritedMetadata", "labels"))}
            groups.append(_PodGroup(r, ns, labels, replicas(r.type, props), operator_pdb=True))
        elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
            group = "clickhouse.altinity.com" if kind == "ClickHouseInstallation" else "clickhouse-keeper.altinity.com"
            short = "chi" if kind == "ClickHouseInstallation" else "chk"
            template_labels: dict[str, Any] = {}
            for t in items(get(props, "spec", "templates", "podTemplates")):
                template_labels.update(mapping(get(t, "metadata", "labels")))
            clusters = items(get(props, "spec", "configuration", "clusters")) or [{}]
            for c in clusters:
                labels = {f"{group}/app": "chop", f"{group}/{short}": name_of(props), f"{group}/namespace": ns,
                          f"{group}/cluster": str(get(c, "name") or ""), **template_labels}
                count = number(get(c, "layout", "replicasCount"), 1.0) or 1.0
                if kind == "ClickHouseInstallation":
                    count *= number(get(c, "layout", "shardsCount"), 1.0) or 1.0
                groups.append(_PodGroup(r, ns, labels, count, operator_pdb=not falsy(get(c, "pdbManaged"))))
    return groups


def _pdb_blocks_everything(pdb: Resource, count: float) -> str | None:
    spec = mapping(get(pdb.props, "spec"))
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if number(max_unavailable) == 0 or max_unavailable == "0%":
        return f"PDB {name_of(pdb.props, pdb.name)!r} has maxUnavailable 0: no voluntary eviction is ever allowed"
    if number(min_available) is not None and (number(min_available) or 0) >= count:
        return (f"PDB {name_of(pdb.props, pdb.name)!r} has minAvailable {min_available} for {count:g} replica(s): "
                "no voluntary eviction is ever allowed, so drains and consolidation stall")
    if min_available == "100%":
        return f"PDB {name_of(pdb.props, pdb.name)!r} has minAvailable 100%: no voluntary eviction is ever allowed"
    return None


def pdb_for_replicated_workloads(resources: Sequence[Resource], ctx: Context) -> list[tuple[Resource, str]]:
    """Every workload with more than one replica has exactly one PodDisruptionBudget selecting its pods,
    and that PDB lets at least one pod go. Operators that manage their own (Strimzi, CloudNativePG,
    Altinity) count as covered unless their CR turns it off - and then an explicit PDB on top of theirs is
    a second PDB, which makes the eviction API refuse every eviction of those pods."""
    pdbs = [r for r in resources if kind_of(r.type) == "PodDisruptionBudget"]
    out: list[tuple[Resource, str]] = []
    for g in _pod_groups(resources):
        kind, name = kind_of(g.resource.type), name_of(g.resource.props, g.resource.name)
        mine = [p for p in pdbs if namespace(p.props) == g.namespace and selects(get(p.props, "spec", "selector"),
                                                                                 g.labels)]
        if g.operator_pdb:
            for p in mine:
                out.append((g.resource, f"{kind} {name!r}: its operator already creates a PDB for these pods and "
                                        f"PDB {name_of(p.props, p.name)!r} selects them too; with two PDBs the "
                                        "eviction API refuses every eviction (drop one, or turn the operator's off)"))
            continue
        if g.replicas <= 1:
            continue
        if not mine:
            out.append((g.resource, f"{kind} {name!r} runs {g.replicas:g} replicas but no PodDisruptionBudget in "
                                    f"{g.namespace!r} selects its pod labels {dict(g.labels)}"))
        elif len(mine) > 1:
            names = sorted(name_of(p.props, p.name) for p in mine)
            out.append((g.resource, f"{kind} {name!r}: {len(mine)} PDBs select its pods ({names}); the eviction "
                                    "API refuses evictions of pods with more than one"))
        else:
            blocked = _pdb_blocks_everything(mine[0], g.replicas)
            if blocked:
                out.append((g.resource, f"{kind} {name!r}: {blocked}"))
    return out


def pdb_operator_settings(type_: str, props: Props, ctx: Context) -> list[str]:
    """The operators' own PDB settings: on, and letting exactly one member go at a time."""
    kind, name = kind_of(type_), name_of(props)
    out: list[str] = []
    if kind == "Kafka":
        value = number(get(props, "spec", "kafka", "template", "podDisruptionBudget", "maxUnavailable"))
        if value is not None and value != 1:
            out.append(f"Kafka {name!r}: spec.kafka.template.podDisruptionBudget.maxUnavailable is {value:g}; with "
                       "RF 3 and min.insync.replicas 2 exactly one broker may be down at a time (1)")
    elif kind == "Cluster" and _group(type_) == "postgresql.cnpg.io":
        if falsy(get(props, "spec", "enablePDB")) and replicas(type_, props) > 1:
            out.append(f"Cluster {name!r}: enablePDB is false with {replicas(type_, props):g} instances; leave it "
                       "on (CNPG's own PDBs protect the primary and the replicas separately)")
    elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        for c in items(get(props, "spec", "configuration", "clusters")):
            value = number(get(c, "pdbMaxUnavailable"))
            if value is not None and value == 0 and not falsy(get(c, "pdbManaged")):
                out.append(f"{kind} {name!r} cluster {get(c, 'name')!r}: pdbMaxUnavailable 0 blocks every drain")
    return out


# --- rule: no-public-data-tier -------------------------------------------------------------------------

PUBLIC_SERVICE_TYPES = frozenset({"LoadBalancer", "NodePort"})
PUBLIC_KAFKA_LISTENERS = frozenset({"loadbalancer", "nodeport", "route", "ingress"})


def no_public_data_tier(type_: str, props: Props, ctx: Context) -> list[str]:
    """Nothing of the data tier is reachable from outside the VPC: no LoadBalancer/NodePort Services in its
    namespaces or in its operators' service templates, no external Kafka listeners, no public RDS/MSK,
    no public S3 ACLs."""
    kind, name, out = kind_of(type_), name_of(props), []
    if kind == "Service" and namespace(props) in DATA_NAMESPACES:
        service_type = get(props, "spec", "type")
        if service_type in PUBLIC_SERVICE_TYPES:
            out.append(f"Service {namespace(props)}/{name} is type {service_type} in a data-tier namespace")
    elif kind == "Kafka":
        for listener in items(get(props, "spec", "kafka", "listeners")):
            if get(listener, "type") in PUBLIC_KAFKA_LISTENERS:
                out.append(f"Kafka {name!r} listener {get(listener, 'name')!r} is type {get(listener, 'type')}: "
                           "brokers stay internal (internal or cluster-ip)")
    elif kind == "Cluster" and _group(type_) == "postgresql.cnpg.io":
        for extra in items(get(props, "spec", "managed", "services", "additional")):
            service_type = get(extra, "serviceTemplate", "spec", "type")
            if service_type in PUBLIC_SERVICE_TYPES:
                out.append(f"Cluster {name!r}: an additional {get(extra, 'selectorType')} service is {service_type}")
    elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        for template in items(get(props, "spec", "templates", "serviceTemplates")):
            service_type = get(template, "spec", "type")
            if service_type in PUBLIC_SERVICE_TYPES:
                out.append(f"{kind} {name!r}: serviceTemplate {get(template, 'name')!r} is {service_type}")
    elif type_ in ("aws:rds/instance:Instance", "aws:rds/clusterInstance:ClusterInstance"):
        if truthy(props.get("publiclyAccessible")):
            out.append("RDS instance is publicly accessible")
    elif type_ == "aws:msk/cluster:Cluster":
        access = get(props, "brokerNodeGroupInfo", "connectivityInfo", "publicAccess", "type")
        if isinstance(access, str) and access != "DISABLED":
            out.append(f"MSK cluster public access is {access}")
    elif type_ in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2", "aws:s3/bucketAclV2:BucketAclV2",
                   "aws:s3/bucketAcl:BucketAcl"):
        acl = props.get("acl")
        if isinstance(acl, str) and acl.startswith(("public-", "authenticated-")):
            out.append(f"S3 ACL {acl} makes objects readable outside the account")
    return out


BUCKET_TYPES = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
PAB_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def refers(r: Resource, prop: str, target: Resource) -> bool:
    """r.props[prop] came from `target` (its name in refs, or the value is target's bucket name)."""
    if target.name in r.refs.get(prop, ()):
        return True
    value = r.props.get(prop)
    return isinstance(value, str) and value in (target.props.get("bucket"), target.props.get("id"))


def s3_public_access_blocked(resources: Sequence[Resource], ctx: Context) -> list[tuple[Resource, str]]:
    """Every bucket has a public-access block with all four switches on."""
    out = []
    blocks = [r for r in resources if r.type == PAB_TYPE]
    for bucket in (r for r in resources if r.type in BUCKET_TYPES):
        mine = [b for b in blocks if refers(b, "bucket", bucket)]
        if not mine:
            out.append((bucket, f"bucket {bucket.name!r} has no BucketPublicAccessBlock"))
            continue
        for b in mine:
            off = [flag for flag in PAB_FLAGS if known(b.props.get(flag)) and not truthy(b.props.get(flag))]
            if off:
                out.append((bucket, f"bucket {bucket.name!r}: public access block {b.name!r} leaves {off} off"))
    return out


# --- rule: encryption-at-rest --------------------------------------------------------------------------

EBS_PROVISIONERS = frozenset({"ebs.csi.aws.com", "kubernetes.io/aws-ebs"})


def encryption_at_rest(type_: str, props: Props, ctx: Context) -> list[str]:
    """Data at rest is encrypted: EKS secrets (KMS envelope), EBS volumes and the StorageClasses that make
    them, SQS queues, CloudWatch log groups (KMS), RDS storage; KMS keys rotate."""
    out: list[str] = []
    kind = kind_of(type_)
    if type_ == "aws:eks/cluster:Cluster":
        configs = props.get("encryptionConfig")
        config = configs[0] if isinstance(configs, Sequence) and not isinstance(configs, str) and configs else configs
        if "secrets" not in items(get(config, "resources")) or not get(config, "provider", "keyArn"):
            out.append("EKS cluster does not encrypt secrets with a KMS key (encryptionConfig resources [secrets], "
                       "provider.keyArn)")
    elif type_ == "aws:sqs/queue:Queue":
        if not truthy(props.get("sqsManagedSseEnabled")) and not props.get("kmsMasterKeyId"):
            out.append("SQS queue has neither sqsManagedSseEnabled nor kmsMasterKeyId")
    elif type_ == "aws:cloudwatch/logGroup:LogGroup":
        if not props.get("kmsKeyId"):
            out.append("log group is not encrypted with a KMS key (kmsKeyId)")
    elif type_ == "aws:kms/key:Key":
        spec = props.get("customerMasterKeySpec") or props.get("keySpec") or "SYMMETRIC_DEFAULT"
        if spec == "SYMMETRIC_DEFAULT" and known(props.get("enableKeyRotation")) and not truthy(
                props.get("enableKeyRotation")):
            out.append("KMS key does not rotate (enableKeyRotation)")
    elif type_ == "aws:ebs/volume:Volume":
        if not truthy(props.get("encrypted")):
            out.append("EBS volume is not encrypted")
    elif type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        for i, bdm in enumerate(items(props.get("blockDeviceMappings"))):
            if get(bdm, "ebs") is not None and not truthy(get(bdm, "ebs", "encrypted")):
                out.append(f"launch template blockDeviceMappings[{i}] EBS volume is not encrypted")
    elif type_ in ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster"):
        if not truthy(props.get("storageEncrypted")):
            out.append("RDS storage is not encrypted (storageEncrypted)")
    elif type_ == "aws:efs/fileSystem:FileSystem":
        if not truthy(props.get("encrypted")):
            out.append("EFS file system is not encrypted")
    elif kind == "StorageClass" and props.get("provisioner") in EBS_PROVISIONERS:
        if not truthy(get(props, "parameters", "encrypted")):
            out.append(f"StorageClass {name_of(props)!r} does not set parameters.encrypted \"true\"")
    elif kind == "EC2NodeClass":
        for i, bdm in enumerate(items(get(props, "spec", "blockDeviceMappings"))):
            if get(bdm, "ebs") is not None and not truthy(get(bdm, "ebs", "encrypted")):
                out.append(f"EC2NodeClass {name_of(props)!r} blockDeviceMappings[{i}] is not encrypted")
    return out


SSE_TYPES = frozenset({
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
})


def _storage_class_uses(r: Resource) -> Iterator[tuple[str, str | None]]:
    """(where, storage class name or None for the default) of every volume a data-tier resource claims."""
    kind, props = kind_of(r.type), r.props
    if kind in ("Kafka", "KafkaNodePool"):
        storage = get(props, "spec", "kafka", "storage") if kind == "Kafka" else get(props, "spec", "storage")
        volumes = items(get(storage, "volumes")) if get(storage, "type") == "jbod" else [storage]
        for v in volumes:
            if get(v, "type") == "persistent-claim":
                yield "storage", get(v, "class")
    elif kind == "Cluster" and _group(r.type) == "postgresql.cnpg.io":
        for key in ("storage", "walStorage"):
            if get(props, "spec", key) is not None:
                yield f"spec.{key}", get(props, "spec", key, "storageClass") or get(
                    props, "spec", key, "pvcTemplate", "storageClassName")
    elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        for t in items(get(props, "spec", "templates", "volumeClaimTemplates")):
            yield f"volumeClaimTemplate {get(t, 'name')!r}", get(t, "spec", "storageClassName")
    elif kind == "StatefulSet":
        for t in items(get(props, "spec", "volumeClaimTemplates")):
            yield f"volumeClaimTemplate {name_of(t)!r}", get(t, "spec", "storageClassName")
    elif kind == "PersistentVolumeClaim":
        yield "spec", get(props, "spec", "storageClassName")


def encrypted_storage(resources: Sequence[Resource], ctx: Context) -> list[tuple[Resource, str]]:
    """Buckets have default server-side encryption; every volume the data tier claims comes from a
    StorageClass the program declares encrypted (a class it does not declare - such as EKS's gp2 default -
    cannot be shown to encrypt)."""
    out: list[tuple[Resource, str]] = []
    sse = [r for r in resources if r.type in SSE_TYPES]
    for bucket in (r for r in resources if r.type in BUCKET_TYPES):
        inline = get(bucket.props, "serverSideEncryptionConfiguration", "rule", "applyServerSideEncryptionByDefault")
        mine = [s for s in sse if refers(s, "bucket", bucket)]
        if not mine and not inline:
            out.append((bucket, f"bucket {bucket.name!r} has no server-side encryption configuration"))
        for s in mine:
            algorithms = [get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
                          for rule in items(s.props.get("rules"))]
            if not any(a in ("aws:kms", "aws:kms:dsse", "AES256") or a is UNKNOWN for a in algorithms):
                out.append((bucket, f"bucket {bucket.name!r}: {s.name!r} sets no default SSE algorithm"))
    classes = {name_of(r.props): r for r in resources if kind_of(r.type) == "StorageClass"}
    defaults = [r for r in classes.values()
                if truthy(get(r.props, "metadata", "annotations", "storageclass.kubernetes.io/is-default-class"))]
    for r in resources:
        for where, class_name in _storage_class_uses(r):
            if class_name is None:
                if not defaults:
                    out.append((r, f"{kind_of(r.type)} {name_of(r.props, r.name)!r} {where} uses the cluster's "
                                   "default StorageClass, and the program declares no (encrypted) default"))
                    continue
                sc = defaults[0]
            elif not known(class_name):
                continue
            else:
                found = classes.get(str(class_name))
                if found is None:
                    out.append((r, f"{kind_of(r.type)} {name_of(r.props, r.name)!r} {where} uses StorageClass "
                                   f"{class_name!r}, which the program does not declare"))
                    continue
                sc = found
            if not truthy(get(sc.props, "parameters", "encrypted")):
                out.append((r, f"{kind_of(r.type)} {name_of(r.props, r.name)!r} {where} uses StorageClass "
                               f"{name_of(sc.props)!r}, which is not encrypted"))
    return out


# --- rule: resource-requests-on-every-container --------------------------------------------------------


_ZERO = re.compile(r"^[+]?0*(\.0*)?[a-zA-Z]*$")
"""A quantity that asks for nothing: 0, "0", "0m", "0.0", "0Mi" (UNKNOWN, a value not known yet, is never zero)."""


def _requests_missing(resources: Any) -> list[str]:
    """The cpu/memory requests that are absent or zero: a zero request is no request (the scheduler and
    Karpenter reserve nothing, an HPA on utilisation divides by it)."""
    requests = mapping(get(resources, "requests"))
    return [r for r in ("cpu", "memory")
            if requests.get(r) in (None, "") or (requests.get(r) is not UNKNOWN and _ZERO.match(str(requests[r])))]


def resource_requests(type_: str, props: Props, ctx: Context) -> list[str]:
    """Every container says what it needs (cpu and memory requests): Karpenter sizes nodes from requests,
    and a pod without them is first to be evicted and can starve its neighbours. Covers core workloads,
    Altinity pod templates, and the containers operators build from a CR's resources field."""
    out: list[str] = []
    kind, group, name = kind_of(type_), _group(type_), name_of(props)
    for path, pod in pod_specs(type_, props):
        for cpath, c in containers(pod):
            missing = _requests_missing(c.get("resources"))
            if missing:
                out.append(f"{kind} {name!r} {path}.{cpath} ({c.get('name')}) has no {'/'.join(missing)} request")
    cr_fields: list[tuple[str, ...]] = []
    if kind == "KafkaNodePool":
        cr_fields.append(("spec", "resources"))
    elif kind == "Kafka":
        for part in ("topicOperator", "userOperator"):
            if get(props, "spec", "entityOperator", part) is not None:
                cr_fields.append(("spec", "entityOperator", part, "resources"))
        for part in ("cruiseControl", "kafkaExporter"):
            if get(props, "spec", part) is not None:
                cr_fields.append(("spec", part, "resources"))
    elif kind == "Cluster" and group == "postgresql.cnpg.io":
        cr_fields.append(("spec", "resources"))
    elif kind == "ObjectStore" and group == "barmancloud.cnpg.io":
        # The plugin injects this sidecar into every Postgres pod.
        cr_fields.append(("spec", "instanceSidecarConfiguration", "resources"))
    elif kind == "TestRun":
        for part in ("runner", "starter", "initializer"):
            if part == "runner" or get(props, "spec", part) is not None:
                cr_fields.append(("spec", part, "resources"))
    elif kind == "EnvoyProxy":
        # Envoy Gateway builds the proxy Deployment (or DaemonSet) from these.
        for part in ("envoyDeployment", "envoyDaemonSet"):
            if get(props, "spec", "provider", "kubernetes", part) is not None:
                cr_fields.append(("spec", "provider", "kubernetes", part, "container", "resources"))
    for field_path in cr_fields:
        missing = _requests_missing(get(props, *field_path))
        if missing:
            out.append(f"{kind} {name!r} {'.'.join(field_path)} has no {'/'.join(missing)} request")
    return out


# --- rule: images-pinned -------------------------------------------------------------------------------

_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


def image_problem(image: Any) -> str | None:
    """None for a pinned image reference (a tag other than latest, or a digest), else what is wrong."""
    if not known(image):
        return None
    if not isinstance(image, str) or not image:
        return "no image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (defaults to latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image!r} uses the latest tag"
    return None


def _values_latest(values: Any, path: str = "values") -> Iterator[str]:
    """`latest` image tags inside Helm values (image.tag: latest, or image: repo:latest)."""
    if isinstance(values, Mapping):
        for key, value in values.items():
            here = f"{path}.{key}"
            if key == "tag" and value == "latest":
                yield f"{here} is latest"
            elif key == "image" and isinstance(value, str) and image_problem(value) and ":" in value.rsplit("/", 1)[-1]:
                yield f"{here}: {image_problem(value)}"
            else:
                yield from _values_latest(value, here)
    elif isinstance(values, Sequence) and not isinstance(values, str):
        for i, value in enumerate(values):
            yield from _values_latest(value, f"{path}[{i}]")


def images_pinned(type_: str, props: Props, ctx: Context) -> list[str]:
    """What runs is pinned: container images by tag (not latest) or digest, Helm charts by exact version,
    operator CRs by image/version (an unset one follows the operator's default and changes under you),
    node AMIs by a versioned alias."""
    out: list[str] = []
    kind, group, name = kind_of(type_), _group(type_), name_of(props)
    for path, pod in pod_specs(type_, props):
        for cpath, c in containers(pod):
            problem = image_problem(c.get("image"))
            if problem:
                out.append(f"{kind} {name!r} {path}.{cpath} ({c.get('name')}): {problem}")
    if kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation") and not any(
            c.get("image") for _, pod in pod_specs(type_, props) for _, c in containers(pod)):
        out.append(f"{kind} {name!r} sets no container image in its podTemplates: the operator's default image "
                   "is not pinned")
    if kind == "Kafka":
        if not get(props, "spec", "kafka", "version"):
            out.append(f"Kafka {name!r} does not set spec.kafka.version (the operator's default moves with it)")
        image = get(props, "spec", "kafka", "image")
        if image is not None and image_problem(image):
            out.append(f"Kafka {name!r} spec.kafka.image: {image_problem(image)}")
    elif kind == "Cluster" and group == "postgresql.cnpg.io":
        image = get(props, "spec", "imageName")
        if image is None and get(props, "spec", "imageCatalogRef") is None:
            out.append(f"Cluster {name!r} sets no imageName: the operator's default PostgreSQL image is not pinned")
        elif image is not None and image_problem(image):
            out.append(f"Cluster {name!r} imageName: {image_problem(image)}")
    elif kind == "EC2NodeClass":
        for term in items(get(props, "spec", "amiSelectorTerms")):
            alias = get(term, "alias")
            if isinstance(alias, str) and alias.endswith("@latest"):
                out.append(f"EC2NodeClass {name!r} amiSelectorTerms alias {alias!r}: every new AMI drifts and "
                           "replaces all nodes; pin a version (e.g. al2023@v20250505)")
    elif kind == "EnvoyProxy":
        for part in ("envoyDeployment", "envoyDaemonSet"):
            image = get(props, "spec", "provider", "kubernetes", part, "container", "image")
            if image is not None and image_problem(image):
                out.append(f"EnvoyProxy {name!r} {part}.container.image: {image_problem(image)}")
    elif kind == "TestRun":
        for part in ("runner", "starter", "initializer"):
            image = get(props, "spec", part, "image")
            if image is not None and image_problem(image):
                out.append(f"TestRun {name!r} spec.{part}.image: {image_problem(image)}")
    elif type_.startswith("kubernetes:helm.sh/"):
        chart, version = props.get("chart"), props.get("version")
        if known(version) and not (isinstance(version, str) and _EXACT_VERSION.match(version)):
            out.append(f"Helm chart {chart!r} version {version!r} is not an exact version")
        out.extend(f"Helm chart {chart!r} {problem}" for problem in _values_latest(props.get("values")))
    elif type_ == "aws:eks/addon:Addon":
        if not props.get("addonVersion"):
            out.append(f"EKS add-on {props.get('addonName')!r} has no addonVersion (AWS picks the default)")
    elif type_ == "aws:eks/cluster:Cluster" and not props.get("version"):
        out.append("EKS cluster has no version (AWS picks the default)")
    return out


# --- the rule set --------------------------------------------------------------------------------------


RULES: tuple[Rule, ...] = (
    Rule("data-tier-never-on-spot",
         "The data NodePool allows on-demand capacity only, and Kafka, PostgreSQL and ClickHouse pods are pinned "
         "to the data pool or on-demand nodes.",
         resource_check=data_tier_never_on_spot),
    Rule("stateful-spread-3-zones-in-prod",
         "In prod, Kafka node pools, the PostgreSQL cluster and ClickHouse (and Keeper) run >= 3 members spread "
         "over zones with a hard constraint; NodePools are not limited to fewer than 3 zones.",
         resource_check=stateful_spread_3_zones),
    Rule("pdb-for-replicated-workloads",
         "Every workload with more than one replica has exactly one PodDisruptionBudget that still lets a pod go; "
         "operator-managed ones keep their operator's PDB on and alone.",
         resource_check=pdb_operator_settings, stack_check=pdb_for_replicated_workloads),
    Rule("no-public-data-tier",
         "No LoadBalancer/NodePort Service, external Kafka listener, public RDS/MSK or public S3 bucket for the "
         "data tier; every bucket has all public access blocked.",
         resource_check=no_public_data_tier, stack_check=s3_public_access_blocked),
    Rule("encryption-at-rest",
         "EKS secrets (KMS), EBS volumes and StorageClasses, S3 (SSE), SQS (SSE), log groups (KMS) and RDS are "
         "encrypted; KMS keys rotate; data-tier volumes come from an encrypted StorageClass the program declares.",
         resource_check=encryption_at_rest, stack_check=encrypted_storage),
    Rule("resource-requests-on-every-container",
         "Every container of every pod template (including operators' CR pod templates and resources) requests "
         "cpu and memory.",
         resource_check=resource_requests),
    Rule("images-pinned",
         "Images are pinned by tag (never latest) or digest; Helm charts by exact version; operator CRs set their "
         "image/version; node AMI aliases are versioned.",
         resource_check=images_pinned),
)

RULE_NAMES = tuple(r.name for r in RULES)


def check_resource(resource: Resource, ctx: Context, rules: Sequence[Rule] = RULES) -> list[Violation]:
    """The per-resource checks of `rules` for one resource."""
    return [Violation(rule.name, resource.name, resource.type, message)
            for rule in rules if rule.resource_check
            for message in rule.resource_check(resource.type, resource.props, ctx)]


def check_stack(resources: Sequence[Resource], ctx: Context, rules: Sequence[Rule] = RULES) -> list[Violation]:
    """The whole-stack checks of `rules`."""
    return [Violation(rule.name, r.name, r.type, message)
            for rule in rules if rule.stack_check
            for r, message in rule.stack_check(resources, ctx)]


def evaluate(resources: Sequence[Resource], ctx: Context, rules: Sequence[Rule] = RULES) -> list[Violation]:
    """Every rule over every resource, then the stack checks: the policy pack's verdict, offline."""
    out = [v for r in resources for v in check_resource(r, ctx, rules)]
    return out + check_stack(resources, ctx, rules)
