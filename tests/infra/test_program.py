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


@pytest.fixture(scope="module", params=["dev", "prod"])
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
