"""Conventions every component shares: namespaces, labels, where a workload may run and how it spreads.

Karpenter's NodePools label their nodes `openbell.dev/pool: gateway|data` and the data pool is tainted,
so only workloads that ask for it (the data tier) land there, and always on on-demand capacity.
"""

from __future__ import annotations

from typing import Any, Protocol

import pulumi

POOL_LABEL = "openbell.dev/pool"
ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
CAPACITY_TYPE = "karpenter.sh/capacity-type"

NAMESPACES = {
    "apps": "openbell",
    "kafka": "kafka",
    "postgres": "postgres",
    "clickhouse": "clickhouse",
    "monitoring": "monitoring",
    "karpenter": "karpenter",
    "k6": "k6-operator",
    "chaos": "chaos-mesh",
    "gateway-system": "gateway-system",
}


def labels(component: str, part: str | None = None, **extra: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels, plus `extra`."""
    out = {"app.kubernetes.io/name": part or component, "app.kubernetes.io/part-of": "openbell",
           "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": "pulumi"}
    out.update(extra)
    return out


def resources(cpu: str, memory: str) -> dict[str, Any]:
    """Requests for scheduling, and a memory limit equal to the request (no overcommit on data nodes)."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def system_placement() -> dict[str, Any]:
    """Operators run on the managed system node group (label openbell.dev/pool=system), not on data nodes."""
    return {"nodeSelector": {POOL_LABEL: "system"}}


def mebibytes(quantity: str) -> int:
    """A Kubernetes memory quantity as the config allows it ("512Mi", "32Gi") in MiB."""
    if quantity.endswith("Gi"):
        return int(quantity[:-2]) * 1024
    if quantity.endswith("Mi"):
        return int(quantity[:-2])
    raise ValueError(f"expected a quantity in Mi or Gi, got {quantity!r}")


def data_placement() -> dict[str, Any]:
    """Pod spec fields that put a data-tier pod on the data pool: on-demand nodes only, taint tolerated."""
    return {
        "nodeSelector": {POOL_LABEL: "data", CAPACITY_TYPE: "on-demand"},
        "tolerations": [{"key": POOL_LABEL, "operator": "Equal", "value": "data", "effect": "NoSchedule"}],
    }


def gateway_placement() -> dict[str, Any]:
    """Pod spec fields for the stateless edge (gateway, feed, enricher, ledger): the gateway pool."""
    return {"nodeSelector": {POOL_LABEL: "gateway"}}


def zone_spread(match_labels: dict[str, str], max_skew: int = 1, hard: bool = True) -> list[dict[str, Any]]:
    """Spread evenly over zones (hard by default) and, softly, over nodes."""
    return [
        # Honor taints: a cordoned or tainted zone (a zone-loss drill, a data node) is not counted, so a
        # hard spread does not leave replacement pods Pending while one zone is out.
        {"maxSkew": max_skew, "topologyKey": ZONE,
         "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
         "nodeTaintsPolicy": "Honor",
         "labelSelector": {"matchLabels": match_labels}},
        {"maxSkew": 1, "topologyKey": HOST, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": match_labels}},
    ]


def zone_anti_affinity(match_labels: dict[str, str]) -> dict[str, Any]:
    """No two replicas in one zone (required): for replicas that must survive a zone loss."""
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": ZONE, "labelSelector": {"matchLabels": match_labels}}]}}


def secret_value(secret: Any, key: str) -> pulumi.Output[str]:
    """A key of a k8s Secret as it is in the cluster: the API server folds `stringData` into base64 `data`,
    and the live object (what pulumi reads back) has only `data`; pulumi's mocks echo `stringData`.
    Reading back (not re-using the input) matters for a password generated once and then kept."""
    import base64

    def pick(data: Any, string_data: Any) -> str:
        if data and key in data:
            return base64.b64decode(data[key]).decode()
        return str((string_data or {}).get(key, ""))

    return pulumi.Output.secret(pulumi.Output.all(secret.data, secret.string_data).apply(lambda v: pick(*v)))


def child(parent: pulumi.Resource, provider: pulumi.ProviderResource | None = None,
          depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
    """Options for a resource inside a component: parented (so the graph shows the component) and on
    the cluster's provider when it is a Kubernetes object."""
    return pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=depends_on or [])


class HasProvider(Protocol):
    """What a component needs of the cluster: the Kubernetes provider every object is created with."""

    @property
    def provider(self) -> pulumi.ProviderResource: ...


def present(*resources: pulumi.Resource | None) -> list[pulumi.Resource]:
    """`resources` without the Nones (an operator's Helm release is None where the operators are preinstalled)."""
    return [r for r in resources if r is not None]
