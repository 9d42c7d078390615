"""In-cluster tooling for reliability work: k6-operator (distributed load) and Chaos Mesh (network faults).

Both are optional by stack (tooling.k6Operator, tooling.chaosMesh). k6-operator runs the TestRuns that
`openbell load --target kubernetes` renders (k6.io/v1alpha1); Chaos Mesh injects the faults of chaos
experiments. Prod keeps Chaos Mesh off: a privileged daemon on every node that can cut any pod's network
is not something to leave installed where traders are.
"""

from __future__ import annotations

from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s

from infra import kube
from infra.config import PlatformConfig
from infra.kube import child

K6_NAMESPACE = kube.NAMESPACES["k6"]
CHAOS_NAMESPACE = kube.NAMESPACES["chaos"]
GRAFANA_CHARTS = "https://grafana.github.io/helm-charts"
CHAOS_MESH_CHARTS = "https://charts.chaos-mesh.org"
# EKS AL2023 (and Bottlerocket) nodes run containerd; its socket is here, not Docker's.
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
SYSTEM_PLACEMENT = {kube.POOL_LABEL: "system"}
# What a PodChaos pod-failure swaps a container's image for; the chart's default is an unpinned `latest`.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


class ClusterLike(Protocol):
    @property
    def provider(self) -> pulumi.ProviderResource: ...


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def k6_values() -> dict[str, Any]:
    return {
        "namespace": {"create": False},  # created here, with its labels
        "installCRDs": True,
        # Its ServiceMonitor would need the Prometheus Operator's CRDs before this release: not worth the
        # coupling for the operator's own metrics (the runs' results are k6's summaries).
        "metrics": {"serviceMonitor": {"enabled": False}},
        "nodeSelector": SYSTEM_PLACEMENT,
        "manager": {"replicas": 1, "resources": _resources("100m", "128Mi")},
        "authProxy": {"resources": _resources("10m", "32Mi")},
    }


def chaos_mesh_values(version: str) -> dict[str, Any]:
    return {
        # The chart's source defaults to `latest`: pin the images to the chart's own release.
        "images": {"tag": f"v{version}"},
        "chaosDaemon": {
            "runtime": "containerd",
            "socketPath": CONTAINERD_SOCKET,
            # Faults are injected on every node, the data pool's tainted ones included (Kafka, PostgreSQL).
            "tolerations": [{"operator": "Exists"}],
            "resources": _resources("50m", "128Mi"),
        },
        "controllerManager": {
            "replicaCount": 1, "nodeSelector": SYSTEM_PLACEMENT, "resources": _resources("100m", "256Mi"),
            "podChaos": {"podFailure": {"pauseImage": PAUSE_IMAGE}},
        },
        # Reached with `kubectl port-forward` only: no NodePort (the chart's default) on the nodes.
        "dashboard": {"create": True, "securityMode": True, "nodeSelector": SYSTEM_PLACEMENT,
                      "service": {"type": "ClusterIP"}, "resources": _resources("50m", "128Mi")},
    }


class Tooling(pulumi.ComponentResource):
    """k6-operator and Chaos Mesh, each when its stack switch is on.

    Attributes: k6_operator_enabled (bool), chaos_mesh_enabled (bool), k6_operator / chaos_mesh (the Helm
    releases, or None).
    """

    def __init__(self, name: str, cfg: PlatformConfig, cluster: ClusterLike,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:Tooling", name, None, opts)
        provider = cluster.provider
        tooling = cfg.tooling
        self.k6_operator_enabled: bool = tooling.k6_operator
        self.chaos_mesh_enabled: bool = tooling.chaos_mesh
        self.k6_operator: k8s.helm.v3.Release | None = None
        self.chaos_mesh: k8s.helm.v3.Release | None = None
        if cfg.existing:
            # k6-operator and Chaos Mesh are the cluster owner's to install (and their CRDs with them).
            self.register_outputs({"k6OperatorEnabled": self.k6_operator_enabled,
                                   "chaosMeshEnabled": self.chaos_mesh_enabled})
            return
        if tooling.k6_operator:
            namespace = k8s.core.v1.Namespace(
                f"{name}-k6-ns", metadata={"name": K6_NAMESPACE, "labels": kube.labels("k6-operator", K6_NAMESPACE)},
                opts=child(self, provider=provider))
            self.k6_operator = k8s.helm.v3.Release(
                f"{name}-k6-operator", name="k6-operator", chart="k6-operator", version=tooling.k6_operator_version,
                namespace=K6_NAMESPACE, repository_opts={"repo": GRAFANA_CHARTS}, values=k6_values(),
                atomic=True, cleanup_on_fail=True, opts=child(self, provider=provider, depends_on=[namespace]))
        if tooling.chaos_mesh:
            namespace = k8s.core.v1.Namespace(
                f"{name}-chaos-ns", metadata={"name": CHAOS_NAMESPACE, "labels": {
                    **kube.labels("chaos-mesh", CHAOS_NAMESPACE),
                    # chaos-daemon is privileged: it enters other pods' network namespaces.
                    "pod-security.kubernetes.io/enforce": "privileged"}},
                opts=child(self, provider=provider))
            self.chaos_mesh = k8s.helm.v3.Release(
                f"{name}-chaos-mesh", name="chaos-mesh", chart="chaos-mesh", version=tooling.chaos_mesh_version,
                namespace=CHAOS_NAMESPACE, repository_opts={"repo": CHAOS_MESH_CHARTS},
                values=chaos_mesh_values(tooling.chaos_mesh_version),
                atomic=True, cleanup_on_fail=True, opts=child(self, provider=provider, depends_on=[namespace]))
        self.register_outputs({"k6OperatorEnabled": self.k6_operator_enabled,
                               "chaosMeshEnabled": self.chaos_mesh_enabled})
