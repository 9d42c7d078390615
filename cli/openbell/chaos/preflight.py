"""Before a Kubernetes experiment runs: does the cluster have the custom resources it acts on?

An experiment written for an operator the cluster does not run (Strimzi's Kafka, a CloudNativePG Cluster, a
Karpenter NodePool) would otherwise fail somewhere in its hypothesis with a 404 buried in a traceback, or - worse
- get as far as its method. The pre-flight reads what the experiment's chaostoolkit-kubernetes custom-object
activities name (group, version, plural, and the object's name and namespace where the activity reads or patches
one), asks the API server whether it serves those kinds and has those objects, and names what is missing, and
which operator provides it, in one line. Nothing is changed either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Who installs a kind: named in the message, so the user knows what to install rather than what a 404 was.
OPERATORS = {
    "kafka.strimzi.io": "Strimzi",
    "postgresql.cnpg.io": "CloudNativePG",
    "karpenter.sh": "Karpenter",
    "chaos-mesh.org": "Chaos Mesh",
    "monitoring.coreos.com": "prometheus-operator",
}
# Activities of chaostoolkit-kubernetes that act on one named, existing custom object.
_READS_ONE = ("get_custom_object", "get_cluster_custom_object", "patch_custom_object", "patch_cluster_custom_object",
              "replace_custom_object", "replace_cluster_custom_object")
# chaostoolkit-kubernetes' Chaos Mesh modules build their objects themselves: the kind they need.
_CHAOS_MESH = ("chaos-mesh.org", "v1alpha1", "networkchaos")
# openbell.chaos.capacity patches Karpenter NodePools by name.
_NODEPOOLS = ("karpenter.sh", "v1", "nodepools")


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}/{self.version}"


@dataclass(frozen=True)
class Needed:
    """A kind the experiment acts on, and (with `name`) one object of it that must exist; `namespace` None for a
    cluster-scoped object. `activities` are the activities that need it."""

    kind: Kind
    name: str | None = None
    namespace: str | None = None
    activities: tuple[str, ...] = ()

    def describe(self) -> str:
        operator = OPERATORS.get(self.kind.group)
        if self.name is None:
            return f"{self.kind} ({operator + ' is' if operator else 'its CRD is'} not installed)"
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.kind} {self.name!r}{where} (no such {operator + ' ' if operator else ''}object)"


def needed(document: dict[str, Any]) -> list[Needed]:
    """Pure: every custom-resource kind the experiment's activities use (hypothesis, method, rollbacks) and every
    object its hypothesis and method read or patch by name. Names made of `${...}` are not knowable here."""
    kinds: dict[Kind, list[str]] = {}
    objects: dict[tuple[Kind, str, str | None], list[str]] = {}
    hypothesis = (document.get("steady-state-hypothesis") or {}).get("probes") or []
    sections = [("before", a) for a in hypothesis] + [("method", a) for a in document.get("method") or []] \
        + [("rollbacks", a) for a in document.get("rollbacks") or []]
    for where, activity in sections:
        provider = activity.get("provider") or {}
        if provider.get("type") != "python":
            continue
        module, func = str(provider.get("module", "")), str(provider.get("func", ""))
        args = provider.get("arguments") or {}
        name = str(activity.get("name", func))
        if module.startswith("chaosk8s.chaosmesh."):
            kinds.setdefault(Kind(*_CHAOS_MESH), []).append(name)
            continue
        if module == "openbell.chaos.capacity":
            kind = Kind(*_NODEPOOLS)
            kinds.setdefault(kind, []).append(name)
            pools = args.get("nodepools")
            for pool in pools if isinstance(pools, list) and where != "rollbacks" else []:
                if isinstance(pool, str) and "${" not in pool:
                    objects.setdefault((kind, pool, None), []).append(name)
            continue
        if not module.startswith("chaosk8s.crd."):
            continue
        group, version, plural = (args.get(k) for k in ("group", "version", "plural"))
        if not all(isinstance(v, str) and v and "${" not in v for v in (group, version, plural)):
            continue
        kind = Kind(str(group), str(version), str(plural))
        kinds.setdefault(kind, []).append(name)
        obj, ns = args.get("name"), args.get("ns")
        if func in _READS_ONE and where != "rollbacks" and isinstance(obj, str) and "${" not in obj:
            namespace = None if "cluster" in func else str(ns or "default")
            objects.setdefault((kind, obj, namespace), []).append(name)
    out = [Needed(k, activities=tuple(v)) for k, v in kinds.items()]
    out += [Needed(k, n, ns, tuple(v)) for (k, n, ns), v in objects.items()]
    return out


def missing(wanted: list[Needed], api_client: Any) -> list[Needed]:
    """What of `wanted` the API server does not serve or hold (an object is only asked for when its kind is
    served). Errors other than 404 are raised."""
    from kubernetes.client.rest import ApiException

    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    served: dict[tuple[str, str], set[str]] = {}
    absent: list[Needed] = []

    def plurals(group: str, version: str) -> set[str]:
        if (group, version) not in served:
            try:
                answer = custom.get_api_resources(group, version)
                served[(group, version)] = {r.name for r in answer.resources or []}
            except ApiException as exc:
                if exc.status != 404:
                    raise
                served[(group, version)] = set()
        return served[(group, version)]

    for need in wanted:
        kind = need.kind
        if kind.plural not in plurals(kind.group, kind.version):
            if need.name is None:
                absent.append(need)
            continue
        if need.name is None:
            continue
        try:
            if need.namespace is None:
                custom.get_cluster_custom_object(kind.group, kind.version, kind.plural, need.name)
            else:
                custom.get_namespaced_custom_object(kind.group, kind.version, need.namespace, kind.plural, need.name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            absent.append(need)
    return absent


def message(experiment: str, context: str, absent: list[Needed]) -> str:
    """Pure: the one line the CLI prints."""
    listed = "; ".join(f"{n.describe()}, needed by {', '.join(n.activities)}" for n in absent)
    return (f"experiment {experiment}: the cluster at context {context!r} lacks what it acts on: {listed}. "
            "Nothing was run.")


def check(experiment: str, document: dict[str, Any], context: str) -> str | None:
    """The pre-flight against the cluster of kube `context`: None when everything the experiment acts on is
    there, else the message naming what is not."""
    wanted = needed(document)
    if not wanted:
        return None
    from kubernetes import config
    from openbell.errors import UnreachableError

    try:
        api_client = config.new_client_from_config(context=context)
        try:
            absent = missing(wanted, api_client)
        finally:
            api_client.close()
    except Exception as exc:  # a kubeconfig that does not load, an API server that does not answer or refuses
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreachableError(f"--target kubernetes: the API server of context {context!r} could not be asked "
                               f"what experiment {experiment} needs: {first[:300]}") from None
    return message(experiment, context, absent) if absent else None
