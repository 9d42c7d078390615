"""The server-side dry-run of a plan (openbell.infra.dryrun) without a cluster: what each API server answer means,
the stand-in namespace, kinds without a CRD, secrets redacted, the report; and the kubeconfig errors a user can
make, through the real `kubernetes` client."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from openbell.errors import EXIT_BAD_INPUT, EXIT_UNREACHABLE, OpenbellError, UnreachableError, UsageError
from openbell.infra import dryrun
from openbell.infra.dryrun import ClusterRef, Judgement, Planned, Refused, ServedKind, judge

# --- what an answer means --------------------------------------------------------------------------------

NS_404 = Refused(404, 'namespaces "kafka" not found', "NotFound", {"name": "kafka", "kind": "namespaces"})
RBAC_403 = Refused(403, 'deployments.apps "gateway" is forbidden: User "system:serviceaccount:ci:plan" cannot '
                        'patch resource "deployments" in API group "apps" in the namespace "openbell"', "Forbidden")
WEBHOOK_403 = Refused(403, 'admission webhook "validation.gatekeeper.sh" denied the request: [must-have-owner] '
                           'you must provide labels: {"owner"}', "Forbidden")
TYPED_PATCH_500 = Refused(500, "failed to create typed patch object (/gateway; karpenter.sh/v1, Kind=NodePool): "
                               ".spec.bogus: field not declared in schema")
WEBHOOK_DOWN_500 = Refused(500, 'Internal error occurred: failed calling webhook "vcluster.cnpg.io": '
                                'connection refused', "InternalError")
INVALID_422 = Refused(422, 'HTTPRoute.gateway.networking.k8s.io "gateway" is invalid: spec.rules[0].backendRefs[0]'
                           '.weight: Invalid value: -1: should be greater than or equal to 0', "Invalid")
EXISTS_409 = Refused(409, 'configmaps "kube-root-ca.crt" already exists', "AlreadyExists",
                     {"name": "kube-root-ca.crt", "kind": "configmaps"})


@pytest.mark.parametrize(("refusal", "namespace", "creating", "expected"), [
    (NS_404, "kafka", False, Judgement.NAMESPACE_MISSING),
    (NS_404, "postgres", False, Judgement.REJECTED),  # some other namespace: not the object's own
    (Refused(404, "the server could not find the requested resource", "NotFound"), "kafka", False,
     Judgement.REJECTED),
    (EXISTS_409, "default", True, Judgement.EXISTS),
    (EXISTS_409, "default", False, Judgement.REJECTED),  # an apply never answers AlreadyExists for a valid object
    (Refused(401, "Unauthorized", "Unauthorized"), None, False, Judgement.NOT_ALLOWED),
    (RBAC_403, "openbell", False, Judgement.NOT_ALLOWED),
    (WEBHOOK_403, "openbell", False, Judgement.REJECTED),
    (Refused(403, 'pods "x" is forbidden: exceeded quota: compute', "Forbidden"), "default", True,
     Judgement.REJECTED),
    (TYPED_PATCH_500, None, False, Judgement.REJECTED),
    (WEBHOOK_DOWN_500, "postgres", False, Judgement.TROUBLE),
    (Refused(503, "service unavailable"), None, False, Judgement.TROUBLE),
    (Refused(429, "too many requests", "TooManyRequests"), None, False, Judgement.TROUBLE),
    (Refused(0, "connection reset"), None, False, Judgement.TROUBLE),
    (INVALID_422, "openbell", False, Judgement.REJECTED),
    (Refused(400, 'strict decoding error: unknown field "spec.bogus"', "BadRequest"), None, True,
     Judgement.REJECTED),
])
def test_each_server_answer_has_one_meaning(refusal: Refused, namespace: str | None, creating: bool,
                                            expected: Judgement) -> None:
    assert judge(refusal, namespace, creating) is expected


def kafka() -> Planned:
    return Planned("kafka-cluster", {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "Kafka",
                                     "metadata": {"name": "openbell", "namespace": "kafka"}, "spec": {}})


def test_a_custom_resource_without_its_crd_is_unchecked_and_says_so() -> None:
    assert dryrun.unserved(kafka(), [], "v1.37.2") == (
        "unchecked", "not checked by the server (no CRD for kafka.strimzi.io/v1beta2 Kafka on the cluster)")


def test_a_crd_serving_other_versions_names_them() -> None:
    status, message = dryrun.unserved(kafka(), ["kafka.strimzi.io/v1"], "v1.37.2")
    assert status == "unchecked"
    assert message == "not checked by the server (the cluster's kafka.strimzi.io CRDs serve v1, not v1beta2)"


def test_a_builtin_kind_the_server_no_longer_serves_is_rejected() -> None:
    pdb = Planned("pdb", {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
                          "metadata": {"name": "gateway", "namespace": "openbell"}})
    status, message = dryrun.unserved(pdb, ["policy/v1"], "v1.37.2")
    assert status == "rejected"
    assert message == ("the API server (v1.37.2) does not serve policy/v1beta1 PodDisruptionBudget "
                       "(it serves policy/v1): the deploy would fail")


@pytest.mark.parametrize(("api_version", "builtin"), [
    ("v1", True), ("apps/v1", True), ("networking.k8s.io/v1", True), ("storage.k8s.io/v1", True),
    ("gateway.networking.k8s.io/v1", False), ("karpenter.sh/v1", False), ("snapshot.storage.k8s.io/v1", False),
])
def test_builtin_groups_are_told_from_crd_groups(api_version: str, builtin: bool) -> None:
    assert dryrun.is_builtin(api_version) is builtin


def test_secret_values_leave_as_same_size_placeholders() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "owner", "namespace": "postgres"},
              "type": "kubernetes.io/basic-auth",
              "stringData": {"username": "ledger", "password": "KXg9wCgc1tbLX2ST"},
              "data": {"token": base64.b64encode(b"s3cr3t-token").decode(), "broken": "not base64!"}}
    sent = dryrun.redact(secret)
    assert sent["stringData"] == {"username": "xxxxxx", "password": "x" * 16}
    assert base64.b64decode(sent["data"]["token"]) == b"x" * len(b"s3cr3t-token")
    assert sent["data"]["broken"] == "not base64!"  # the server must still see (and refuse) it
    assert secret["stringData"]["password"] == "KXg9wCgc1tbLX2ST"  # the plan's own object is untouched
    registry = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull"},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": '{"auths": {"ecr": {"auth": "c2VjcmV0"}}}'}}
    assert dryrun.redact(registry)["stringData"] == {".dockerconfigjson": "{}"}  # the server parses it: still JSON
    broken = {**registry, "stringData": {".dockerconfigjson": "{not json"}}
    assert dryrun.redact(broken) == broken
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    assert dryrun.redact(config_map) == config_map


def test_warning_headers_are_read_as_text() -> None:
    assert dryrun.warning_texts(['299 - "metadata.finalizers: \\"x\\": prefer a domain-qualified finalizer"',
                                 "not a warning header"]) == (
        'metadata.finalizers: "x": prefer a domain-qualified finalizer', "not a warning header")


# --- the check, on a fake API server ---------------------------------------------------------------------


class FakeServer:
    """Serves core v1, apps/v1 and gateway.networking.k8s.io/v1; namespaces `existing`; answers each write from
    `answers` (by kind and operation), recording every call."""

    host = "https://fake:6443"
    context = "fake"

    def __init__(self, existing: set[str], answers: Mapping[tuple[str, str], Refused] | None = None) -> None:
        self.existing = existing
        self.answers = dict(answers or {})
        self.calls: list[tuple[str, str, str | None]] = []

    def version(self) -> str:
        return "v1.37.2"

    def kinds(self, api_version: str) -> dict[str, ServedKind] | None:
        served = {"v1": [("Namespace", "namespaces", False), ("ConfigMap", "configmaps", True)],
                  "apps/v1": [("Deployment", "deployments", True)],
                  "gateway.networking.k8s.io/v1": [("HTTPRoute", "httproutes", True),
                                                   ("GatewayClass", "gatewayclasses", False)]}
        if api_version not in served:
            return None
        return {k: ServedKind(api_version, k, p, n) for k, p, n in served[api_version]}

    def group_versions(self, group: str) -> list[str]:
        return {"": ["v1"], "apps": ["apps/v1"], "gateway.networking.k8s.io": ["gateway.networking.k8s.io/v1"]
                }.get(group, [])

    def _answer(self, op: str, kind: ServedKind, body: Mapping[str, Any], namespace: str | None) -> tuple[str, ...]:
        self.calls.append((op, f"{kind.kind}/{body['metadata']['name']}", namespace))
        assert namespace is None or body["metadata"].get("namespace", namespace) == namespace
        if namespace is not None and namespace not in self.existing:
            raise Refused(404, f'namespaces "{namespace}" not found', "NotFound",
                          {"name": namespace, "kind": "namespaces"})
        if (kind.kind, op) in self.answers:
            raise self.answers[(kind.kind, op)]
        return ("a warning",) if kind.kind == "ConfigMap" else ()

    def apply(self, kind: ServedKind, body: Mapping[str, Any], namespace: str | None) -> tuple[str, ...]:
        return self._answer("apply", kind, body, namespace)

    def create(self, kind: ServedKind, body: Mapping[str, Any], namespace: str | None) -> tuple[str, ...]:
        return self._answer("create", kind, body, namespace)


def obj(resource: str, api_version: str, kind: str, name: str, namespace: str | None = None) -> Planned:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return Planned(resource, {"apiVersion": api_version, "kind": kind, "metadata": meta})


PLAN = [
    obj("ns", "v1", "Namespace", "trading"),
    obj("cm", "v1", "ConfigMap", "settings", "trading"),
    obj("deploy", "apps/v1", "Deployment", "gateway", "trading"),
    obj("route", "gateway.networking.k8s.io/v1", "HTTPRoute", "gateway", "edge"),
    obj("class", "gateway.networking.k8s.io/v1", "GatewayClass", "edge"),
    kafka(),
]


def test_objects_in_a_namespace_the_plan_creates_are_checked_in_the_stand_in() -> None:
    server = FakeServer(existing={"default", "edge"})
    report = dryrun.check(PLAN, server)
    by = {r.resource: r for r in report.results}
    assert [(r.status, r.operation, r.checked_in) for r in report.results] == [
        ("accepted", "apply", None), ("accepted", "create", "default"), ("accepted", "create", "default"),
        ("accepted", "apply", None), ("accepted", "apply", None), ("unchecked", "", None)]
    assert by["cm"].warnings == ("a warning",) and by["cm"].namespace == "trading"
    # Once the server said `trading` does not exist, the next object goes straight to the stand-in.
    assert server.calls == [("apply", "Namespace/trading", None), ("apply", "ConfigMap/settings", "trading"),
                            ("create", "ConfigMap/settings", "default"), ("create", "Deployment/gateway", "default"),
                            ("apply", "HTTPRoute/gateway", "edge"), ("apply", "GatewayClass/edge", None)]
    assert report.passed and len(report.accepted) == 5 and [r.resource for r in report.unchecked] == ["kafka-cluster"]


def test_a_rejection_fails_the_check_with_the_object_and_the_servers_words() -> None:
    server = FakeServer(existing={"default", "edge", "trading"}, answers={("HTTPRoute", "apply"): INVALID_422})
    report = dryrun.check(PLAN, server)
    (rejected,) = report.rejected
    assert not report.passed
    assert rejected.ref == "HTTPRoute edge/gateway" and rejected.resource == "route"
    assert rejected.message == INVALID_422.message and rejected.operation == "apply"
    data = report.as_dict()
    assert data["passed"] is False and data["accepted"] == 4 and data["checked"] == 6
    assert data["rejected"][0]["message"].endswith("should be greater than or equal to 0")
    assert [o["status"] for o in data["objects"]].count("unchecked") == 1
    assert data["unchecked"][0]["message"].startswith("not checked by the server (no CRD for kafka.strimzi.io")


def test_a_namesake_in_the_stand_in_means_the_object_passed() -> None:
    server = FakeServer(existing={"default", "edge"}, answers={("Deployment", "create"): EXISTS_409})
    report = dryrun.check(PLAN, server)
    deploy = next(r for r in report.results if r.resource == "deploy")
    assert deploy.status == "accepted" and "passed validation and admission" in deploy.message


IMMUTABLE_422 = Refused(422, 'Deployment.apps "gateway" is invalid: spec.selector: Invalid value: '
                             '{"matchLabels":{"app":"gateway"}}: field is immutable', "Invalid")


def test_an_object_valid_as_new_but_refused_as_an_update_is_accepted_and_flagged() -> None:
    server = FakeServer(existing={"default", "edge", "trading"},
                        answers={("Deployment", "apply"): IMMUTABLE_422, ("Deployment", "create"): EXISTS_409})
    report = dryrun.check(PLAN, server)
    deploy = next(r for r in report.results if r.resource == "deploy")
    assert report.passed and deploy.status == "accepted" and deploy.operation == "apply"
    assert deploy.update_refused == IMMUTABLE_422.message
    assert ("create", "Deployment/gateway", "trading") in server.calls  # the create asked in its own namespace
    assert [r["resource"] for r in report.as_dict()["updateRefused"]] == ["deploy"]


def test_an_apply_refused_for_the_object_itself_is_a_rejection() -> None:
    # The create succeeds: the object did not exist, so the apply was a create, refused.
    server = FakeServer(existing={"default", "edge", "trading"}, answers={("Deployment", "apply"): IMMUTABLE_422})
    (rejected,) = dryrun.check(PLAN, server).rejected
    assert rejected.resource == "deploy" and rejected.message == IMMUTABLE_422.message and not rejected.update_refused
    # A schema error under server-side apply concerns the object alone: no create is tried.
    server = FakeServer(existing={"default", "edge", "trading"}, answers={("Deployment", "apply"): TYPED_PATCH_500,
                                                                         ("Deployment", "create"): EXISTS_409})
    (rejected,) = dryrun.check(PLAN, server).rejected
    assert rejected.message == TYPED_PATCH_500.message
    assert [c for c in server.calls if c[0] == "create"] == []


@pytest.mark.parametrize("refusal", [RBAC_403, WEBHOOK_DOWN_500, Refused(401, "Unauthorized")])
def test_no_answer_about_an_object_stops_the_check_as_unreachable(refusal: Refused) -> None:
    server = FakeServer(existing={"default", "edge"}, answers={("HTTPRoute", "apply"): refusal})
    with pytest.raises(UnreachableError) as caught:
        dryrun.check(PLAN, server)
    assert caught.value.exit_code == EXIT_UNREACHABLE
    assert "HTTPRoute edge/gateway" in str(caught.value) and f"HTTP {refusal.status}" in str(caught.value)


def test_a_missing_stand_in_namespace_is_reported_not_guessed() -> None:
    with pytest.raises(UnreachableError, match="the stand-in namespace 'default' does not exist"):
        dryrun.check(PLAN, FakeServer(existing={"edge"}))


def test_a_plan_with_a_server_rejection_does_not_pass() -> None:
    from rich.console import Console

    from openbell.infra.plan import PlanReport, render

    server = FakeServer(existing={"default", "edge"}, answers={("Deployment", "create"): Refused(
        422, 'Deployment.apps "gateway" is invalid: spec.template.metadata.labels: Invalid value: '
             '{"app":"x"}: `selector` does not match template `labels`', "Invalid")})
    report = PlanReport("dev", "dev", server=dryrun.check(PLAN, server))
    assert not report.passed and report.as_dict()["server"]["rejected"][0]["resource"] == "deploy"
    console = Console(record=True, width=240)
    render(report, console)
    text = console.export_text()
    assert "Server-side dry-run on https://fake:6443 (context fake, Kubernetes v1.37.2)" in text
    assert 'rejected Deployment trading/gateway (deploy): Deployment.apps "gateway" is invalid' in text
    assert "checked in namespace default (trading does not exist yet)" in text
    assert "no CRD for kafka.strimzi.io/v1beta2 Kafka" in text
    assert "Plan failed: 0 policy violation(s), 0 invalid object(s), 1 rejected by the cluster" in text
    assert PlanReport("dev", "dev").as_dict()["server"] is None


def test_rich_markup_in_a_server_message_is_printed_as_is() -> None:
    from rich.console import Console

    from openbell.infra.plan import render_server

    server = FakeServer(existing={"default", "edge", "trading"}, answers={("HTTPRoute", "apply"): Refused(
        500, 'failed to create typed patch object: .spec.rules[name="main"].bogus: field not declared in schema')})
    console = Console(record=True, width=300)
    render_server(dryrun.check(PLAN, server), console)
    assert '.spec.rules[name="main"].bogus: field not declared in schema' in console.export_text()


# --- naming a cluster: the user's mistakes, through the real client ---------------------------------------

KUBECONFIG = """apiVersion: v1
kind: Config
current-context: {current}
clusters:
- name: local
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: me
  user: {{token: not-a-real-token}}
contexts:
- name: local
  context: {{cluster: local, user: me}}
- name: staging
  context: {{cluster: local, user: me}}
"""


def kubeconfig(tmp_path: Path, server: str = "https://127.0.0.1:1", current: str = "local") -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG.format(server=server, current=current))
    return path


def error_of(ref: ClusterRef) -> OpenbellError:
    with pytest.raises(OpenbellError) as caught:
        dryrun.connect(ref, timeout_s=2)
    return caught.value


def test_a_missing_kubeconfig_is_bad_input(tmp_path: Path) -> None:
    error = error_of(ClusterRef(kubeconfig=tmp_path / "nope"))
    assert isinstance(error, UsageError) and error.exit_code == EXIT_BAD_INPUT
    assert str(error) == f"--kubeconfig {tmp_path / 'nope'}: no such file"


def test_a_file_that_is_not_a_kubeconfig_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("clusters: [\n")
    error = error_of(ClusterRef(kubeconfig=path))
    assert isinstance(error, UsageError) and str(error).startswith(f"kubeconfig {path}: not a usable kubeconfig")
    assert "\n" not in str(error)


def test_an_unknown_context_is_bad_input_listing_the_known_ones(tmp_path: Path) -> None:
    error = error_of(ClusterRef(kubeconfig=kubeconfig(tmp_path), context="prod"))
    assert isinstance(error, UsageError)
    assert str(error) == f"kubeconfig {tmp_path / 'kubeconfig'} has no context 'prod' (it has: local, staging)"


def test_kubeconfig_env_naming_no_file_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    error = error_of(ClusterRef())
    assert isinstance(error, UsageError) and "$KUBECONFIG=" in str(error) and "no such file" in str(error)


def test_an_unreachable_cluster_exits_3_naming_it(tmp_path: Path) -> None:
    error = error_of(ClusterRef(kubeconfig=kubeconfig(tmp_path), context="staging"))
    assert isinstance(error, UnreachableError) and error.exit_code == EXIT_UNREACHABLE
    assert str(error).startswith("cluster https://127.0.0.1:1 (context staging) cannot be reached")
