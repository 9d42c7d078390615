"""The gateway as docs/kubernetes-canary.md expects it on a cluster, for the live suite: a Namespace, the stable
Deployment, Services `<svc>-stable` / `<svc>-canary`, a GatewayClass, Gateway and HTTPRoute; plus the argv
that runs the real gateway binary for one of its pods (openbell.localkube.pods), and a Prometheus scrape config
that finds the pods through the API server (Kubernetes service discovery), labelled as the doc's PodMonitor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openbell.localkube.cluster import HOST_IP
from openbell.localkube.pods import container_image
from openbell.targets.kubernetes import image_version

NAME_LABEL = "app.kubernetes.io/name"
IMAGE = "ghcr.io/openbell/gateway"
PORT = 8080
SERVICE = "gateway"
GATEWAY_BIN = Path(__file__).resolve().parents[2] / "build" / "bin" / "openbell-gateway"


def objects(namespace: str, service: str = "gateway", version: str = "1.0.0",
            replicas: int = 2) -> list[dict[str, Any]]:
    labels = {NAME_LABEL: service}
    stable = {**labels, "role": "stable"}
    container = {"name": service, "image": f"{IMAGE}:{version}",
                 "ports": [{"name": "http", "containerPort": PORT}],
                 "readinessProbe": {"httpGet": {"path": "/readyz", "port": PORT}}}
    svc = lambda role: {  # noqa: E731
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{service}-{role}", "namespace": namespace},
        "spec": {"selector": {**labels, "role": role}, "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": service, "namespace": namespace, "labels": labels},
         "spec": {"replicas": replicas, "selector": {"matchLabels": stable},
                  "strategy": {"type": "RollingUpdate"},
                  "template": {"metadata": {"labels": stable},
                               "spec": {"terminationGracePeriodSeconds": 15,
                                        "nodeSelector": {"openbell.dev/pool": "gateway"},
                                        "containers": [container]}}}},
        svc("stable"), svc("canary"),
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "openbell"},
         "spec": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "public", "namespace": namespace},
         "spec": {"gatewayClassName": "openbell",
                  "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": service, "namespace": namespace},
         "spec": {"parentRefs": [{"name": "public"}],
                  "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                             "backendRefs": [{"name": f"{service}-stable", "port": PORT}]}]}},
    ]


def gateway_command(pod: dict[str, Any]) -> list[str]:
    """The real gateway for one pod: on the pod's IP, its image tag as the `version` label, the pod's name as
    the replica. No Kafka is reachable from the cluster's namespace: the gateway serves its HTTP API, metrics,
    readiness and drain without ticks (its Kafka client keeps retrying)."""
    version = image_version(container_image(pod))
    # A stand-in for a bad build: an image tagged *-faulty answers half its handshakes and requests 503.
    faults = ["--fault-error-rate", "0.5"] if version.endswith("-faulty") else []
    return [str(GATEWAY_BIN), "--listen", f"{pod['status']['podIP']}:{PORT}",
            "--version", version, "--replica", pod["metadata"]["name"],
            "--kafka", f"{HOST_IP}:9", "--drain-timeout", "2s", "--reconnect-hint-ms", "100", *faults]


def sd_target(pod: dict[str, Any]) -> dict[str, Any]:
    """A served pod as Prometheus file discovery lists it, labelled as the doc's PodMonitor labels it."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return {"targets": [f"{pod['status']['podIP']}:{PORT}"],
            "labels": {"role": labels.get("role", ""), "pod": pod["metadata"]["name"],
                       "namespace": pod["metadata"]["namespace"]}}


def prometheus_scrape_config(sd_file: Path, service: str = SERVICE) -> str:
    """The gateway's pods from the file the kubelet stand-in keeps (Debian's Prometheus is built without
    Kubernetes service discovery; on a cluster the doc's PodMonitor gives the same labels)."""
    return f"""scrape_configs:
  - job_name: {service}
    scrape_interval: 1s
    file_sd_configs:
      - files: [{sd_file}]
        refresh_interval: 1s
"""


def apply(api_client: Any, objs: list[dict[str, Any]]) -> None:
    """Create each object, or replace it when it exists (through the dynamic client: any kind, CRs too)."""
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ConflictError

    dyn = DynamicClient(api_client)
    for obj in objs:
        res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        ns = obj["metadata"].get("namespace")
        try:
            res.create(body=obj, namespace=ns)
        except ConflictError:
            current = res.get(name=obj["metadata"]["name"], namespace=ns)
            body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": current.metadata.resourceVersion}}
            res.replace(body=body, namespace=ns)
