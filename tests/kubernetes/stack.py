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
CAPACITY_TYPE = "karpenter.sh/capacity-type"
IMAGE = "ghcr.io/openbell/gateway"
PORT = 8080
SERVICE = "gateway"
GATEWAY_BIN = Path(__file__).resolve().parents[2] / "build" / "bin" / "openbell-gateway"


def objects(namespace: str, service: str = "gateway", version: str = "1.0.0",
            replicas: int = 2, *, zone_spread: bool = False, pdb: bool = False,
            prefer_capacity: str | None = None) -> list[dict[str, Any]]:
    """The gateway's objects. `zone_spread`: infra's hard zone spread (a cordoned zone not counted) and soft host
    spread; `pdb`: infra's PodDisruptionBudget (one pod at a time); `prefer_capacity`: a preferred node affinity
    for that karpenter.sh/capacity-type (where Karpenter would have put the pods: spot when it can)."""
    labels = {NAME_LABEL: service}
    stable = {**labels, "role": "stable"}
    container = {"name": service, "image": f"{IMAGE}:{version}",
                 "ports": [{"name": "http", "containerPort": PORT}],
                 "readinessProbe": {"httpGet": {"path": "/readyz", "port": PORT}}}
    pod_spec: dict[str, Any] = {"terminationGracePeriodSeconds": 15,
                                "nodeSelector": {"openbell.dev/pool": "gateway"},
                                "containers": [container]}
    if zone_spread:
        pod_spec["topologySpreadConstraints"] = spread(stable)
    if prefer_capacity:
        pod_spec["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": CAPACITY_TYPE, "operator": "In", "values": [prefer_capacity]}]}}]}}
    extra: list[dict[str, Any]] = []
    if pdb:
        extra.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                      "metadata": {"name": service, "namespace": namespace},
                      "spec": {"maxUnavailable": 1, "selector": {"matchLabels": stable}}})
    svc = lambda role: {  # noqa: E731
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{service}-{role}", "namespace": namespace},
        "spec": {"selector": {**labels, "role": role}, "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": service, "namespace": namespace, "labels": labels},
         "spec": {"replicas": replicas, "selector": {"matchLabels": stable},
                  "strategy": {"type": "RollingUpdate"},
                  "template": {"metadata": {"labels": stable}, "spec": pod_spec}}},
        *extra,
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


def prometheus_scrape_config(sd_file: Path, service: str = SERVICE, static: dict[str, str] | None = None) -> str:
    """The gateway's pods from the file the kubelet stand-in keeps (Debian's Prometheus is built without
    Kubernetes service discovery; on a cluster the doc's PodMonitor gives the same labels); `static`: more
    jobs, job name -> one host:port target."""
    jobs = "".join(f"""  - job_name: {job}
    scrape_interval: 1s
    static_configs:
      - targets: ['{target}']
""" for job, target in (static or {}).items())
    return f"""scrape_configs:
  - job_name: {service}
    scrape_interval: 1s
    file_sd_configs:
      - files: [{sd_file}]
        refresh_interval: 1s
""" + jobs


def spread(match_labels: dict[str, str]) -> list[dict[str, Any]]:
    """infra's zone spread for a workload (hard over zones, counting only schedulable nodes; soft over hosts),
    counted per ReplicaSet as infra/apps.py counts it."""
    from infra import kube as infra_kube

    constraints = infra_kube.zone_spread(match_labels)
    for constraint in constraints:
        constraint["matchLabelKeys"] = ["pod-template-hash"]
    return constraints


def nodepools(zones: list[str]) -> list[dict[str, Any]]:
    """infra's `gateway` and `data` Karpenter NodePools (infra/karpenter.py's specs, default configuration)."""
    from infra import karpenter
    from infra.config import KarpenterConfig

    cfg = KarpenterConfig()
    specs = {"gateway": karpenter.gateway_nodepool_spec(cfg, zones), "data": karpenter.data_nodepool_spec(cfg, zones)}
    return [{"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name}, "spec": spec}
            for name, spec in specs.items()]


def data_tier_standins(apps_namespace: str = "openbell") -> list[dict[str, Any]]:
    """Stand-ins for the tiers whose operators cannot run here, labelled as their operators label their pods so
    the experiments' selectors find them: the `ledger` Deployment (apps namespace, gateway pool), Strimzi's
    broker pods (StatefulSet in `kafka`, data pool, one per zone) and CloudNativePG's primary instance
    (StatefulSet in `postgres`, data pool). KWOK runs them (Running, Ready); nothing serves in them: they prove
    only that the cluster moves them, never anything about Kafka or PostgreSQL."""
    from infra import kube as infra_kube

    def pod(labels: dict[str, str], image: str, data: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {"terminationGracePeriodSeconds": 0, "containers": [{"name": "main", "image": image}],
                                "topologySpreadConstraints": infra_kube.zone_spread(labels)}
        spec.update(infra_kube.data_placement() if data else infra_kube.gateway_placement())
        return {"metadata": {"labels": labels}, "spec": spec}

    ledger = {NAME_LABEL: "ledger", "role": "stable", "app.kubernetes.io/part-of": "openbell"}
    broker = {"strimzi.io/cluster": "openbell", "strimzi.io/kind": "Kafka", "strimzi.io/pool-name": "broker"}
    primary = {"cnpg.io/cluster": "openbell", "cnpg.io/podRole": "instance", "cnpg.io/instanceRole": "primary"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kafka"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "postgres"}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "ledger", "namespace": apps_namespace, "labels": {NAME_LABEL: "ledger"}},
         "spec": {"replicas": 2, "selector": {"matchLabels": ledger},
                  "template": pod(ledger, "ghcr.io/openbell/ledger:1.0.0", data=False)}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "openbell-broker", "namespace": "kafka"},
         "spec": {"replicas": 3, "serviceName": "openbell-kafka-brokers", "podManagementPolicy": "Parallel",
                  "selector": {"matchLabels": broker},
                  "template": pod(broker, "quay.io/strimzi/kafka:0.48.0-kafka-4.1.0", data=True)}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "openbell", "namespace": "postgres"},
         "spec": {"replicas": 1, "serviceName": "openbell", "podManagementPolicy": "Parallel",
                  "selector": {"matchLabels": primary},
                  "template": pod(primary, "ghcr.io/cloudnative-pg/postgresql:17", data=True)}},
    ]


def fresh_dynamic(api_client: Any) -> Any:
    """A dynamic client that discovers the API now. The default one keeps discovery in a file named after the
    server's address and trusts it while it holds a kind: a cluster restarted at the same address without a CRD
    (the engine suite's Strimzi kinds) would still be said to serve it."""
    import tempfile

    from kubernetes.dynamic import DynamicClient

    with tempfile.TemporaryDirectory(prefix="openbell-discovery-") as directory:
        return DynamicClient(api_client, cache_file=str(Path(directory) / "discovery.json"))


def apply(api_client: Any, objs: list[dict[str, Any]]) -> None:
    """Create each object, or replace it when it exists (through the dynamic client: any kind, CRs too)."""
    from kubernetes.dynamic.exceptions import ConflictError

    dyn = fresh_dynamic(api_client)
    for obj in objs:
        res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        ns = obj["metadata"].get("namespace")
        try:
            res.create(body=obj, namespace=ns)
        except ConflictError:
            current = res.get(name=obj["metadata"]["name"], namespace=ns)
            body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": current.metadata.resourceVersion}}
            res.replace(body=body, namespace=ns)
