"""The whole program under pulumi's mocks: the parts are wired to each other as the platform needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra import offline
from infra.config import load_stack_file

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def reveal(value: Any) -> Any:
    return value["value"] if isinstance(value, dict) and SECRET_SIG in value else value


@pytest.fixture(scope="module", params=["dev", "prod", "local"])
def plan(request: pytest.FixtureRequest) -> offline.Plan:
    stack = str(request.param)
    return offline.run(load_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml"), stack)


def test_the_ledger_reads_the_owner_password_the_database_was_created_with(plan: offline.Plan) -> None:
    secrets = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]): reveal(r.inputs["stringData"])
               for r in plan.of_type("kubernetes:core/v1:Secret")}
    owner = secrets[("postgres", "openbell-owner")]
    ledger = secrets[("openbell", "ledger-postgres")]
    assert ledger["password"] == owner["password"] and ledger["username"] == owner["username"] == "ledger"
    deployment = next(r.inputs for r in plan.of_type("kubernetes:apps/v1:Deployment")
                      if r.inputs["metadata"]["name"] == "ledger")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "ledger-postgres"


def test_the_services_find_the_data_tier_where_it_is(plan: offline.Plan) -> None:
    deployments = {r.inputs["metadata"]["name"]: r.inputs for r in plan.of_type("kubernetes:apps/v1:Deployment")}
    args = " ".join(" ".join(c.get("args") or []) for d in deployments.values()
                    for c in d["spec"]["template"]["spec"]["containers"])
    kafka = next(r.inputs for r in plan.of_type("kubernetes:kafka.strimzi.io/v1beta2:Kafka"))
    assert f"{kafka['metadata']['name']}-kafka-bootstrap.kafka.svc:9092" in args
    assert "openbell-rw.postgres.svc" in str(deployments["ledger"])


def test_every_kubernetes_object_goes_through_the_clusters_provider(plan: offline.Plan) -> None:
    kube = [r for r in plan.resources if r.type.startswith("kubernetes:")]
    assert kube and all(r.provider and "cluster-k8s" in r.provider for r in kube)


def test_an_existing_cluster_gets_only_the_kubernetes_layer() -> None:
    """Target existing-cluster: no AWS resource and no Helm chart (the operators are the owner's); the NodePools
    launch from the owner's node class, the backups go where the stack says, the gp3 class is not the default."""
    plan = offline.run(load_stack_file(ROOT / "stacks" / "Pulumi.local.yaml"), "local")
    types = {r.type for r in plan.resources}
    assert not {t for t in types if t.startswith("aws:")}
    assert "kubernetes:helm.sh/v3:Release" not in types
    pools = {r.inputs["metadata"]["name"]: r.inputs for r in plan.of_type("kubernetes:karpenter.sh/v1:NodePool")}
    assert set(pools) == {"gateway", "data"}
    for pool in pools.values():
        assert pool["spec"]["template"]["spec"]["nodeClassRef"] == {
            "group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"}
    (store,) = plan.of_type("kubernetes:barmancloud.cnpg.io/v1:ObjectStore")
    assert store.inputs["spec"]["configuration"]["destinationPath"] == "s3://openbell-local-ledger-backups/"
    classes = {r.inputs["metadata"]["name"]: r.inputs
               for r in plan.of_type("kubernetes:storage.k8s.io/v1:StorageClass")}
    assert classes["gp3"]["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "false"
    (provider,) = plan.of_type("pulumi:providers:kubernetes")
    assert provider.inputs.get("context") == "openbell-local" and not provider.inputs.get("kubeconfig")
    (route,) = plan.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute")
    assert route.inputs["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}
