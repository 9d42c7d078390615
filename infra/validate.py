"""Schema checks for every Kubernetes object the program declares, without a cluster.

Core kinds (Deployment, Service, PodDisruptionBudget...) are validated against the strict OpenAPI schemas
kubernetes-validate ships for the pinned Kubernetes version (unknown fields refused, as a server-side apply
with field validation would); custom resources against the hand-written schemas in infra/schemas/ (and the
HTTPRoute schema `openbell canary` already keeps). Embedded core types in those schemas (affinity, pod specs,
PVC specs) resolve to the same kubernetes-validate definitions.

On top of single-object schemas, `references()` checks what only the whole plan can tell: a KafkaTopic's
cluster label names a Kafka, a ScheduledBackup names a Cluster, an HPA scales a Deployment that exists, a
route's backends are Services, a namespace exists before objects land in it. Each of those, wrong, is a
deploy that fails (or silently does nothing) in the cluster.

Pulumi's mock runtime hands numbers back as floats (3 -> 3.0); `normalise()` turns integral floats back into
ints first, or every `type: integer` would fail.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

KUBERNETES_VERSION = "1.31"
"""The Kubernetes minor core kinds are checked against unless told otherwise (`openbell infra plan` passes
the stack's cluster.version, which infra/config.py pins per stack)."""

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
ROOT = Path(__file__).resolve().parents[1]
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"

CRD_SCHEMAS: dict[tuple[str, str], Path] = {
    ("chaos-mesh.org/v1alpha1", "NetworkChaos"): SCHEMA_DIR / "chaosmesh-networkchaos-v1alpha1.json",
    ("kafka.strimzi.io/v1beta2", "Kafka"): SCHEMA_DIR / "strimzi-kafka-v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): SCHEMA_DIR / "strimzi-kafkanodepool-v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): SCHEMA_DIR / "strimzi-kafkatopic-v1beta2.json",
    ("postgresql.cnpg.io/v1", "Cluster"): SCHEMA_DIR / "cnpg-cluster-v1.json",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): SCHEMA_DIR / "cnpg-scheduledbackup-v1.json",
    ("barmancloud.cnpg.io/v1", "ObjectStore"): SCHEMA_DIR / "barmancloud-objectstore-v1.json",
    ("clickhouse.altinity.com/v1", "ClickHouseInstallation"): SCHEMA_DIR / "altinity-clickhouseinstallation-v1.json",
    ("clickhouse-keeper.altinity.com/v1", "ClickHouseKeeperInstallation"):
        SCHEMA_DIR / "altinity-clickhousekeeperinstallation-v1.json",
    ("karpenter.sh/v1", "NodePool"): SCHEMA_DIR / "karpenter-nodepool-v1.json",
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): SCHEMA_DIR / "karpenter-ec2nodeclass-v1.json",
    ("gateway.networking.k8s.io/v1", "Gateway"): SCHEMA_DIR / "gateway-v1.json",
    ("gateway.networking.k8s.io/v1", "GatewayClass"): SCHEMA_DIR / "gatewayclass-v1.json",
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"): SCHEMA_DIR / "envoyproxy-v1alpha1.json",
    # One HTTPRoute schema for the repo: the one `openbell canary` validates its patches against.
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ROOT / "cli/openbell/targets/schemas/httproute-v1.json",
    ("k6.io/v1alpha1", "TestRun"): SCHEMA_DIR / "k6-testrun-v1alpha1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): SCHEMA_DIR / "podmonitor-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMA_DIR / "prometheusrule-v1.json",
}

Status = Literal["ok", "invalid", "unknown"]


class Resource(Protocol):
    """What a check needs of a declared resource (infra.offline.Recorded is one)."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SchemaResult:
    """One Kubernetes object's check: `status` ok, invalid (with `errors`) or unknown (no schema for its kind)."""

    resource: str
    kind: str
    api_version: str
    status: Status
    source: str
    errors: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "kind": self.kind, "apiVersion": self.api_version, "status": self.status,
                "source": self.source, "errors": list(self.errors)}


SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")
"""How pulumi marks a secret value in serialized properties: {sig key: secret sig, "value": ...}."""


def normalise(value: Any) -> Any:
    """Integral floats back to ints and secrets unwrapped, recursively (pulumi's mocks and policy props
    carry numbers as floats and secrets in their wire form)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        if value.get(SECRET_SIG[0]) == SECRET_SIG[1]:
            return normalise(value.get("value"))
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    return value


def is_object(resource: Resource) -> bool:
    """A Kubernetes API object (not a Helm release, a provider or a component)."""
    return (resource.type.startswith("kubernetes:") and isinstance(resource.inputs.get("apiVersion"), str)
            and isinstance(resource.inputs.get("kind"), str))


# --- schema loading --------------------------------------------------------------------------------------


@functools.cache
def _kv_dir(version: str) -> Path:
    """kubernetes-validate's strict schemas for the newest Kubernetes version not newer than `version`."""
    import kubernetes_validate

    base = Path(kubernetes_validate.__file__).resolve().parent / "kubernetes-json-schema"
    wanted = tuple(int(p) for p in version.split(".")[:2])
    versions = []
    for d in base.iterdir():
        m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", d.name)
        if m and (int(m[1]), int(m[2])) <= wanted:
            versions.append(((int(m[1]), int(m[2])), d))
    if not versions:  # pragma: no cover - the package ships 1.25 onwards
        raise RuntimeError(f"kubernetes-validate has no schemas for Kubernetes {version}")
    return max(versions)[1]


def _jsonschema() -> Any:
    """jsonschema (a dependency of kubernetes-validate; untyped, so imported dynamically)."""
    import importlib

    module = importlib.import_module("jsonschema")
    importlib.import_module("jsonschema.exceptions")
    return module


@functools.cache
def _registry(version: str) -> Any:
    """Core definitions plus every schema of ours, addressable by their $id (for cross-file $refs)."""
    from referencing import Registry, Resource

    resources = [Resource.from_contents(json.loads((_kv_dir(version) / "_definitions.json").read_text()))]
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        resources.append(Resource.from_contents(json.loads(path.read_text())))
    registry: Any = Registry().with_resources((str(r.id()), r) for r in resources if r.id())
    return registry.crawl()


@functools.cache
def _validator(api_version: str, kind: str, version: str) -> tuple[Any, str] | None:
    """A cached validator for (apiVersion, kind) and where its schema came from; None for an unknown kind."""
    Draft202012Validator = _jsonschema().Draft202012Validator

    path = CRD_SCHEMAS.get((api_version, kind))
    if path is not None:
        schema = json.loads(path.read_text())
        source = str(path.relative_to(ROOT))
    else:
        # kubernetes-validate's file naming: rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1.
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        candidate = _kv_dir(version) / f"{kind.lower()}-{group_version}.json"
        if not candidate.exists():
            return None
        schema = json.loads(candidate.read_text())
        source = f"kubernetes-validate {_kv_dir(version).name.split('-')[0].lstrip('v')} (strict)"
    return Draft202012Validator(schema, registry=_registry(version)), source


def _path(error: Any) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(root)"


def _message(error: Any) -> str:
    """The most specific reason: for anyOf/oneOf failures, the best sub-error."""
    if error.context:
        error = _jsonschema().exceptions.best_match(error.context)
    text = error.message
    return f"{_path(error)}: {text[:300]}"


def validate_object(obj: Mapping[str, Any], kubernetes_version: str = KUBERNETES_VERSION
                    ) -> tuple[Status, str, tuple[str, ...]]:
    """Validate one object: (status, schema source, error messages)."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    found = _validator(api_version, kind, kubernetes_version)
    if found is None:
        return "unknown", "", (f"no schema for {kind} ({api_version}): not validated",)
    validator, source = found
    errors = sorted(validator.iter_errors(normalise(obj)), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return "ok", source, ()
    return "invalid", source, tuple(_message(e) for e in errors[:10])


def validate(resources: Iterable[Resource], kubernetes_version: str = KUBERNETES_VERSION) -> list[SchemaResult]:
    """Every Kubernetes object of a plan, schema-checked, then checked for broken references to the others."""
    resources = list(resources)
    objects = [r for r in resources if is_object(r)]
    # Helm releases with createNamespace make their namespace; objects may land there too.
    created = {str(r.inputs.get("namespace") or "default") for r in resources
               if r.type.startswith("kubernetes:helm.sh/") and r.inputs.get("createNamespace")}
    broken = references(objects, created)
    results = []
    for r in objects:
        status, source, errors = validate_object(r.inputs, kubernetes_version)
        extra = tuple(broken.get(r.name, ()))
        if extra:
            status, errors = "invalid", errors + extra
        results.append(SchemaResult(r.name, str(r.inputs["kind"]), str(r.inputs["apiVersion"]), status, source,
                                    errors))
    return results


# --- cross-object references -----------------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


CLUSTER_SCOPED = {"Namespace", "NodePool", "EC2NodeClass", "StorageClass", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition", "PriorityClass", "GatewayClass", "PersistentVolume",
                  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "IngressClass"}
BUILTIN_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"


def references(objects: list[Resource], created_namespaces: Iterable[str] = ()) -> dict[str, list[str]]:
    """Broken references between the plan's objects, by resource name (`created_namespaces`: made by Helm)."""
    index: dict[tuple[str, str, str], Resource] = {}
    namespaces = set(BUILTIN_NAMESPACES) | set(created_namespaces)
    for r in objects:
        ns, name = _meta(r.inputs)
        index[(str(r.inputs["kind"]), ns, name)] = r
        if r.inputs["kind"] == "Namespace":
            namespaces.add(name)

    out: dict[str, list[str]] = {}

    def has(kind: str, ns: str, name: str) -> bool:
        return (kind, ns, name) in index

    def broken(r: Resource, message: str) -> None:
        out.setdefault(r.name, []).append(f"reference: {message}")

    for r in objects:
        obj, kind = r.inputs, str(r.inputs["kind"])
        ns, name = _meta(obj)
        spec = obj.get("spec") or {}
        if kind not in CLUSTER_SCOPED and not _get(obj, "metadata", "namespace"):
            broken(r, "metadata.namespace is not set: the object would land in the provider's default namespace")
        elif kind not in CLUSTER_SCOPED and ns not in namespaces:
            broken(r, f"namespace {ns!r} is neither declared nor created by a Helm release")
        if kind in ("KafkaNodePool", "KafkaTopic"):
            cluster = _get(obj, "metadata", "labels", "strimzi.io/cluster")
            if cluster and not has("Kafka", ns, str(cluster)):
                broken(r, f"strimzi.io/cluster={cluster!r}: no Kafka {cluster!r} in namespace {ns!r}")
        elif kind == "ScheduledBackup":
            cluster = _get(spec, "cluster", "name")
            if cluster and not has("Cluster", ns, str(cluster)):
                broken(r, f"spec.cluster.name={cluster!r}: no CNPG Cluster in namespace {ns!r}")
        elif kind == "Cluster" and obj.get("apiVersion") == "postgresql.cnpg.io/v1":
            for plugin in spec.get("plugins") or []:
                store = _get(plugin, "parameters", "barmanObjectName")
                if plugin.get("name") == BARMAN_PLUGIN and store and not has("ObjectStore", ns, str(store)):
                    broken(r, f"plugin {BARMAN_PLUGIN} barmanObjectName={store!r}: no ObjectStore in {ns!r}")
        elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
            for message in _clickhouse_templates(spec):
                broken(r, message)
        elif kind == "HorizontalPodAutoscaler":
            target = spec.get("scaleTargetRef") or {}
            if target.get("kind") in ("Deployment", "StatefulSet") and not has(str(target["kind"]), ns,
                                                                              str(target.get("name"))):
                broken(r, f"scaleTargetRef {target.get('kind')}/{target.get('name')} is not declared in {ns!r}")
        elif kind == "HTTPRoute":
            for rule in spec.get("rules") or []:
                for ref in rule.get("backendRefs") or []:
                    if ref.get("kind", "Service") == "Service" and ref.get("group", "") == "":
                        target_ns = str(ref.get("namespace") or ns)
                        if not has("Service", target_ns, str(ref.get("name"))):
                            broken(r, f"backendRef Service {target_ns}/{ref.get('name')} is not declared")
            for parent in spec.get("parentRefs") or []:
                if parent.get("kind", "Gateway") == "Gateway":
                    parent_ns = str(parent.get("namespace") or ns)
                    if not has("Gateway", parent_ns, str(parent.get("name"))):
                        broken(r, f"parentRef Gateway {parent_ns}/{parent.get('name')} is not declared")
        elif kind == "NodePool":
            ref = _get(spec, "template", "spec", "nodeClassRef") or {}
            if ref.get("kind") == "EC2NodeClass" and not has("EC2NodeClass", "default", str(ref.get("name"))):
                broken(r, f"nodeClassRef EC2NodeClass/{ref.get('name')} is not declared")
    return out


def _clickhouse_templates(spec: Mapping[str, Any]) -> list[str]:
    """Template names used by defaults/clusters/shards/replicas must be defined, or the operator ignores them
    silently (and the pods lose their placement, storage or service settings)."""
    templates = spec.get("templates") or {}
    defined = {
        "podTemplate": {t.get("name") for t in templates.get("podTemplates") or []},
        "dataVolumeClaimTemplate": {t.get("name") for t in templates.get("volumeClaimTemplates") or []},
        "logVolumeClaimTemplate": {t.get("name") for t in templates.get("volumeClaimTemplates") or []},
        "volumeClaimTemplate": {t.get("name") for t in templates.get("volumeClaimTemplates") or []},
        "serviceTemplate": {t.get("name") for t in templates.get("serviceTemplates") or []},
        "clusterServiceTemplate": {t.get("name") for t in templates.get("serviceTemplates") or []},
        "shardServiceTemplate": {t.get("name") for t in templates.get("serviceTemplates") or []},
        "replicaServiceTemplate": {t.get("name") for t in templates.get("serviceTemplates") or []},
        "hostTemplate": {t.get("name") for t in templates.get("hostTemplates") or []},
    }
    uses: list[tuple[str, Mapping[str, Any]]] = [("spec.defaults.templates", _get(spec, "defaults", "templates") or {})]
    for i, cluster in enumerate(_get(spec, "configuration", "clusters") or []):
        uses.append((f"spec.configuration.clusters[{i}].templates", cluster.get("templates") or {}))
        layout = cluster.get("layout") or {}
        for j, part in enumerate((layout.get("shards") or []) + (layout.get("replicas") or [])):
            uses.append((f"spec.configuration.clusters[{i}].layout[{j}].templates", part.get("templates") or {}))
    out = []
    for where, used in uses:
        for key, value in used.items():
            if key in defined and isinstance(value, str) and value not in defined[key]:
                out.append(f"{where}.{key}={value!r} is not defined in spec.templates")
    return out
