"""`openbell infra plan --offline --cluster` against the local cluster's real API server (v1.37, the operators'
upstream CRDs): every stack's objects pass a server-side dry-run, nothing is persisted, kinds without a CRD here
(Strimzi, Altinity) are listed as not checked, and a real rejection names the object and carries the server's
own message, failing the plan (exit 1) - including what no offline schema can see (the Go validation of built-in
kinds, CEL rules)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from openbell.infra import dryrun
from openbell.infra.dryrun import ClusterRef, Planned, ServerReport
from openbell.infra.plan import PlanReport, run_plan
from tests.kubernetes.conftest import Kube

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod")
# The plan's kinds with no upstream CRD to install here (no Go module to take it from): at most these go unchecked.
NOT_ON_THE_CLUSTER = {"Kafka", "KafkaNodePool", "KafkaTopic", "ClickHouseInstallation", "ClickHouseKeeperInstallation"}
ABSENT = "openbell-plan-absent"  # a namespace nobody creates: objects in it are checked in the stand-in


def openbell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def exists(kube: Kube, namespace: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        kube.core().read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


# The plan's namespaces that no other suite creates (the canary and chaos suites make openbell, kafka, postgres and
# infra's NodePools while they run).
PLAN_ONLY_NAMESPACES = ("karpenter", "cnpg-system", "cert-manager", "clickhouse", "monitoring", "gateway-system",
                        "k6-operator", "chaos-mesh")


def without_crd(kube: Kube, objects: list[Planned]) -> set[str]:
    """The custom kinds among `objects` whose CRD the cluster does not have."""
    from kubernetes import client

    crds = client.ApiextensionsV1Api(kube.api).list_custom_resource_definition().items
    served = {(c.spec.group, v.name, c.spec.names.kind) for c in crds for v in c.spec.versions if v.served}
    return {o.kind for o in objects if not dryrun.is_builtin(o.api_version)
            and (*o.api_version.split("/"), o.kind) not in served}


@pytest.fixture(scope="module")
def plans(kube: Kube) -> dict[str, tuple[PlanReport, dict[str, bool]]]:
    """Each stack's plan judged by the cluster, with which of the plan's own namespaces existed before."""
    out = {}
    for stack in STACKS:
        before = {ns: exists(kube, ns) for ns in PLAN_ONLY_NAMESPACES}
        out[stack] = (run_plan(ROOT, stack, cluster=ClusterRef(kubeconfig=Path(kube.kubeconfig))), before)
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_every_object_of_the_stack_is_accepted_by_the_api_server(plans: dict[str, Any], stack: str,
                                                                  kube: Kube) -> None:
    report, _ = plans[stack]
    server = report.server
    assert isinstance(server, ServerReport)
    assert server.rejected == [], "\n".join(f"{r.ref}: {r.message}" for r in server.rejected)
    assert report.passed and server.version.startswith("v1.") and server.context == "openbell-local"
    assert len(server.results) == len(report.schemas) == len(report.objects)
    accepted = {r.kind for r in server.accepted}
    # Every upstream CRD the plan uses judged it, schema, CEL rules and unknown fields (fieldValidation=Strict).
    assert {"NodePool", "EC2NodeClass", "GatewayClass", "Gateway", "HTTPRoute", "EnvoyProxy", "Cluster",
            "ScheduledBackup", "ObjectStore", "PodMonitor", "PrometheusRule"} <= accepted
    assert {"Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret",
            "StorageClass", "ServiceAccount"} <= accepted
    assert {r.kind for r in server.unchecked} == without_crd(kube, report.objects)
    assert {r.kind for r in server.unchecked} <= NOT_ON_THE_CLUSTER  # every upstream CRD of the plan is here
    for r in server.unchecked:
        assert r.message == f"not checked by the server (no CRD for {r.api_version} {r.kind} on the cluster)"
    # Objects in a namespace the plan creates were checked in the stand-in, by a create.
    keeper_pdb = next(r for r in server.results if r.ref == "PodDisruptionBudget clickhouse/openbell-keeper")
    assert (keeper_pdb.status, keeper_pdb.checked_in, keeper_pdb.operation) == ("accepted", "default", "create")


def test_the_dry_run_persists_nothing(plans: dict[str, Any], kube: Kube) -> None:
    for stack in STACKS:
        report, before = plans[stack]
        planned = {o.name for o in report.objects if o.kind == "Namespace"} & set(PLAN_ONLY_NAMESPACES)
        assert len(planned) >= 7 and {r.ref for r in report.server.accepted} >= {f"Namespace {n}" for n in planned}
        assert {ns for ns in PLAN_ONLY_NAMESPACES if exists(kube, ns) and not before[ns]} == set(), stack
    from kubernetes.client.rest import ApiException

    for group, version, plural, name in (("gateway.networking.k8s.io", "v1", "gatewayclasses", "openbell-edge"),
                                         ("karpenter.k8s.aws", "v1", "ec2nodeclasses", "default")):
        with pytest.raises(ApiException) as missing:
            kube.custom().get_cluster_custom_object(group, version, plural, name)
        assert missing.value.status == 404


def test_the_cli_reports_each_object_in_json(kube: Kube) -> None:
    proc = openbell("infra", "plan", "--stack", "staging", "--offline", "--kubeconfig", kube.kubeconfig,
                    "--context", "openbell-local", "--output", "json")
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    report = json.loads(proc.stdout)
    server = report["server"]
    assert report["passed"] is True and server["passed"] is True and server["rejected"] == []
    assert server["context"] == "openbell-local" and server["standIn"] == "default"
    assert len(server["objects"]) == report["schemas"]["checked"]
    assert server["accepted"] + len(server["unchecked"]) == len(server["objects"])
    route = next(o for o in server["objects"] if o["kind"] == "HTTPRoute")
    assert route["status"] == "accepted" and route["namespace"] == "openbell" and route["resource"] == "apps-route"
    assert server["unchecked"] and {o["kind"] for o in server["unchecked"]} <= NOT_ON_THE_CLUSTER


def test_a_rejected_object_fails_the_plan_with_the_servers_message(kube: Kube, tmp_path: Path) -> None:
    """A hostname the Gateway API CRD refuses, through the CLI: exit 1, the object and the server's own words."""
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    document["config"]["openbell:apps"]["hostname"] = "market..openbell.example"
    bad = tmp_path / "Pulumi.dev.yaml"
    bad.write_text(yaml.safe_dump(document))
    proc = openbell("infra", "plan", "--stack", "dev", "--offline", "--stack-file", str(bad),
                    "--kubeconfig", kube.kubeconfig, "--output", "json")
    assert proc.returncode == 1, proc.stderr
    server = json.loads(proc.stdout)["server"]
    rejected = {f"{r['kind']} {r['namespace']}/{r['name']}": r for r in server["rejected"]}
    assert set(rejected) == {"Gateway openbell/openbell-edge", "HTTPRoute openbell/gateway"}
    gateway = rejected["Gateway openbell/openbell-edge"]
    assert gateway["resource"] == "apps-edge-gateway"
    assert gateway["message"].startswith('Gateway.gateway.networking.k8s.io "openbell-edge" is invalid: '
                                         "spec.listeners[0].hostname")
    assert "should match" in gateway["message"]

    text = openbell("infra", "plan", "--stack", "dev", "--offline", "--stack-file", str(bad),
                    "--kubeconfig", kube.kubeconfig)
    assert text.returncode == 1
    assert ('rejected HTTPRoute openbell/gateway (apps-route): HTTPRoute.gateway.networking.k8s.io "gateway" '
            "is invalid: spec.hostnames[0]") in text.stdout
    assert "Plan failed: 0 policy violation(s), 2 invalid object(s), 2 rejected by the cluster" in text.stdout


def broken_objects() -> list[Planned]:
    """Objects the real server refuses, each for a different reason, and two it does not judge."""
    labels = {"app.kubernetes.io/name": "feed"}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "feed", "namespace": ABSENT},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "ledger"}},
                           "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                               {"name": "feed", "image": "registry.example/feed:1.0.0"}]}}}}
    nodepool = {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "openbell-plan-test"},
                "spec": {"template": {"spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                    "requirements": [{"key": "karpenter.sh/nodepool", "operator": "In", "values": ["data"]}]}}}}
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "gateway", "namespace": ABSENT},
             "spec": {"parentRefs": [{"name": "edge"}],
                      "rules": [{"backendRefs": [{"name": "gateway-stable", "port": 8080, "weight": -1}]}]}}
    unknown = {**nodepool, "metadata": {"name": "openbell-plan-test-2"},
               "spec": {**nodepool["spec"], "replicaz": 3}}
    unknown["spec"]["template"] = {"spec": {**nodepool["spec"]["template"]["spec"], "requirements": []}}
    return [
        Planned("selector-mismatch", deployment),
        Planned("restricted-label", nodepool),
        Planned("negative-weight", route),
        Planned("unknown-field", unknown),
        Planned("removed-api", {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
                                "metadata": {"name": "feed", "namespace": ABSENT}, "spec": {"maxUnavailable": 1}}),
        Planned("valid", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ABSENT},
                          "data": {"k": "v"}}),
        Planned("no-crd", {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic",
                           "metadata": {"name": "ticks", "namespace": ABSENT}, "spec": {"partitions": 3}}),
    ]


def test_the_server_rejects_what_it_should_and_says_why(kube: Kube) -> None:
    server = dryrun.connect(ClusterRef(kubeconfig=Path(kube.kubeconfig)))
    try:
        report = dryrun.check(broken_objects(), server)
    finally:
        server.close()
    by = {r.resource: r for r in report.results}
    assert not report.passed
    assert {r.resource for r in report.rejected} == {"selector-mismatch", "restricted-label", "negative-weight",
                                                     "unknown-field", "removed-api"}
    # Built-in Go validation, which no JSON schema (offline) can express:
    assert by["selector-mismatch"].ref == f"Deployment {ABSENT}/feed"
    assert "`selector` does not match template `labels`" in by["selector-mismatch"].message
    assert by["selector-mismatch"].checked_in == "default" and by["selector-mismatch"].operation == "create"
    # The NodePool CRD's CEL rule, the HTTPRoute CRD's minimum, an unknown field under server-side apply:
    assert 'label "karpenter.sh/nodepool" is restricted' in by["restricted-label"].message
    assert "weight" in by["negative-weight"].message and "greater than or equal to 0" in by["negative-weight"].message
    assert ".spec.replicaz: field not declared in schema" in by["unknown-field"].message
    assert by["restricted-label"].operation == "apply" and by["restricted-label"].checked_in is None
    assert "does not serve policy/v1beta1 PodDisruptionBudget (it serves policy/v1)" in by["removed-api"].message
    assert by["valid"].status == "accepted" and by["valid"].checked_in == "default"
    assert by["no-crd"].status == "unchecked"
    assert not exists(kube, ABSENT)


def test_a_plan_the_offline_schemas_accept_can_still_fail_on_the_cluster(kube: Kube) -> None:
    """In process, with a small program: a Deployment whose selector misses its pods' labels is valid JSON for the
    strict schema, and the API server refuses it: the plan fails on the server check alone."""

    def program(cfg: Any) -> None:
        import pulumi
        import pulumi_kubernetes as k8s

        provider = k8s.Provider("k8s", kubeconfig="{}")
        opts = pulumi.ResourceOptions(provider=provider)
        k8s.core.v1.Namespace("ns", metadata={"name": ABSENT}, opts=opts)
        k8s.apps.v1.Deployment("feed", metadata={"name": "feed", "namespace": ABSENT}, spec={
            "replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "ledger"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "feed"}}, "spec": {"containers": [{
                "name": "feed", "image": "registry.example/feed@sha256:" + "a" * 64,
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}, opts=opts)

    report = run_plan(ROOT, "dev", program=program, cluster=ClusterRef(kubeconfig=Path(kube.kubeconfig)))
    assert report.invalid == [] and report.unknown == []  # the offline schemas found nothing
    assert report.server is not None
    assert [(r.resource, r.status) for r in report.server.results] == [("ns", "accepted"), ("feed", "rejected")]
    assert not report.passed
    data = report.as_dict()
    assert data["passed"] is False and data["server"]["rejected"][0]["name"] == "feed"


def test_an_object_valid_as_new_but_not_as_an_update_is_accepted_and_flagged(kube: Kube) -> None:
    """A Deployment the cluster holds with another selector (immutable): the plan's one is valid, the server
    refuses it only as an update of what exists, and says so."""
    namespace = "openbell-plan-update"
    kube.delete_namespace(namespace)  # a run killed earlier may have left it

    def deployment(app: str) -> dict[str, Any]:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "feed", "namespace": namespace},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": app}},
                         "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [
                             {"name": "feed", "image": "registry.example/feed:1.0.0"}]}}}}

    kube.core().create_namespace({"metadata": {"name": namespace}})
    try:
        kube.apps().create_namespaced_deployment(namespace, deployment("old"))
        server = dryrun.connect(ClusterRef(kubeconfig=Path(kube.kubeconfig)))
        try:
            broken = {**deployment("new"), "spec": {**deployment("new")["spec"], "replicas": -1}}
            report = dryrun.check([Planned("changed", deployment("new")), Planned("broken", broken)], server)
        finally:
            server.close()
        changed, rejected = report.results
        assert changed.status == "accepted" and changed.operation == "apply"
        assert "spec.selector" in changed.update_refused and "field is immutable" in changed.update_refused
        assert rejected.status == "rejected" and "spec.replicas" in rejected.message
        stored = kube.apps().read_namespaced_deployment("feed", namespace)
        assert stored.spec.selector.match_labels == {"app": "old"}  # nothing persisted
    finally:
        kube.delete_namespace(namespace)
