"""The services, the edge, observability and tooling (infra/apps.py, observability.py, tooling.py) under
pulumi's mocks, for the dev and prod stacks, plus the services' Dockerfiles.

The whole program runs (the real Network, Cluster and data tier, so the services get the real Kafka and
PostgreSQL addresses); the assertions are on what this part declares. The gateway's objects are also fed
to openbell's own Kubernetes canary target (the functions `openbell canary --target kubernetes` runs), so
a mismatch of names or labels with what it expects fails here, not in a rollout.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pulumi
import pytest

from infra import apps, observability, tooling
from infra.config import PlatformConfig, ToolingConfig, load_stack_file
from infra.offline import Plan, Recorded, run
from infra.program import build
from openbell.slo.loader import load_slos
from openbell.targets import kubernetes as target

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "prod")
K8S_VERSION = "1.31"
ROUTE_SCHEMA = json.loads((ROOT / "cli/openbell/targets/schemas/httproute-v1.json").read_text())
SERVICES = ("gateway", "enricher", "feed", "ledger")
PINNED_IMAGE = re.compile(r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+"
                          r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$")


@dataclass
class Run:
    """One stack's recorded plan, and the resource options seen for each resource (mocks do not record them)."""

    cfg: PlatformConfig
    plan: Plan
    ignore_changes: dict[str, list[str] | None] = field(default_factory=dict)

    def one(self, type_: str, name: str) -> Recorded:
        found = [r for r in self.plan.of_type(type_) if r.name == name]
        assert len(found) == 1, f"{type_} {name}: {len(found)} declared"
        return found[0]

    def k8s(self, kind: str) -> list[Recorded]:
        return [r for r in self.plan.resources if r.kind == kind]

    def named(self, kind: str, name: str, namespace: str | None = "openbell") -> dict[str, Any]:
        """The recorded inputs of the object `kind` `name` (in `namespace`), ints restored."""
        found = [r for r in self.k8s(kind) if r.inputs.get("metadata", {}).get("name") == name
                 and r.inputs.get("metadata", {}).get("namespace") == namespace]
        assert len(found) == 1, f"{kind} {namespace}/{name}: {len(found)} declared"
        return ints(found[0].inputs)

    def release(self, chart: str) -> dict[str, Any] | None:
        found = [r for r in self.plan.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"].endswith(chart)]
        assert len(found) <= 1
        return ints(found[0].inputs) if found else None


def ints(value: Any) -> Any:
    """Pulumi's mocks carry every number as a float: integral ones back to ints, as the API server reads them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [ints(v) for v in value]
    return value


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> Run:
    cfg = load_stack_file(ROOT / f"stacks/Pulumi.{request.param}.yaml")
    seen: dict[str, list[str] | None] = {}

    def capture(args: pulumi.ResourceTransformationArgs) -> None:
        seen[args.name] = args.opts.ignore_changes
        return None

    def program(cfg: PlatformConfig) -> None:
        pulumi.runtime.register_stack_transformation(capture)
        build(cfg)

    return Run(cfg, run(cfg, request.param, program), seen)


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


# ---- Deployments ------------------------------------------------------------------------------------------

def test_every_service_has_a_deployment_with_requests_and_a_pinned_image(stack: Run) -> None:
    for service in SERVICES:
        deployment = stack.named("Deployment", service)
        scale = getattr(stack.cfg.apps, service)
        assert deployment["spec"]["replicas"] == scale.min_replicas
        for c in containers(deployment):
            assert c["resources"]["requests"] == {"cpu": scale.cpu, "memory": scale.memory}, service
            assert c["resources"]["limits"]["memory"] == scale.memory, service
            assert PINNED_IMAGE.match(c["image"]), c["image"]
            assert not c["image"].endswith(":latest")
            repo = "gateway" if service == "gateway" else "services"
            assert c["image"] == f"{stack.cfg.apps.registry}/{repo}:{stack.cfg.apps.tag}"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["securityContext"]["runAsNonRoot"] is True
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["labels"]["role"] == "stable"
        assert pod["spec"]["nodeSelector"] == {"openbell.dev/pool": "gateway"}
        spread = pod["spec"]["topologySpreadConstraints"]
        zone = [t for t in spread if t["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zone and zone[0]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_core_objects_are_valid_for_the_kubernetes_api(stack: Run) -> None:
    kinds = ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Namespace")
    checked = 0
    for kind in kinds:
        for r in stack.k8s(kind):
            if r.name.startswith(("apps-", "observability-", "tooling-")):
                kubernetes_validate.validate(ints(r.inputs), K8S_VERSION, strict=True)
                checked += 1
    assert checked >= 4 * 5


def test_each_service_gets_the_flags_its_own_parser_accepts(stack: Run) -> None:
    """The args are parsed by the services' real argparse parsers (Python) and checked against the gateway's
    flag set (Go), with the downward-API variables as the kubelet expands them."""
    from services.enricher.app import parse_args as enricher_args
    from services.feed.app import parse_args as feed_args
    from services.ledger.__main__ import parser as ledger_parser

    def expanded(service: str) -> list[str]:
        c = containers(stack.named("Deployment", service))[0]
        names = {e["name"] for e in c["env"]}
        assert {"ROLE", "POD_NAME"} <= names
        return [a.replace("$(ROLE)", "stable").replace("$(POD_NAME)", f"{service}-0") for a in c["args"]]

    kafka = "openbell-kafka-bootstrap.kafka.svc:9092"
    feed = feed_args(expanded("feed"))
    assert (feed.kafka, feed.topic, feed.listen) == (kafka, "ticks", ("0.0.0.0", 8080))
    enricher = enricher_args(expanded("enricher"))
    assert (enricher.in_topic, enricher.out_topic, enricher.group) == ("ticks", "enriched", "enricher")
    assert enricher.clickhouse_path.startswith(apps.ENRICHER_DATA)
    ledger = ledger_parser().parse_args(expanded("ledger"))
    assert ledger.dsn == "postgresql://ledger@openbell-rw.postgres.svc:5432/ledger"
    assert ledger.kafka == kafka and ledger.topic == "orders"
    go_flags = set(re.findall(r'fs\.\w+Var\(&[^,]+, "([a-z-]+)"', (ROOT / "services/gateway/main.go").read_text()))
    gateway = expanded("gateway")
    flags = {a.removeprefix("--") for a in gateway if a.startswith("--")}
    assert flags <= go_flags, flags - go_flags
    assert gateway[gateway.index("--kafka") + 1] == kafka and gateway[gateway.index("--topic") + 1] == "enriched"


def test_gateway_drains_before_the_kubelet_kills_it(stack: Run) -> None:
    deployment = stack.named("Deployment", "gateway")
    c = containers(deployment)[0]
    args = c["args"]
    drain = int(args[args.index("--drain-timeout") + 1].removesuffix("s"))
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert 0 < pre_stop <= 10
    assert grace > pre_stop + drain, (grace, pre_stop, drain)
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for service in SERVICES:  # every service: endpoint removal first, then SIGTERM
        d = stack.named("Deployment", service)
        assert containers(d)[0]["lifecycle"]["preStop"]["sleep"]["seconds"] == apps.PRESTOP_SLEEP_S
        assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > apps.PRESTOP_SLEEP_S
    assert stack.ignore_changes["apps-gateway"] == ["spec.replicas"]  # the HPA owns the count


# ---- PDBs and HPAs ----------------------------------------------------------------------------------------

def test_pdb_and_hpa_per_service(stack: Run) -> None:
    for service in SERVICES:
        deployment = stack.named("Deployment", service)
        pdb = stack.named("PodDisruptionBudget", service)
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert ("maxUnavailable" in pdb["spec"]) != ("minAvailable" in pdb["spec"])
        hpa = stack.named("HorizontalPodAutoscaler", service)
        scale = getattr(stack.cfg.apps, service)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (scale.min_replicas, scale.max_replicas)
        cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
        assert cpu == [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 70}}}]


def test_gateway_scales_on_connections_and_cpu(stack: Run) -> None:
    hpa = stack.named("HorizontalPodAutoscaler", "gateway")
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods == [{"type": "Pods", "pods": {"metric": {"name": "gateway_connections"}, "target": {
        "type": "AverageValue", "averageValue": str(stack.cfg.apps.connections_per_pod)}}}]
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Pods", "Resource"}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    # The custom metric exists because prometheus-adapter serves it from the PodMonitor's series.
    adapter = stack.release("prometheus-adapter")
    assert adapter is not None
    rule = adapter["values"]["rules"]["custom"][0]
    assert rule["name"]["as"] == "gateway_connections" and "gateway_connections" in rule["seriesQuery"]
    assert adapter["values"]["rules"]["resource"]["cpu"]["containerQuery"]  # the CPU HPAs' metrics API
    assert adapter["values"]["prometheus"]["url"] == "http://kps-prometheus.monitoring.svc"


# ---- Services, route, canary --------------------------------------------------------------------------------

def test_stable_and_canary_services(stack: Run) -> None:
    for role in ("stable", "canary"):
        svc = stack.named("Service", f"gateway-{role}")
        assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "gateway", "role": role}
        assert svc["spec"]["ports"][0]["port"] == 8080
        assert svc["spec"]["type"] == "ClusterIP"
    for service in ("enricher", "ledger", "feed"):
        assert stack.named("Service", service)["spec"]["selector"] == {"app.kubernetes.io/name": service}
    assert not [d for d in stack.k8s("Deployment") if d.inputs["metadata"]["name"] == "gateway-canary"]


def test_route_weights_matches_and_ignore_changes(stack: Run) -> None:
    route = stack.named("HTTPRoute", "gateway")
    jsonschema.Draft202012Validator(ROUTE_SCHEMA).validate(route)
    weight = stack.cfg.apps.canary_weight
    by_path = {m["path"]["value"]: rule for rule in route["spec"]["rules"] for m in rule["matches"]}
    assert set(by_path) == {"/ws", "/v1/quotes", "/v1/orders", "/v1/positions", "/v1/analytics"}
    for path in ("/ws", "/v1/quotes"):
        refs = {r["name"]: r["weight"] for r in by_path[path]["backendRefs"]}
        assert refs == {"gateway-stable": 100 - weight, "gateway-canary": weight}
    for path, backend in (("/v1/orders", "ledger"), ("/v1/positions", "ledger"), ("/v1/analytics", "enricher")):
        assert [r["name"] for r in by_path[path]["backendRefs"]] == [backend]
        assert all(m["path"]["type"] == "PathPrefix" for m in by_path[path]["matches"])
    assert route["spec"]["hostnames"] == [stack.cfg.apps.hostname]
    assert stack.ignore_changes["apps-route"] == ["spec.rules[*].backendRefs[*].weight"]
    # The Gateway the route attaches to: HTTPS for the hostname, on our GatewayClass.
    gateway = stack.named("Gateway", apps.EDGE_GATEWAY)
    assert route["spec"]["parentRefs"][0]["name"] == apps.EDGE_GATEWAY
    (listener,) = gateway["spec"]["listeners"]
    assert (listener["protocol"], listener["port"], listener["hostname"]) == ("HTTPS", 443, stack.cfg.apps.hostname)
    assert gateway["spec"]["gatewayClassName"] == apps.GATEWAY_CLASS
    gateway_class = stack.named("GatewayClass", apps.GATEWAY_CLASS, namespace=None)
    assert gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    envoy = stack.release("gateway-helm")
    assert envoy is not None and envoy["version"] == apps.ENVOY_GATEWAY_VERSION


def test_openbell_canary_can_drive_what_is_declared(stack: Run) -> None:
    """What `openbell canary --target kubernetes` does to these objects succeeds: clone the stable into a
    canary, plan the promotion patch, and move the route's weights (checks in docs/kubernetes-canary.md)."""
    stable = stack.named("Deployment", "gateway")
    canary = target.canary_deployment(stable, "1.1.0")
    assert canary["metadata"]["name"] == "gateway-canary"
    assert canary["spec"]["selector"]["matchLabels"]["role"] == "canary"
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/gateway:1.1.0")
    kubernetes_validate.validate(canary, K8S_VERSION, strict=True)
    target.stable_replace_patch(stable, "1.1.0")
    route = stack.named("HTTPRoute", "gateway")
    assert target.route_weight(route, "gateway-canary") == stack.cfg.apps.canary_weight
    patch = target.route_weights_patch(route, "gateway-stable", "gateway-canary", 25)
    moved = [r for r in patch["spec"]["rules"] if any(b["name"] == "gateway-canary" for b in r["backendRefs"])]
    assert len(moved) == 1 and {b["name"]: b["weight"] for b in moved[0]["backendRefs"]} == {
        "gateway-stable": 75, "gateway-canary": 25}
    # The canary's pods are selected by the stable's PDB only when they are stable: the canary stays movable.
    assert stack.named("PodDisruptionBudget", "gateway")["spec"]["selector"]["matchLabels"]["role"] == "stable"


def test_pod_monitors_relabel_role_and_job(stack: Run) -> None:
    for service in SERVICES:
        monitor = stack.named("PodMonitor", service)
        assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": service}
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
        relabel = endpoint["relabelings"]
        assert {"sourceLabels": ["__meta_kubernetes_pod_label_role"], "targetLabel": "role",
                "action": "replace"} in relabel
        assert {"targetLabel": "job", "replacement": service, "action": "replace"} in relabel
    # The SLOs select on those job names.
    jobs = {j for f in (ROOT / "slo").glob("*.yaml") for j in re.findall(r'job=~?"([^"]+)"', f.read_text())}
    assert {part for j in jobs for part in j.split("|")} <= set(SERVICES)


# ---- Observability ------------------------------------------------------------------------------------------

def test_one_prometheus_rule_per_slo_file_with_alerts_and_runbooks(stack: Run) -> None:
    slos = load_slos([ROOT / "slo"])
    files = sorted({Path(s.source).name for s in slos})
    rules = [r for r in stack.k8s("PrometheusRule") if r.name.startswith("observability-")]
    assert len(rules) == len(files) == len(list((ROOT / "slo").glob("*.yaml")))
    base = stack.cfg.observability.runbook_base_url
    for slo in slos:
        rule = stack.named("PrometheusRule", observability.rule_name(slo.source), namespace="monitoring")
        alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
        assert {a["alert"] for a in alerts} == set(slo.alert_names()), slo.name
        runbook = f"{base}{Path(slo.runbook or '').name}"
        for alert in alerts:
            assert alert["annotations"]["runbook_url"] == runbook
            assert alert["labels"]["severity"] in ("page", "ticket")
            assert (ROOT / "runbooks" / Path(runbook).name).is_file()


def test_alertmanager_routes_by_severity_with_runbook_links(stack: Run) -> None:
    kps = stack.release("kube-prometheus-stack")
    assert kps is not None
    assert kps["version"] == stack.cfg.observability.prometheus_stack_version
    assert kps["namespace"] == "monitoring"
    prometheus = kps["values"]["prometheus"]["prometheusSpec"]
    assert prometheus["retention"] == f"{stack.cfg.observability.retention_days}d"
    assert prometheus["podMonitorSelectorNilUsesHelmValues"] is False
    assert prometheus["ruleSelectorNilUsesHelmValues"] is False
    assert prometheus["replicas"] == (2 if stack.cfg.prod else 1)
    am = kps["values"]["alertmanager"]
    routes = {r["matchers"][0]: r["receiver"] for r in am["config"]["route"]["routes"]}
    assert routes['severity =~ "page|critical"'] == stack.cfg.observability.pager_receiver
    assert routes['severity =~ "ticket|warning"'] == observability.TICKET_RECEIVER
    receivers = {r["name"]: r for r in am["config"]["receivers"]}
    assert set(routes.values()) <= set(receivers)
    pager = receivers[stack.cfg.observability.pager_receiver]["pagerduty_configs"][0]
    assert "openbell.runbook" in pager["links"][0]["href"]
    ticket = receivers[observability.TICKET_RECEIVER]["slack_configs"][0]
    assert "openbell.text" in ticket["text"]
    assert "runbook_url" in am["templateFiles"]["openbell.tmpl"]
    assert 'define "openbell.runbook"' in am["templateFiles"]["openbell.tmpl"]


def test_collector_and_tempo(stack: Run) -> None:
    collector = stack.release("opentelemetry-collector")
    assert collector is not None and collector["version"] == stack.cfg.observability.otel_collector_version
    values = collector["values"]
    assert values["mode"] == "deployment"
    pipelines = values["config"]["service"]["pipelines"]
    assert pipelines["metrics"]["exporters"] == ["prometheusremotewrite"]
    assert values["config"]["exporters"]["prometheusremotewrite"]["endpoint"] == (
        "http://kps-prometheus.monitoring.svc:9090/api/v1/write")
    tempo = stack.release("tempo")
    if stack.cfg.observability.tempo:
        assert tempo is not None and tempo["version"] == stack.cfg.observability.tempo_version
        assert pipelines["traces"]["exporters"] == ["otlp/tempo"]
        assert values["config"]["exporters"]["otlp/tempo"]["endpoint"] == "tempo.monitoring.svc:4317"
    else:
        assert tempo is None


def test_every_helm_release_is_pinned(stack: Run) -> None:
    for r in stack.plan.of_type("kubernetes:helm.sh/v3:Release"):
        if r.name.startswith(("apps-", "observability-", "tooling-")):
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", r.inputs["version"]), (r.name, r.inputs.get("version"))
            assert r.inputs.get("namespace"), r.name


# ---- Tooling ------------------------------------------------------------------------------------------------

def test_tooling_toggles(stack: Run) -> None:
    k6 = stack.release("k6-operator")
    chaos = stack.release("chaos-mesh")
    assert (k6 is not None) == stack.cfg.tooling.k6_operator
    assert (chaos is not None) == stack.cfg.tooling.chaos_mesh
    if stack.cfg.prod:
        assert chaos is None
    if k6 is not None:
        assert (k6["namespace"], k6["version"]) == ("k6-operator", stack.cfg.tooling.k6_operator_version)
    if chaos is not None:
        assert (chaos["namespace"], chaos["version"]) == ("chaos-mesh", stack.cfg.tooling.chaos_mesh_version)
        daemon = chaos["values"]["chaosDaemon"]
        assert (daemon["runtime"], daemon["socketPath"]) == ("containerd", "/run/containerd/containerd.sock")
        assert chaos["values"]["images"]["tag"] == f"v{stack.cfg.tooling.chaos_mesh_version}"


def test_tooling_attribute_follows_the_config() -> None:
    cfg = load_stack_file(ROOT / "stacks/Pulumi.prod.yaml")
    off = dataclasses.replace(cfg, tooling=ToolingConfig(k6_operator=False, chaos_mesh=False))
    seen: list[tooling.Tooling] = []

    def program(cfg: PlatformConfig) -> None:
        import pulumi_kubernetes as k8s

        class StubCluster:
            provider = k8s.Provider("stub-k8s", kubeconfig="{}")

        seen.append(tooling.Tooling("tooling", cfg, StubCluster()))

    plan = run(off, "prod", program)
    assert seen[0].k6_operator_enabled is False
    assert not plan.of_type("kubernetes:helm.sh/v3:Release")


# ---- Dockerfiles --------------------------------------------------------------------------------------------

DOCKERFILES = (ROOT / "services/gateway/Dockerfile", ROOT / "services/Dockerfile")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_are_multi_stage_pinned_and_non_root(path: Path) -> None:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    froms = [line.split() for line in lines if line.upper().startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage"
    stages = {words[-1] for words in froms if len(words) >= 4 and words[-2].upper() == "AS"}
    for words in froms:
        base = next(w for w in words[1:] if not w.startswith("--"))
        if base in stages:
            continue
        name, _, tag = base.rpartition(":") if "@" not in base else (base, "", "digest")
        assert name and tag and tag != "latest", f"{path}: unpinned base image {base}"
    final = lines[[i for i, line in enumerate(lines) if line.upper().startswith("FROM ")][-1]:]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root"), f"{path}: the final stage runs as root"
    assert not re.search(r":latest\b", path.read_text())


def test_gateway_image_matches_the_go_toolchain_and_the_pod() -> None:
    go = re.search(r"^go (\d+\.\d+)", (ROOT / "services/gateway/go.mod").read_text(), re.M)
    assert go is not None
    text = (ROOT / "services/gateway/Dockerfile").read_text()
    assert f"golang:{go.group(1)}-" in text
    assert 'ENTRYPOINT ["/openbell-gateway"]' in text  # the Deployment's command
    assert "USER 65532" in text and "EXPOSE 8080" in text


def test_services_image_installs_the_services_extra() -> None:
    text = (ROOT / "services/Dockerfile").read_text()
    assert 'pip install ".[services]"' in text
    for copied in ("pyproject.toml", "cli/", "services/"):
        assert copied in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "cli" not in ignored and "services" not in ignored
