"""The Kubernetes target's pure parts checked against the API's own schemas (apps/v1, v1, coordination/v1 from
kubernetes-validate; the HTTPRoute against our transcription of the Gateway API CRD), the lease logic, and
the target driven through the real `kubernetes` client against a small in-process fake API server."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import kubernetes_validate
import pytest

from openbell.errors import SpecError, UnreachableError, UsageError
from openbell.targets import kubernetes as k8s
from openbell.targets.base import RunConflict

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.31"  # the API version the objects must be valid for (EKS' oldest supported minor)
ROUTE_SCHEMA = json.loads((ROOT / "cli/openbell/targets/schemas/httproute-v1.json").read_text())
NOW = datetime(2026, 11, 22, 13, 30, 0, tzinfo=UTC)


def validate(obj: dict[str, Any]) -> None:
    """Valid for the Kubernetes API (strict: unknown fields are errors, as with kubectl --validate=strict)."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def route_validate(obj: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(ROUTE_SCHEMA).validate(obj)


def stable(image: str = "registry.internal:5000/openbell/gateway:1.4.0") -> dict[str, Any]:
    """The stable Deployment as the API server returns it: status, server fields, defaults filled in."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "gateway", "namespace": "openbell", "uid": "5b1c", "resourceVersion": "4711", "generation": 3,
            "creationTimestamp": "2026-11-01T08:00:00Z", "managedFields": [{"manager": "kubectl"}],
            "labels": {"app.kubernetes.io/name": "gateway", "role": "stable"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                            "deployment.kubernetes.io/revision": "3", "team": "market-data"}},
        "spec": {
            "replicas": 4, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "gateway", "role": "stable"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"creationTimestamp": None,
                             "labels": {"app.kubernetes.io/name": "gateway", "role": "stable"}},
                "spec": {"terminationGracePeriodSeconds": 30, "containers": [
                    {"name": "gateway", "image": image, "ports": [{"name": "http", "containerPort": 8080}],
                     "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}}},
                    {"name": "log-shipper", "image": "fluent/fluent-bit:3.1"}]}}},
        "status": {"observedGeneration": 3, "replicas": 4, "updatedReplicas": 4, "readyReplicas": 4,
                   "availableReplicas": 4},
    }


def route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "gateway", "namespace": "openbell", "resourceVersion": "99"},
        "spec": {
            "parentRefs": [{"name": "edge", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["stream.openbell.example"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/ws"}}],
                 "backendRefs": [{"name": "gateway-stable", "port": 8080}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/v1/quotes"}}],
                 "backendRefs": [{"name": "gateway-stable", "port": 8080, "weight": 1}]},
                {"matches": [{"path": {"type": "Exact", "value": "/status"}}],
                 "backendRefs": [{"name": "status-page", "port": 80}]},
            ]},
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies it to a custom object."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# ---- builders against the schemas -------------------------------------------------------------------------

def test_the_canary_deployment_is_a_valid_apps_v1_deployment_cloned_from_the_stable() -> None:
    canary = k8s.canary_deployment(stable(), "1.5.0", None)
    validate(canary)
    meta, spec = canary["metadata"], canary["spec"]
    assert meta["name"] == "gateway-canary" and meta["namespace"] == "openbell"
    assert meta["labels"] == {"app.kubernetes.io/name": "gateway", "role": "canary",
                              "app.kubernetes.io/managed-by": "openbell"}
    assert meta["annotations"] == {"team": "market-data", "openbell.dev/canary-version": "1.5.0"}
    assert set(meta) == {"name", "namespace", "labels", "annotations"}  # no uid, resourceVersion, managedFields...
    assert "status" not in canary and "creationTimestamp" not in spec["template"]["metadata"]
    assert spec["replicas"] == 1
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/name": "gateway", "role": "canary"}
    assert spec["template"]["metadata"]["labels"]["role"] == "canary"
    gateway, shipper = spec["template"]["spec"]["containers"]
    assert gateway["image"] == "registry.internal:5000/openbell/gateway:1.5.0"
    assert shipper["image"] == "fluent/fluent-bit:3.1"  # only the service's container moves
    assert k8s.rollout_pending(stable()) is None  # the input is left as it was
    assert stable()["spec"]["selector"]["matchLabels"]["role"] == "stable"


@pytest.mark.parametrize(("current", "version", "image", "expected"), [
    ("gateway:1.4.0", "1.5.0", None, "gateway:1.5.0"),
    ("registry:5000/gw", "1.5.0", None, "registry:5000/gw:1.5.0"),
    ("ghcr.io/o/gw:1.4@sha256:" + "a" * 64, "1.5.0", None, "ghcr.io/o/gw:1.5.0"),
    ("ghcr.io/o/gw:1.4", "sha256:" + "b" * 64, None, "ghcr.io/o/gw@sha256:" + "b" * 64),
    ("ghcr.io/o/gw:1.4", "1.5.0", "ecr.aws/o/gw", "ecr.aws/o/gw:1.5.0"),
    ("ghcr.io/o/gw:1.4", "1.5.0", "ecr.aws/o/gw:1.5.0-rc1", "ecr.aws/o/gw:1.5.0-rc1"),
])
def test_images_are_retagged_keeping_the_registry_port(current: str, version: str, image: str | None,
                                                        expected: str) -> None:
    assert k8s.versioned_image(current, version, image) == expected


def test_the_stable_version_is_the_tag_else_the_digest() -> None:
    assert k8s.image_version("registry:5000/gw:1.4.0") == "1.4.0"
    assert k8s.image_version("gw@sha256:" + "c" * 64) == "sha256:" + "c" * 64
    assert k8s.image_version("registry:5000/gw") == "latest"


def test_a_bad_version_or_a_stable_that_would_select_canary_pods_is_refused() -> None:
    with pytest.raises(SpecError, match="--version"):
        k8s.canary_deployment(stable(), "1.5.0 rc", None)
    loose = stable()
    del loose["spec"]["selector"]["matchLabels"]["role"]
    with pytest.raises(SpecError, match="role: stable"):
        k8s.canary_deployment(loose, "1.5.0")
    ambiguous = stable()
    ambiguous["spec"]["template"]["spec"]["containers"][0]["name"] = "app"
    with pytest.raises(SpecError, match="expected a container named gateway"):
        k8s.canary_deployment(ambiguous, "1.5.0")


def test_promotion_patches_the_image_and_rolls_without_a_capacity_dip() -> None:
    patch = k8s.stable_replace_patch(stable(), "1.5.0", None)
    image = "registry.internal:5000/openbell/gateway:1.5.0"
    assert patch == {"spec": {
        "template": {"spec": {"containers": [{"name": "gateway", "image": image}]}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}}}
    chosen = stable()
    chosen["spec"]["strategy"]["rollingUpdate"] = {"maxUnavailable": 1, "maxSurge": 0}
    assert "strategy" not in k8s.stable_replace_patch(chosen, "1.5.0")["spec"]  # the owner's choice stands
    no_surge = stable()
    no_surge["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = 0
    assert k8s.stable_replace_patch(no_surge, "1.5.0")["spec"]["strategy"]["rollingUpdate"] == {
        "maxUnavailable": 0, "maxSurge": 1}
    recreate = stable()
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    with pytest.raises(SpecError, match="Recreate"):
        k8s.stable_replace_patch(recreate, "1.5.0")
    # The patched Deployment (containers merge by name) is still valid.
    merged = stable()
    merged["spec"]["template"]["spec"]["containers"][0]["image"] = "gw:1.5.0"
    merged["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = 0
    validate(merged)


def test_deletion_pending_names_the_finalizers_that_hold_an_object() -> None:
    assert k8s.deletion_pending(None) is None
    assert k8s.deletion_pending({"metadata": {}}) == "still present (not being deleted)"
    held = {"metadata": {"deletionTimestamp": "2026-12-04T00:00:00Z", "finalizers": ["foregroundDeletion"]}}
    assert "finalizers pending: foregroundDeletion (the garbage collector" in k8s.deletion_pending(held)


def test_rollout_pending_says_what_the_deployment_waits_for() -> None:
    done = stable()
    assert k8s.rollout_pending(done) is None
    unseen = copy.deepcopy(done)
    unseen["metadata"]["generation"] = 4
    assert "has not observed the latest spec (generation 4" in k8s.rollout_pending(unseen)
    assert "is kube-controller-manager running?" in k8s.rollout_pending(unseen)
    rolling = copy.deepcopy(done)
    rolling["status"].update(updatedReplicas=2, replicas=5)
    assert k8s.rollout_pending(rolling) == "2/4 updated"
    surplus = copy.deepcopy(done)
    surplus["status"]["replicas"] = 5
    assert k8s.rollout_pending(surplus) == "1 old replicas terminating"


@pytest.mark.parametrize("percent", [0, 10, 25, 50, 100])
def test_each_weight_gives_a_valid_route_that_reads_back_the_same(percent: int) -> None:
    before = route()
    route_validate(before)
    patch = k8s.route_weights_patch(before, "gateway-stable", "gateway-canary", percent)
    assert patch["metadata"] == {"resourceVersion": "99"}  # refused by the API server if the route changed
    after = merge_patch(before, patch)
    route_validate(after)
    assert k8s.route_weight(after, "gateway-canary") == percent
    for rule in after["spec"]["rules"][:2]:
        assert rule["backendRefs"] == [{"name": "gateway-stable", "port": 8080, "weight": 100 - percent},
                                       {"name": "gateway-canary", "port": 8080, "weight": percent}]
    assert after["spec"]["rules"][2] == route()["spec"]["rules"][2]
    assert after["spec"]["rules"][0]["matches"] == route()["spec"]["rules"][0]["matches"]
    # Applying the next weight on top of this one works the same way.
    again = merge_patch(after, k8s.route_weights_patch(after, "gateway-stable", "gateway-canary", 100 - percent))
    assert k8s.route_weight(again, "gateway-canary") == 100 - percent


def test_route_weight_reads_any_weight_total_and_unset_weights() -> None:
    def rule(*refs: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "g"},
                "spec": {"rules": [{"backendRefs": list(refs)}]}}

    def ref(name: str, **weight: int) -> dict[str, Any]:
        return {"name": name, "port": 1, **weight}

    assert k8s.route_weight(rule(ref("s", weight=3), ref("c", weight=1)), "c") == 25
    assert k8s.route_weight(rule(ref("s"), ref("c")), "c") == 50
    assert k8s.route_weight(rule(ref("s", weight=0), ref("c", weight=0)), "c") == 0
    assert k8s.route_weight(rule({"name": "s", "port": 1}), "c") == 0
    assert k8s.route_weight(rule({"name": "c", "port": 1, "kind": "ServiceImport", "group": "x.io"}), "c") == 0


def test_bad_weights_and_malformed_routes_are_rejected() -> None:
    with pytest.raises(UsageError):
        k8s.route_weights_patch(route(), "gateway-stable", "gateway-canary", 101)
    with pytest.raises(SpecError, match="backendRef to Service gw-stable"):
        k8s.route_weights_patch(route(), "gw-stable", "gw-canary", 10)
    for bad in (-1, 1_000_001, 2.5, "10"):
        broken = route()
        broken["spec"]["rules"][0]["backendRefs"][0]["weight"] = bad
        with pytest.raises(jsonschema.ValidationError):
            route_validate(broken)
    no_port = route()
    del no_port["spec"]["rules"][0]["backendRefs"][0]["port"]
    too_many = route()
    too_many["spec"]["rules"] = too_many["spec"]["rules"] * 6
    typo = route()
    typo["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 10
    relative = route()
    relative["spec"]["rules"][0]["matches"][0]["path"]["value"] = "ws"
    refs = route()
    refs["spec"]["rules"][0]["backendRefs"] = [{"name": f"b{i}", "port": 80} for i in range(17)]
    for broken in (no_port, too_many, typo, relative, refs):
        with pytest.raises(jsonschema.ValidationError):
            route_validate(broken)
    other_kind = route()
    other_kind["spec"]["rules"][0]["backendRefs"][0] = {"name": "gw", "kind": "ServiceImport",
                                                        "group": "multicluster.x-k8s.io"}
    route_validate(other_kind)  # the port is required for core Services only


def test_state_configmap_and_lease_are_valid_objects() -> None:
    cm = k8s.state_configmap("gateway", "openbell", {"rollout": {"phase": "step", "weight": 25}})
    validate(cm)
    assert cm["metadata"]["name"] == "openbell-canary-gateway"
    assert json.loads(cm["data"]["state.json"]) == {"rollout": {"phase": "step", "weight": 25}}
    lease = k8s.lease("gateway", "openbell", "ci-runner-7:4242", NOW, 60)
    validate(lease)
    assert lease["metadata"]["name"] == "openbell-canary-gateway"
    assert lease["spec"] == {"holderIdentity": "ci-runner-7:4242", "acquireTime": "2026-11-22T13:30:00.000000Z",
                             "renewTime": "2026-11-22T13:30:00.000000Z", "leaseDurationSeconds": 60}
    with pytest.raises(Exception, match="1 MiB"):
        k8s.state_configmap("gateway", "openbell", {"x": "y" * (1024 * 1024)})


def test_a_holder_of_this_host_whose_process_is_gone_holds_nothing() -> None:
    lease = k8s.lease("gateway", "openbell", "box:4242", NOW, 60)
    assert k8s.live_holder(lease, NOW, "box", alive=lambda pid: pid != 4242) is None  # killed -9 here
    assert k8s.live_holder(lease, NOW, "box", alive=lambda pid: True) == "box:4242"
    assert k8s.live_holder(lease, NOW, "other", alive=lambda pid: False) == "box:4242"  # only its lease says
    assert k8s.live_holder(k8s.lease("gateway", "openbell", "box:x", NOW, 60), NOW, "box",
                           alive=lambda pid: False) == "box:x"


def test_live_holder_absent_live_expired_and_released() -> None:
    lease = k8s.lease("gateway", "openbell", "a:1", NOW, 60)
    assert k8s.live_holder(None, NOW) is None
    assert k8s.live_holder(lease, NOW + timedelta(seconds=59)) == "a:1"
    assert k8s.live_holder(lease, NOW + timedelta(seconds=60)) is None
    assert k8s.lease_expiry(lease) == NOW + timedelta(seconds=60)
    released = copy.deepcopy(lease)
    del released["spec"]["holderIdentity"]
    assert k8s.live_holder(released, NOW) is None
    timeless = {"spec": {"holderIdentity": "a:1"}}
    assert k8s.live_holder(timeless, NOW) is None  # could never expire: treated as expired
    renewed = copy.deepcopy(lease)
    renewed["spec"]["renewTime"] = "2026-11-22T13:31:00.5Z"
    assert k8s.live_holder(renewed, NOW + timedelta(seconds=100)) == "a:1"


def test_importing_the_target_does_not_import_the_kubernetes_client() -> None:
    code = "import sys, openbell.targets.kubernetes; print('kubernetes' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_target_needs_prometheus_and_refuses_faults() -> None:
    with pytest.raises(UsageError, match="Prometheus"):
        k8s.KubernetesTarget(service="gateway", prometheus="")
    target = k8s.KubernetesTarget(service="gateway", prometheus="http://prometheus:9090")
    assert (target.route, target.stable_svc, target.canary_svc) == ("gateway", "gateway-stable", "gateway-canary")
    assert target.scope().job == "gateway"
    with pytest.raises(UsageError, match="only on the sandbox"):
        target.start_canary("1.5.0", {"error_rate": "0.05"})


# ---- the target through the real client, against a fake API server ----------------------------------------

class FakeApiServer(ThreadingHTTPServer):
    """Enough of the API server for the target: objects by (plural, name) with resourceVersion checks, merge
    and strategic patches, Deployments that are ready at once with pods of their own, the pod proxy's drain."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str, str]] = []  # method, path, query, content type
        self.denied: set[tuple[str, str]] = set()  # (method, plural) answered 403
        self.version = 100
        self.lock = threading.Lock()

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        obj.setdefault("metadata", {}).setdefault("namespace", "openbell")
        if plural == "deployments":
            self._run(obj)
        self.objects[(plural, obj["metadata"]["name"])] = obj
        return obj

    def _run(self, deployment: dict[str, Any]) -> None:
        """The Deployment controller in one step: every replica updated, ready, available, pods replaced."""
        meta, replicas = deployment["metadata"], deployment["spec"].get("replicas", 1)
        meta["generation"] = meta.get("generation", 0) + 1
        deployment["status"] = {"observedGeneration": meta["generation"], "replicas": replicas,
                                "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
        for key in [k for k in self.objects if k[0] == "pods" and k[1].startswith(meta["name"] + "-")]:
            del self.objects[key]
        for i in range(replicas):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            self.objects[("pods", f"{meta['name']}-{i}")] = {
                "metadata": {"name": f"{meta['name']}-{i}", "labels": labels},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def _strategic(target: Any, patch: Any) -> Any:
    """A strategic merge patch as far as the target uses it: maps merge, lists of named items merge by name."""
    if isinstance(patch, list) and isinstance(target, list) and all("name" in p for p in patch):
        out = copy.deepcopy(target)
        for item in patch:
            found = next((o for o in out if o.get("name") == item["name"]), None)
            if found is None:
                out.append(item)
            else:
                found.update(_strategic(found, item))
        return out
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _strategic(out.get(key), value)
    return out


class _Handler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                          "message": message, "code": code})

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        srv = self.server
        srv.requests.append((self.command, url.path, url.query, self.headers.get("Content-Type") or ""))
        parts = [unquote(p) for p in url.path.split("/") if p]
        # /api/v1/namespaces/NS/PLURAL[/NAME[/proxy/...]] or /apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME]
        rest = parts[4:] if parts[0] == "api" else parts[5:]
        plural, name = rest[0], rest[1] if len(rest) > 1 else None
        if (self.command, plural) in srv.denied:
            return self._status(403, "Forbidden", f'{plural} is forbidden: User "ci" cannot {self.command} {plural}')
        with srv.lock:
            if plural == "pods" and len(rest) > 2 and rest[2] == "proxy":
                fraction = float(parse_qs(url.query)["fraction"][0])
                return self._send(200, {"closed": int(4 * fraction)})
            if plural == "pods":
                selector = dict(kv.split("=") for kv in parse_qs(url.query)["labelSelector"][0].split(","))
                items = [p for (kind, _), p in srv.objects.items()
                         if kind == "pods" and selector.items() <= p["metadata"]["labels"].items()]
                return self._send(200, {"kind": "PodList", "items": items})
            current = srv.objects.get((plural, name)) if name else None
            if self.command == "POST":
                if (plural, body["metadata"]["name"]) in srv.objects:
                    return self._status(409, "AlreadyExists", f'{plural} "{body["metadata"]["name"]}" already exists')
                return self._send(201, srv.put(plural, body))
            if current is None:
                return self._status(404, "NotFound", f'{plural} "{name}" not found')
            if self.command == "GET":
                return self._send(200, current)
            if self.command == "DELETE":
                del srv.objects[(plural, name)]
                for key in [k for k in srv.objects if k[0] == "pods" and k[1].startswith(f"{name}-")]:
                    del srv.objects[key]
                return self._send(200, {"kind": "Status", "status": "Success"})
            if self.command == "PATCH":
                merge = _strategic if "strategic" in self.headers["Content-Type"] else merge_patch
                body = merge(current, body)
            wanted = body["metadata"].get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}":'
                                                     " the object has been modified")
            if plural == "deployments" and self.command == "PATCH":
                body["metadata"]["generation"] = current["metadata"].get("generation", 0)
            self._send(200, srv.put(plural, body))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    pytest.importorskip("kubernetes")
    server = FakeApiServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "ci", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ci", "namespace": "openbell"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    server.put("deployments", stable())
    server.put("httproutes", route())
    for svc in ("gateway-stable", "gateway-canary"):
        server.put("services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc}})
    yield server
    server.shutdown()
    server.server_close()


def target(**kwargs: Any) -> k8s.KubernetesTarget:
    return k8s.KubernetesTarget(service="gateway", prometheus="http://prometheus:9090", poll_s=0.01,
                                route_settle_s=0, **kwargs)


def test_a_canary_goes_through_weights_churn_rollback_and_promotion_on_the_api(cluster: FakeApiServer) -> None:
    said: list[str] = []
    tgt = target(progress=said.append)
    tgt.check()
    assert tgt.stable_version() == "1.4.0" and not tgt.canary_running() and tgt.weight() == 0
    tgt.start_canary("1.5.0", {})
    canary = cluster.objects[("deployments", "gateway-canary")]
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"].endswith("gateway:1.5.0")
    tgt.start_canary("1.5.0", {})  # idempotent: the existing canary is replaced by the same spec
    for percent in (10, 25, 50, 100):
        tgt.set_weight(percent)
        assert tgt.weight() == percent
    route_validate(cluster.objects[("httproutes", "gateway")])
    assert tgt.churn(0.25) == 4  # 4 stable pods, 1 connection each closed by the fake
    drains = [(unquote(p), q) for m, p, q, _ in cluster.requests if p.endswith("/proxy/admin/drain")]
    assert drains[0] == ("/api/v1/namespaces/openbell/pods/gateway-0:8080/proxy/admin/drain", "fraction=0.25")
    patches = {p.split("/")[-2]: c for m, p, _, c in cluster.requests if m == "PATCH"}
    assert patches == {"httproutes": "application/merge-patch+json"}
    tgt.rollback()
    assert not tgt.canary_running() and tgt.weight() == 0 and tgt.verify_stable() == []
    tgt.rollback()  # idempotent once the canary is gone
    tgt.start_canary("1.5.0", {})
    tgt.set_weight(100)
    tgt.promote("1.5.0")
    promoted = cluster.objects[("deployments", "gateway")]
    assert promoted["spec"]["template"]["spec"]["containers"][0]["image"].endswith("gateway:1.5.0")
    assert promoted["spec"]["template"]["spec"]["containers"][1]["image"] == "fluent/fluent-bit:3.1"
    assert promoted["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": 0}
    assert [c for m, p, _, c in cluster.requests if m == "PATCH" and "/deployments/" in p] == [
        "application/strategic-merge-patch+json"]
    assert tgt.stable_version() == "1.5.0" and tgt.verify_stable() == []
    assert any("canary weight 0%" in line for line in said)


def test_end_state_problems_are_listed(cluster: FakeApiServer) -> None:
    tgt = target()
    tgt.start_canary("1.5.0", {})
    tgt.set_weight(25)
    cluster.objects[("deployments", "gateway")]["status"]["availableReplicas"] = 3
    assert tgt.verify_stable() == ["httproute/gateway still sends 25% to gateway-canary",
                                   "deployment/gateway-canary is still present",
                                   "deployment/gateway is not fully available: 3/4 available"]


def test_api_errors_are_one_line_naming_the_object(cluster: FakeApiServer) -> None:
    del cluster.objects[("httproutes", "gateway")]
    with pytest.raises(UnreachableError, match=r"httproute/gateway not found in namespace openbell") as missing:
        target().check()
    assert "\n" not in str(missing.value)
    cluster.put("httproutes", route())
    cluster.denied.add(("PATCH", "httproutes"))
    with pytest.raises(UnreachableError, match=r"not allowed: patch httproute/gateway in namespace openbell"):
        target().set_weight(10)
    with pytest.raises(UnreachableError, match="no usable kubeconfig"):
        target(kubeconfig="/nonexistent/kubeconfig").check()


def test_a_canary_that_never_gets_ready_times_out_with_the_pod_reason(cluster: FakeApiServer,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = cluster.put

    def stuck(plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        stored = real(plural, obj)
        if obj["metadata"]["name"] == "gateway-canary":
            stored["status"]["readyReplicas"] = 0
            pod = cluster.objects[("pods", "gateway-canary-0")]
            pod["status"] = {"phase": "Pending", "containerStatuses": [
                {"name": "gateway", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}
        return stored

    monkeypatch.setattr(cluster, "put", stuck)
    with pytest.raises(k8s.RolloutTimeout, match=r"0/1 ready \(gateway-canary-0: ImagePullBackOff\)"):
        target(ready_timeout_s=0.05).start_canary("1.5.0-typo", {})


def test_the_run_store_keeps_state_and_requests_apart_and_one_run_holds_the_lock(cluster: FakeApiServer) -> None:
    clock = [NOW]
    a = k8s.KubernetesRunStore("gateway", "openbell", target()._kube, lease_s=60, now=lambda: clock[0])
    b = k8s.KubernetesRunStore("gateway", "openbell", target()._kube, lease_s=60, now=lambda: clock[0])
    assert a.load() is None and a.holder() is None
    a.acquire("host-a:1")
    with pytest.raises(RunConflict, match="held by host-a:1"):
        b.acquire("host-b:2")
    a.save({"rollout": {"weight": 10}})
    b.request("abort")
    a.save({"rollout": {"weight": 25}})  # a transition between the request and the next poll keeps it
    assert a.take_request() == "abort" and a.take_request() is None
    assert a.load() == {"rollout": {"weight": 25}}
    validate(cluster.objects[("configmaps", "openbell-canary-gateway")])
    clock[0] += timedelta(seconds=45)
    a.renew()
    clock[0] += timedelta(seconds=45)  # 90 s after acquiring, 45 s after renewing: still a's
    assert b.holder() == "host-a:1"
    clock[0] += timedelta(seconds=30)  # a died: its lease lapsed
    b.acquire("host-b:2")
    with pytest.raises(RunConflict, match=r"lost the lock.*held by host-b:2"):
        a.renew()
    a.release()  # not a's any more: left alone
    assert b.holder() == "host-b:2"
    b.release()
    assert b.holder() is None and cluster.objects[("leases", "openbell-canary-gateway")]["spec"].get(
        "holderIdentity") is None
    validate(cluster.objects[("leases", "openbell-canary-gateway")])


def test_two_runs_racing_for_an_expired_lock_cannot_both_win(cluster: FakeApiServer) -> None:
    stale = k8s.lease("gateway", "openbell", "dead:1", NOW - timedelta(minutes=5), 60)
    cluster.put("leases", stale)
    a = k8s.KubernetesRunStore("gateway", "openbell", target()._kube, now=lambda: NOW)
    b = k8s.KubernetesRunStore("gateway", "openbell", target()._kube, now=lambda: NOW)
    api = a._api()
    real_replace = api.replace

    def b_first(kind: k8s.Kind, body: dict[str, Any]) -> dict[str, Any]:
        b.acquire("host-b:2")  # b reads the same expired lease and writes first
        return real_replace(kind, body)

    api.replace = b_first  # type: ignore[method-assign]
    with pytest.raises(RunConflict, match=r"lost the race for the lock.*held by host-b:2"):
        a.acquire("host-a:1")
    assert b.holder() == "host-b:2"


def test_an_api_server_that_is_down_is_one_line_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("kubernetes")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "down",
        "clusters": [{"name": "down", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "ci", "user": {"token": "t"}}],
        "contexts": [{"name": "down", "context": {"cluster": "down", "user": "ci"}}]}))
    with pytest.raises(UnreachableError, match="cannot be reached") as down:
        target(kubeconfig=str(kubeconfig), request_timeout_s=2).check()
    assert down.value.exit_code == 3 and "\n" not in str(down.value)


def test_traffic_sums_gateway_connections_per_role(monkeypatch: pytest.MonkeyPatch) -> None:
    from openbell.metrics.prometheus import PrometheusClient, Sample

    asked: list[str] = []

    def query(self: PrometheusClient, promql: str, at: float | None = None) -> list[Sample]:
        asked.append(promql)
        return [Sample({"role": "stable"}, 950.0), Sample({"role": "canary"}, 50.0), Sample({}, float("nan"))]

    monkeypatch.setattr(PrometheusClient, "query", query)
    traffic = target().traffic()
    assert asked == ['sum by (role) (gateway_connections{job="gateway"})']
    assert (traffic.stable_connections, traffic.canary_connections, traffic.canary_share) == (950, 50, 0.05)
    assert traffic.source == "prometheus gateway_connections"
