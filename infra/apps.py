"""The platform's own services on EKS: gateway (Go), enricher, feed and ledger (Python), and the edge.

Each service is a Deployment (pods labelled `role: stable`), a PodDisruptionBudget, an autoscaling/v2
HorizontalPodAutoscaler, a Service and a PodMonitor. The gateway gets what `openbell canary --target
kubernetes` expects (docs/kubernetes-canary.md, cli/openbell/targets/kubernetes.py): Deployment `gateway`
with `role: stable` in its selector and a container named `gateway`, Services `gateway-stable` and
`gateway-canary` (selector `role: stable|canary`, port 8080), and HTTPRoute `gateway` whose quote and
WebSocket rules send to both with weights. The canary Deployment itself is openbell's: not declared here,
and the route's weights are left alone by `pulumi up` (ignore_changes) so a running canary is not reset.

The edge is Gateway API, implemented by Envoy Gateway (GatewayClass `openbell-edge`). Why Envoy Gateway:
it upgrades WebSockets on every HTTPRoute by default and keeps them open as long as both ends talk (the
gateway pings every 20 s), honours weighted backendRefs per rule (the canary's split), and installs as one
Helm chart that also brings the Gateway API CRDs. Its proxies sit behind an internet-facing NLB (layer 4:
TLS is terminated by Envoy for the HTTPS listener), created by the in-tree AWS service controller, so no
extra controller or IAM is needed. ALB through the AWS Load Balancer Controller would work too, at the
price of another controller with a large IAM policy; VPC Lattice is service-to-service, not an internet
edge for long-lived WebSockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s

from infra import kube
from infra.config import PlatformConfig, ServiceScale
from infra.kube import child

NAMESPACE = kube.NAMESPACES["apps"]
EDGE_NAMESPACE = kube.NAMESPACES["gateway-system"]
PORT = 8080  # one HTTP port per service: API, WebSocket, /healthz, /readyz, /metrics (services/README.md)
PORT_NAME = "http"
ROLE = "role"  # stable | canary: what openbell canary and the SLO comparisons key on
SERVICES = ("gateway", "enricher", "feed", "ledger")
GATEWAY_CLASS = "openbell-edge"
EDGE_GATEWAY = "openbell-edge"
ROUTE = "gateway"  # openbell canary's default route name: the service's own
# The HTTPS listener's certificate: a kubernetes.io/tls Secret in the openbell namespace, issued outside this
# program (cert-manager or the organisation's PKI); the Gateway stays unprogrammed until it exists.
TLS_SECRET = "edge-tls"
# Envoy Gateway's chart, pinned: v1.5 ships Gateway API v1.3 CRDs (openbell canary needs v1.2 or later).
ENVOY_GATEWAY_CHART = "oci://docker.io/envoyproxy/gateway-helm"
ENVOY_GATEWAY_VERSION = "v1.5.9"
ENVOY_CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"

# Termination: Kubernetes removes the pod from the endpoints while preStop sleeps, so by SIGTERM the load
# balancer has stopped sending new connections to it; then the service drains. The grace period covers
# preStop + the service's own stop budget + a margin, so the kubelet never SIGKILLs a drain in progress.
PRESTOP_SLEEP_S = 5
GRACE_MARGIN_S = 10
# The gateway's --drain-timeout: its ~5,000 clients get a close frame with a 1-1.5 s reconnect hint at once
# and most are gone within seconds; stragglers are cut at 25 s.
GATEWAY_DRAIN_S = 25
# What each Python service may take to stop (from its code): ledger drains requests 10 s, relays the outbox
# for 5+5 s and closes its pool in 5 s; the enricher stops its pipeline and its ClickHouse writer, 15 s
# each; the feed flushes its producer for 10 s.
STOP_BUDGET_S = {"gateway": GATEWAY_DRAIN_S, "enricher": 30, "feed": 10, "ledger": 25}
CPU_TARGET_PERCENT = 70  # headroom for a burst (market open) while the HPA adds pods
# The enricher's analytics store is chdb in-process (services/enricher): a node-local scratch volume.
ENRICHER_DATA = "/var/lib/enricher"
ENRICHER_DATA_GI = 20
# The ledger's PostgreSQL password (key `password`), in the openbell namespace: CloudNativePG writes the owner's
# credentials to `<cluster>-app` in the postgres namespace, which pods here cannot read; this Secret is its copy.
LEDGER_DB_SECRET = "ledger-postgres"


class HasBootstrap(Protocol):
    @property
    def bootstrap(self) -> Any: ...


class HasHost(Protocol):
    @property
    def host(self) -> Any: ...


class HasOwner(Protocol):
    """The ledger database's owner credentials (Postgres)."""

    @property
    def host(self) -> Any: ...

    @property
    def owner_password(self) -> Any: ...


class ClusterLike(Protocol):
    @property
    def provider(self) -> pulumi.ProviderResource: ...


@dataclass(frozen=True)
class Probe:
    path: str
    period_s: int
    failures: int


READINESS = Probe("/readyz", 5, 2)  # out of the endpoints within ~10 s of a dependency failing
LIVENESS = Probe("/healthz", 10, 3)  # /healthz is 200 while the process runs: a restart only for a hang


def image(cfg: PlatformConfig, repository: str) -> str:
    """<registry>/<repository>:<tag>, or @sha256:... when the configured tag is a digest."""
    sep = "@" if cfg.apps.tag.startswith("sha256:") else ":"
    return f"{cfg.apps.registry}/{repository}{sep}{cfg.apps.tag}"


def memory_mib(quantity: str) -> int:
    """A config memory quantity (NNMi or NNGi) in MiB."""
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    if not match:
        raise ValueError(f"expected NNMi or NNGi, got {quantity!r}")
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def selector(service: str) -> dict[str, str]:
    """The stable Deployment's selector: `role: stable` in it, so it never adopts the canary's pods."""
    return {"app.kubernetes.io/name": service, ROLE: "stable"}


def pod_labels(service: str) -> dict[str, str]:
    return kube.labels(service, **{ROLE: "stable"})


def grace_period_s(service: str) -> int:
    return PRESTOP_SLEEP_S + STOP_BUDGET_S[service] + GRACE_MARGIN_S


def service_args(service: str, cfg: PlatformConfig, kafka: Any, postgres_host: Any) -> list[Any]:
    """The flags each service takes (services/*/README.md and their argparse / flag sets).

    `--version` comes from the pod's `role` label ($(ROLE), set from the downward API): stable pods say
    `stable`, and a canary cloned from this spec by openbell says `canary`, so its series never pose as stable.
    """
    common: list[Any] = ["--listen", f"0.0.0.0:{PORT}", "--kafka", kafka, "--version", "$(ROLE)"]
    if service == "gateway":
        return [*common, "--topic", "enriched", "--replica", "$(POD_NAME)", "--drain-timeout", f"{GATEWAY_DRAIN_S}s"]
    if service == "enricher":
        return [*common, "--in-topic", "ticks", "--out-topic", "enriched", "--group", "enricher",
                "--clickhouse-path", f"{ENRICHER_DATA}/chdb"]
    if service == "feed":
        return [*common, "--topic", "ticks"]
    if service == "ledger":
        # libpq reads the password from PGPASSWORD and TLS from PGSSLMODE (the env below): the DSN holds none.
        dsn = pulumi.Output.from_input(postgres_host).apply(lambda host: f"postgresql://ledger@{host}:5432/ledger")
        return [*common, "--topic", "orders", "--dsn", dsn]
    raise ValueError(f"unknown service {service!r}")


def _probe(probe: Probe, initial_delay_s: int = 0) -> dict[str, Any]:
    return {"httpGet": {"path": probe.path, "port": PORT_NAME}, "periodSeconds": probe.period_s,
            "failureThreshold": probe.failures, "timeoutSeconds": 2, "initialDelaySeconds": initial_delay_s}


def container(service: str, cfg: PlatformConfig, kafka: Any, postgres_host: Any) -> Any:
    """The service's container: pinned image, requests = config, memory limit = request (no CPU limit: CFS
    throttling would add tail latency to every tick; the request reserves the CPU and sizes the HPA)."""
    scale: ServiceScale = getattr(cfg.apps, service)
    env: list[dict[str, Any]] = [
        {"name": "ROLE", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{ROLE}']"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    volume_mounts: list[dict[str, Any]] = []
    if service == "gateway":
        command = ["/openbell-gateway"]
        env += [
            # The Go runtime sees the node's CPUs and no memory bound otherwise: size it to the pod.
            {"name": "GOMAXPROCS", "valueFrom": {"resourceFieldRef": {
                "containerName": service, "resource": "requests.cpu", "divisor": "1"}}},
            # A soft limit under the hard one: the GC works harder before the kernel OOM-kills the pod.
            {"name": "GOMEMLIMIT", "value": f"{memory_mib(scale.memory) * 9 // 10}MiB"},
        ]
    else:
        command = ["python", "-m", f"services.{service}"]
        volume_mounts.append({"name": "tmp", "mountPath": "/tmp"})
    if service == "enricher":
        volume_mounts.append({"name": "data", "mountPath": ENRICHER_DATA})
    if service == "ledger":
        env += [
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": LEDGER_DB_SECRET, "key": "password"}}},
            {"name": "PGSSLMODE", "value": "require"},  # CloudNativePG serves TLS by default
        ]
    lifecycle = {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_S}}}
    return {
        "name": service,
        "image": image(cfg, "gateway" if service == "gateway" else "services"),
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "args": service_args(service, cfg, kafka, postgres_host),
        "env": env,
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": scale.cpu, "memory": scale.memory}, "limits": {"memory": scale.memory}},
        "readinessProbe": _probe(READINESS),
        # The gateway warms its quote cache and the ledger migrates its schema before ready; liveness
        # only asks whether the process answers, so a short delay is enough.
        "livenessProbe": _probe(LIVENESS, initial_delay_s=10),
        "lifecycle": lifecycle,
        "volumeMounts": volume_mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }


def pod_spec(service: str, cfg: PlatformConfig, kafka: Any, postgres_host: Any) -> Any:
    volumes: list[dict[str, Any]] = []
    if service != "gateway":
        volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}})
    if service == "enricher":
        volumes.append({"name": "data", "emptyDir": {"sizeLimit": f"{ENRICHER_DATA_GI}Gi"}})
    spread = kube.zone_spread(selector(service), hard=service != "feed")
    for constraint in spread:
        # Count only the current ReplicaSet's pods, so a rollout spreads the new pods evenly too.
        constraint["matchLabelKeys"] = ["pod-template-hash"]
    return {
        "serviceAccountName": service,
        "automountServiceAccountToken": False,  # none of the services calls the Kubernetes API
        "terminationGracePeriodSeconds": grace_period_s(service),
        **kube.gateway_placement(),
        "topologySpreadConstraints": spread,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001 if service != "gateway" else 65532,
                            "fsGroup": 10001 if service != "gateway" else 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container(service, cfg, kafka, postgres_host)],
        "volumes": volumes,
    }


def deployment_spec(service: str, cfg: PlatformConfig, kafka: Any, postgres_host: Any) -> Any:
    scale: ServiceScale = getattr(cfg.apps, service)
    return {
        "replicas": scale.min_replicas,
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector(service)},
        # New pods are ready before old ones go: capacity (and, for the gateway, connection slots) never dips.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": pod_labels(service)},
            "spec": pod_spec(service, cfg, kafka, postgres_host),
        },
    }


def hpa_spec(service: str, cfg: PlatformConfig) -> Any:
    scale: ServiceScale = getattr(cfg.apps, service)
    cpu = {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT}}}
    metrics: list[dict[str, Any]] = [cpu]
    behavior: dict[str, Any] = {}
    if service == "gateway":
        # Open WebSockets per pod (served by prometheus-adapter from the PodMonitor's series); whichever of
        # connections and CPU asks for more pods wins.
        metrics = [{"type": "Pods", "pods": {"metric": {"name": "gateway_connections"}, "target": {
            "type": "AverageValue", "averageValue": str(cfg.apps.connections_per_pod)}}}, cpu]
        behavior = {
            "scaleUp": {"stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}]},
            # Removing a gateway pod drains its clients into the others: one pod every two minutes, after
            # ten minutes of lower load, so a lull between sessions does not cause a reconnect storm.
            "scaleDown": {"stabilizationWindowSeconds": 600,
                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]},
        }
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service},
        "minReplicas": scale.min_replicas,
        "maxReplicas": scale.max_replicas,
        "metrics": metrics,
    }
    if behavior:
        spec["behavior"] = behavior
    return spec


def pdb_spec(service: str) -> Any:
    """One pod at a time: for the gateway that bounds a voluntary disruption (Karpenter consolidation, node
    drain) to one pod's clients reconnecting; for the enricher to one consumer-group rebalance; and with a
    single replica (dev) it still lets nodes drain, where minAvailable 1 would block them."""
    return {"maxUnavailable": 1, "selector": {"matchLabels": selector(service)}}


def pod_monitor_spec(service: str) -> Any:
    """Scrape /metrics of stable and canary pods alike, with `job=<service>` (what slo/*.yaml selects on) and
    `role` from the pod label (what openbell canary compares)."""
    return {
        "selector": {"matchLabels": {"app.kubernetes.io/name": service}},
        "namespaceSelector": {"matchNames": [NAMESPACE]},
        "podMetricsEndpoints": [{
            "port": PORT_NAME,
            "path": "/metrics",
            "interval": "15s",
            "relabelings": [
                {"sourceLabels": ["__meta_kubernetes_pod_label_role"], "targetLabel": "role", "action": "replace"},
                # The operator's default job is "<namespace>/<podmonitor>".
                {"targetLabel": "job", "replacement": service, "action": "replace"},
            ],
        }],
    }


def route_spec(cfg: PlatformConfig) -> Any:
    """HTTPRoute `gateway`: quotes and WebSockets to the gateway (stable/canary by weight), orders and
    positions to the ledger, analytics to the enricher."""
    weight = cfg.apps.canary_weight

    def backend(name: str, w: int | None = None) -> dict[str, Any]:
        ref: dict[str, Any] = {"group": "", "kind": "Service", "name": name, "port": PORT}
        if w is not None:
            ref["weight"] = w
        return ref

    def prefix(*paths: str) -> list[dict[str, Any]]:
        return [{"path": {"type": "PathPrefix", "value": p}} for p in paths]

    gateway = [backend("gateway-stable", 100 - weight), backend("gateway-canary", weight)]
    return {
        "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": EDGE_GATEWAY,
                        "namespace": NAMESPACE, "sectionName": "https"}],
        "hostnames": [cfg.apps.hostname],
        "rules": [
            {"matches": prefix("/ws", "/v1/quotes"), "backendRefs": gateway},
            {"matches": prefix("/v1/orders", "/v1/positions"), "backendRefs": [backend("ledger")]},
            {"matches": prefix("/v1/analytics"), "backendRefs": [backend("enricher")]},
        ],
    }


# openbell canary owns the weights between rollouts' steps: `pulumi up` leaves them as they are.
ROUTE_IGNORE_CHANGES = ["spec.rules[*].backendRefs[*].weight"]
# `spec.rules` is an atomic list: once the canary has patched the weights it co-owns the whole list, and every later
# server-side apply of a changed route by the engine would fail on a field conflict (seen on a real API server).
# The engine takes the list back by force; what it applies then carries the weights as last deployed, so a route
# change must not land while a canary holds traffic: `openbell infra up` refuses that (openbell.infra.deploy).
ROUTE_ANNOTATIONS = {"pulumi.com/patchForce": "true"}


def envoy_proxy_spec(cfg: PlatformConfig) -> Any:
    """How Envoy Gateway runs the edge proxies: one per zone at least, on the gateway pool, behind an NLB."""
    match = {"app.kubernetes.io/component": "proxy", "app.kubernetes.io/managed-by": "envoy-gateway",
             "gateway.envoyproxy.io/owning-gateway-name": EDGE_GATEWAY}
    replicas = max(len(cfg.network.azs), 2)  # a zone's loss leaves the others serving
    return {
        "provider": {"type": "Kubernetes", "kubernetes": {
            "envoyDeployment": {
                "replicas": replicas,
                "pod": {"nodeSelector": kube.gateway_placement()["nodeSelector"],
                        "topologySpreadConstraints": kube.zone_spread(match)},
                # Envoy is the same connection count as the gateway tier, with far less work per message:
                # the gateway pod's size is a generous bound.
                "container": {"resources": {"requests": {"cpu": cfg.apps.gateway.cpu,
                                                         "memory": cfg.apps.gateway.memory},
                                            "limits": {"memory": cfg.apps.gateway.memory}}},
            },
            "envoyPDB": {"maxUnavailable": 1},
            "envoyService": {
                "type": "LoadBalancer",
                # Client IPs preserved and no second hop through another node.
                "externalTrafficPolicy": "Local",
                "annotations": {
                    "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
                    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
                    "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled": "true",
                },
            },
        }},
        # Envoy's own drain when a proxy pod goes: clients get time to move to the other proxies.
        "shutdown": {"drainTimeout": f"{GATEWAY_DRAIN_S + 5}s", "minDrainDuration": f"{PRESTOP_SLEEP_S}s"},
    }


class Apps(pulumi.ComponentResource):
    """gateway, enricher, feed and ledger, their Services, PDBs, HPAs, PodMonitors, and the Gateway API edge.

    Attributes: hostname (the public host of the edge), deployments/services/hpas/pdbs (dicts by name),
    route (the HTTPRoute), gateway (the Gateway API Gateway).
    """

    def __init__(self, name: str, cfg: PlatformConfig, cluster: ClusterLike, kafka: HasBootstrap,
                 postgres: HasOwner, clickhouse: HasHost, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:Apps", name, None, opts)
        provider = cluster.provider
        self.hostname: str = cfg.apps.hostname
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata={"name": NAMESPACE, "labels": {
                **kube.labels("apps", NAMESPACE),
                # Every pod here runs as non-root with no capabilities: the API server enforces it.
                "pod-security.kubernetes.io/enforce": "restricted"}},
            opts=child(self, provider=provider))
        in_ns = child(self, provider=provider, depends_on=[self.namespace])
        # The ledger's copy of the database owner's password (PGPASSWORD below reads it).
        self.ledger_db_secret = k8s.core.v1.Secret(
            f"{name}-ledger-db-secret",
            metadata={"name": LEDGER_DB_SECRET, "namespace": NAMESPACE, "labels": kube.labels("ledger", "db")},
            type="kubernetes.io/basic-auth",
            string_data={"username": "ledger", "password": postgres.owner_password},
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(
                additional_secret_outputs=["data", "stringData"])))
        # `clickhouse` is not read yet: the enricher serves analytics from its own chdb (services/enricher has
        # no flag for a ClickHouse server); it is taken so the wiring and the dependency order are in place.

        self.service_accounts: dict[str, k8s.core.v1.ServiceAccount] = {}
        self.deployments: dict[str, k8s.apps.v1.Deployment] = {}
        self.services: dict[str, k8s.core.v1.Service] = {}
        self.pdbs: dict[str, k8s.policy.v1.PodDisruptionBudget] = {}
        self.hpas: dict[str, k8s.autoscaling.v2.HorizontalPodAutoscaler] = {}
        self.pod_monitors: dict[str, k8s.apiextensions.CustomResource] = {}
        for service in SERVICES:
            meta: Any = {"name": service, "namespace": NAMESPACE, "labels": kube.labels(service)}
            self.service_accounts[service] = k8s.core.v1.ServiceAccount(
                f"{name}-{service}-sa", metadata=meta, automount_service_account_token=False, opts=in_ns)
            self.deployments[service] = k8s.apps.v1.Deployment(
                f"{name}-{service}", metadata=meta,
                spec=deployment_spec(service, cfg, kafka.bootstrap, postgres.host),
                # The HPA owns the replica count after creation: `pulumi up` must not reset it to the minimum.
                opts=pulumi.ResourceOptions.merge(
                    child(self, provider=provider, depends_on=[self.namespace, self.service_accounts[service]]),
                    pulumi.ResourceOptions(ignore_changes=["spec.replicas"])))
            self.pdbs[service] = k8s.policy.v1.PodDisruptionBudget(
                f"{name}-{service}-pdb", metadata=meta, spec=pdb_spec(service), opts=in_ns)
            self.hpas[service] = k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-{service}-hpa", metadata=meta, spec=hpa_spec(service, cfg),
                opts=child(self, provider=provider, depends_on=[self.deployments[service]]))
            self.pod_monitors[service] = k8s.apiextensions.CustomResource(
                f"{name}-{service}-podmonitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
                metadata=meta, spec=pod_monitor_spec(service), opts=in_ns)
        for service_name, role_selector in (
                ("gateway-stable", selector("gateway")),
                ("gateway-canary", {"app.kubernetes.io/name": "gateway", ROLE: "canary"}),
                ("enricher", {"app.kubernetes.io/name": "enricher"}),
                ("ledger", {"app.kubernetes.io/name": "ledger"}),
                ("feed", {"app.kubernetes.io/name": "feed"})):
            svc_meta: Any = {"name": service_name, "namespace": NAMESPACE,
                             "labels": kube.labels(service_name.split("-")[0], service_name)}
            svc_spec: Any = {"type": "ClusterIP", "selector": role_selector,
                             "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME, "protocol": "TCP"}]}
            self.services[service_name] = k8s.core.v1.Service(
                f"{name}-{service_name}-svc", metadata=svc_meta, spec=svc_spec, opts=in_ns)
        self._edge(name, cfg, provider)
        self.register_outputs({"hostname": self.hostname})

    def _edge(self, name: str, cfg: PlatformConfig, provider: pulumi.ProviderResource) -> None:
        """Envoy Gateway (controller + Gateway API CRDs), its proxy settings, the GatewayClass, the Gateway
        with an HTTPS listener for the hostname, and HTTPRoute `gateway`."""
        edge_ns = k8s.core.v1.Namespace(
            f"{name}-edge-ns", metadata={"name": EDGE_NAMESPACE, "labels": {
                **kube.labels("edge", EDGE_NAMESPACE), "pod-security.kubernetes.io/enforce": "baseline"}},
            opts=child(self, provider=provider))
        # On an existing cluster Envoy Gateway (and the Gateway API CRDs) is the owner's.
        self.envoy_gateway = None if cfg.existing else k8s.helm.v3.Release(
            f"{name}-envoy-gateway", name="envoy-gateway", chart=ENVOY_GATEWAY_CHART,
            version=ENVOY_GATEWAY_VERSION, namespace=EDGE_NAMESPACE, atomic=True, cleanup_on_fail=True,
            values={
                "deployment": {
                    "replicas": 2,  # the control plane: a standby while one restarts (proxies keep their config)
                    "pod": {"nodeSelector": {kube.POOL_LABEL: "system"}},
                    "envoyGateway": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                   "limits": {"memory": "1Gi"}}},
                },
                "podDisruptionBudget": {"maxUnavailable": 1},
            },
            opts=child(self, provider=provider, depends_on=[edge_ns]))
        after_crds = child(self, provider=provider, depends_on=kube.present(self.envoy_gateway, self.namespace))
        self.envoy_proxy = k8s.apiextensions.CustomResource(
            f"{name}-envoy-proxy", api_version="gateway.envoyproxy.io/v1alpha1", kind="EnvoyProxy",
            metadata={"name": GATEWAY_CLASS, "namespace": EDGE_NAMESPACE, "labels": kube.labels("edge")},
            spec=envoy_proxy_spec(cfg), opts=after_crds)
        self.gateway_class = k8s.apiextensions.CustomResource(
            f"{name}-gateway-class", api_version="gateway.networking.k8s.io/v1", kind="GatewayClass",
            metadata={"name": GATEWAY_CLASS, "labels": kube.labels("edge")},  # cluster-scoped
            spec={"controllerName": ENVOY_CONTROLLER,
                  "parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy",
                                    "name": GATEWAY_CLASS, "namespace": EDGE_NAMESPACE}},
            opts=child(self, provider=provider, depends_on=kube.present(self.envoy_gateway, self.envoy_proxy)))
        self.gateway = k8s.apiextensions.CustomResource(
            f"{name}-edge-gateway", api_version="gateway.networking.k8s.io/v1", kind="Gateway",
            metadata={"name": EDGE_GATEWAY, "namespace": NAMESPACE, "labels": kube.labels("edge")},
            spec={"gatewayClassName": GATEWAY_CLASS, "listeners": [{
                "name": "https", "protocol": "HTTPS", "port": 443, "hostname": cfg.apps.hostname,
                "tls": {"mode": "Terminate", "certificateRefs": [{"group": "", "kind": "Secret", "name": TLS_SECRET}]},
                "allowedRoutes": {"namespaces": {"from": "Same"}}}]},
            opts=child(self, provider=provider, depends_on=[self.gateway_class, self.namespace]))
        self.route = k8s.apiextensions.CustomResource(
            f"{name}-route", api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute",
            metadata={"name": ROUTE, "namespace": NAMESPACE, "labels": kube.labels("gateway", "gateway"),
                      "annotations": ROUTE_ANNOTATIONS},
            spec=route_spec(cfg),
            opts=pulumi.ResourceOptions.merge(
                child(self, provider=provider, depends_on=[self.gateway, *self.services.values()]),
                pulumi.ResourceOptions(ignore_changes=ROUTE_IGNORE_CHANGES)))
