"""`openbell infra preview|up|destroy --stack local` with the real Pulumi engine on a real API server. The tests run
in file order and share one deployment: up, up again, a change, a canary on the route, a refused policy, destroy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from openbell.targets.kubernetes import KubernetesTarget
from tests.engine.conftest import ROOT, Engine

STACK = ROOT / "stacks" / "Pulumi.local.yaml"
PART_OF_OPENBELL = "app.kubernetes.io/part-of=openbell"


def stack_file(tmp_path: Path, **changes: Any) -> Path:
    """stacks/Pulumi.local.yaml with `changes` (config key -> a function of its value) applied."""
    document = yaml.safe_load(STACK.read_text())
    for key, change in changes.items():
        name = "openbell:" + key
        document["config"][name] = change(document["config"][name])
    path = tmp_path / f"local-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def route(engine: Engine) -> dict[str, Any]:
    from kubernetes import client

    return dict(client.CustomObjectsApi(engine.api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", "openbell", "httproutes", "gateway"))


def weights(engine: Engine) -> list[tuple[str, int]]:
    return [(b["name"], b.get("weight")) for b in route(engine)["spec"]["rules"][0]["backendRefs"]]


def canary(engine: Engine) -> KubernetesTarget:
    """The canary's own route handling (openbell.targets.kubernetes), as `openbell canary run` moves the weights."""
    return KubernetesTarget(service="gateway", namespace="openbell", prometheus="http://127.0.0.1:9",
                            kubeconfig=str(engine.kubeconfig))


def owned(engine: Engine) -> list[str]:
    """Every object labelled part of openbell (as the program labels all it declares), that still exists."""
    from tests.kubernetes.stack import fresh_dynamic

    found = []
    client = fresh_dynamic(engine.api)
    for kind, api_version in (("Namespace", "v1"), ("Deployment", "apps/v1"), ("Service", "v1"),
                              ("StorageClass", "storage.k8s.io/v1"), ("NodePool", "karpenter.sh/v1"),
                              ("HTTPRoute", "gateway.networking.k8s.io/v1"), ("Kafka", "kafka.strimzi.io/v1beta2"),
                              ("Cluster", "postgresql.cnpg.io/v1"),
                              ("ClickHouseInstallation", "clickhouse.altinity.com/v1"),
                              ("PrometheusRule", "monitoring.coreos.com/v1")):
        for item in client.resources.get(api_version=api_version, kind=kind).get(label_selector=PART_OF_OPENBELL).items:
            if not item.metadata.get("deletionTimestamp"):
                found.append(f"{kind} {item.metadata.get('namespace') or ''}/{item.metadata.name}")
    return found


def test_a_broken_kubeconfig_is_one_line_and_exit_3(engine: Engine, tmp_path: Path) -> None:
    unreachable = yaml.safe_load(engine.kubeconfig.read_text())
    unreachable["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    for text in (yaml.safe_dump(unreachable), "not: [a kubeconfig"):
        path = tmp_path / "kubeconfig"
        path.write_text(text)
        proc = engine.openbell("infra", "up", "--stack", "local", "--yes", "--kubeconfig", str(path))
        assert proc.returncode == 3, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("openbell: ") and ("cannot be reached" in line or "kubeconfig" in line), line
    assert not (engine.state / "openbell" / "pulumi" / "backend").exists()  # nothing ran


def test_a_missing_cli_is_one_line_and_exit_3(engine: Engine, tmp_path: Path) -> None:
    env = engine.env(OPENBELL_CACHE=str(tmp_path / "no-cache"), PATH="/usr/bin:/bin")
    proc = engine.openbell("infra", "preview", "--stack", "local", env=env)
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()
    assert "the pulumi CLI is not built or on PATH" in line and "make pulumi" in line


def test_up_creates_the_platforms_kubernetes_objects_accepted_by_the_real_crds(engine: Engine) -> None:
    preview, planned = engine.infra("preview")
    assert preview.returncode == 0, preview.stderr[-3000:]
    creates = planned["summary"]["changes"]["create"]
    proc, out = engine.infra("up")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out["summary"]["result"] == "succeeded" and out["summary"]["changes"] == {"create": creates}
    assert out["summary"]["outputs"]["kafkaBootstrap"] == "openbell-kafka-bootstrap.kafka.svc:9092"
    # The offline plan's Kubernetes objects, each on the cluster now.
    plan = json.loads(engine.openbell("infra", "plan", "--stack", "local", "--offline", "--output", "json").stdout)
    # + the stack, the Kubernetes provider and the 8 components (cluster, node pools, observability, Kafka,
    # PostgreSQL, ClickHouse, apps, tooling)
    assert creates == len(plan["inventory"]) + 10
    objects = owned(engine)
    for expected in ("Namespace /kafka", "Deployment openbell/gateway", "Service openbell/gateway-canary",
                     "StorageClass /gp3", "NodePool /gateway", "NodePool /data", "HTTPRoute openbell/gateway",
                     "Kafka kafka/openbell", "Cluster postgres/openbell", "ClickHouseInstallation clickhouse/openbell"):
        assert expected in objects, objects
    assert sum(o.startswith("PrometheusRule monitoring/") for o in objects) == 7
    # The workloads really run (KWOK's nodes, the real scheduler and controllers).
    from kubernetes import client

    gateway = client.AppsV1Api(engine.api).read_namespaced_deployment("gateway", "openbell")
    assert (gateway.status.available_replicas or 0) >= 1


def test_a_second_up_changes_nothing(engine: Engine) -> None:
    proc, out = engine.infra("up")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(out["summary"]["changes"]) == ["same"]


def test_a_config_change_is_the_expected_diff_and_update(engine: Engine, tmp_path: Path) -> None:
    changed = stack_file(tmp_path, apps=lambda a: {**a, "gateway": {**a["gateway"], "maxReplicas": 6}})
    proc, out = engine.infra("preview", "--stack-file", str(changed))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out["summary"]["changes"]["update"] == 1
    assert "apps-gateway-hpa" in proc.stderr and "maxReplicas" in proc.stderr  # the diff names the field
    proc, out = engine.infra("up", "--stack-file", str(changed))
    assert proc.returncode == 0 and out["summary"]["changes"]["update"] == 1, proc.stderr[-3000:]
    from kubernetes import client

    hpa = client.AutoscalingV2Api(engine.api).read_namespaced_horizontal_pod_autoscaler("gateway", "openbell")
    assert hpa.spec.max_replicas == 6
    proc, out = engine.infra("up")  # back to the stack as committed
    assert proc.returncode == 0 and out["summary"]["changes"]["update"] == 1


def test_a_canarys_weights_are_not_undone_by_up(engine: Engine, tmp_path: Path) -> None:
    target = canary(engine)
    target.set_weight(30)
    try:
        proc, out = engine.infra("up")
        assert proc.returncode == 0 and list(out["summary"]["changes"]) == ["same"], proc.stderr[-3000:]
        assert weights(engine) == [("gateway-stable", 70), ("gateway-canary", 30)]
        # A change to the route itself while the canary holds traffic: refused, nothing changed.
        moved = stack_file(tmp_path, apps=lambda a: {**a, "hostname": "market2.local.openbell.example"})
        proc, _ = engine.infra("up", "--stack-file", str(moved))
        assert proc.returncode == 1
        (line,) = proc.stderr.strip().splitlines()
        assert "while a canary holds 30% of its traffic" in line and "nothing was changed" in line
        assert weights(engine) == [("gateway-stable", 70), ("gateway-canary", 30)]
        assert route(engine)["spec"]["hostnames"] == ["market.local.openbell.example"]
    finally:
        target.set_weight(0)
    # The canary over: the route change lands, though the canary's patch co-owned the rules (patchForce).
    proc, out = engine.infra("up", "--stack-file", str(moved))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert route(engine)["spec"]["hostnames"] == ["market2.local.openbell.example"]
    assert weights(engine) == [("gateway-stable", 100), ("gateway-canary", 0)]
    assert engine.infra("up")[0].returncode == 0


def test_the_policy_pack_is_enforced_by_the_engine(engine: Engine, tmp_path: Path) -> None:
    """A gateway that requests no CPU passes the config's checks and is refused by the policy pack the engine
    runs (resource-requests-on-every-container): exit 1, the rule named, the gateway as it was."""
    greedy = stack_file(tmp_path, apps=lambda a: {**a, "gateway": {**a["gateway"], "cpu": "0"}})
    proc, _ = engine.infra("up", "--stack-file", str(greedy))
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]  # after the engine's progress: openbell's one line
    assert "[mandatory]" in line and "resource-requests-on-every-container" in line and "no cpu request" in line
    from kubernetes import client

    gateway = client.AppsV1Api(engine.api).read_namespaced_deployment("gateway", "openbell")
    assert gateway.spec.template.spec.containers[0].resources.requests["cpu"] == "500m"


def test_destroy_removes_everything_up_created(engine: Engine) -> None:
    proc, out = engine.infra("destroy")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out["summary"]["result"] == "succeeded" and out["summary"]["changes"]["delete"] > 60
    assert owned(engine) == []
    proc, out = engine.infra("preview")
    assert proc.returncode == 0 and list(out["summary"]["changes"]) == ["create"]


@pytest.fixture(autouse=True)
def _echo(engine: Engine) -> None:
    """The engine's progress is the test's stderr: shown when a test fails."""
