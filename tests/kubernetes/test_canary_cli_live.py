"""`openbell canary` as a user runs it against the local cluster, with traders going through the HTTPRoute
(tests/kubernetes/traffic.py: the Gateway's data plane stood in for) to real gateways at the pods' IPs, and
the gates reading a real Prometheus: a good version promoted, a faulty one (an image tagged *-faulty: the
stand-in runs it with --fault-error-rate 0.5) rolled back, two runs contending for the Lease, a run killed
with -9 then resumed or aborted, and the RBAC that docs/kubernetes-canary.md asks for, as a service account
that has nothing else."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from openbell.localkube import cluster
from openbell.targets.kubernetes import DEPLOYMENT, HTTPROUTE, image_version
from tests.kubernetes import stack
from tests.kubernetes.conftest import GatewayStack, Kube, deploy_gateway
from tests.kubernetes.traffic import RouteTraffic

NS = "openbell-canary-cli"
OPENBELL = str(Path(sys.executable).parent / "openbell")
DOC = Path(__file__).resolve().parents[2] / "docs" / "kubernetes-canary.md"
# These runs read the fixed judge's figures (its Mann-Whitney metrics); the gameday test runs the sequential one.
FAST = ["--interval", "1s", "--max-extension", "2s", "--judge", "fixed"]


@pytest.fixture(scope="module")
def gateway(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayStack]:
    yield from deploy_gateway(kube, NS, tmp_path_factory.mktemp("gateway-cli"))


@pytest.fixture
def traffic(kube: Kube, gateway: GatewayStack) -> Iterator[RouteTraffic]:
    with RouteTraffic(kube, NS) as flow:
        yield flow


@pytest.fixture(autouse=True)
def clean(gateway: GatewayStack) -> Iterator[None]:
    """Every test starts and ends with no canary, weight 0, the stable at 1.0.0 and no rollout on record."""
    tgt = gateway.target()
    tgt.rollback()
    yield
    tgt.rollback()
    kube_api = tgt._kube()
    if image_version(kube_api.get(DEPLOYMENT, "gateway")["spec"]["template"]["spec"]["containers"][0]["image"]) \
            != "1.0.0":
        kube_api.patch_deployment("gateway", {"spec": {"template": {"spec": {"containers": [
            {"name": "gateway", "image": f"{stack.IMAGE}:1.0.0"}]}}}})
    kube_api.core.delete_namespaced_config_map("openbell-canary-gateway", NS) \
        if kube_api.configmap("openbell-canary-gateway") else None


def _cli(gateway: GatewayStack, *args: str, kubeconfig: str | None = None, timeout: float = 240,
         background: bool = False) -> Any:
    argv = [OPENBELL, "-O", "json", "canary", *args, "--target", "kubernetes", "--namespace", NS,
            "--prometheus", gateway.prometheus]
    env = {**os.environ, **({"KUBECONFIG": kubeconfig} if kubeconfig else {})}
    if background:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def _json(done: Any) -> dict[str, Any]:
    try:
        return dict(json.loads(done.stdout))
    except ValueError:
        raise AssertionError(f"no JSON (exit {done.returncode}): {done.stdout[-800:]} {done.stderr[-1500:]}") \
            from None


def _metric(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in result["last_gates"]["judge"]["figures"]["metrics"] if m["metric"] == name)


def _served_versions(kube: Kube) -> set[str]:
    """What the gateways serving the stable's pods say they run (their /healthz through the pod proxy)."""
    core = kube.core()
    versions = set()
    for pod in kube.pods(NS, "role=stable"):
        body = core.connect_get_namespaced_pod_proxy_with_path(f"{pod['metadata']['name']}:8080", NS, "healthz",
                                                               _preload_content=False).data
        versions.add(json.loads(body)["version"])
    return versions


def test_a_good_version_is_promoted_through_the_real_rollout(kube: Kube, gateway: GatewayStack,
                                                              traffic: RouteTraffic) -> None:
    done = _cli(gateway, "run", "gateway", "--version", "1.1.0", "--steps", "50,100", "--hold", "12s", *FAST,
                "--on-inconclusive", "pass")
    result = _json(done)
    assert done.returncode == 0 and result["outcome"] == "promoted", result["reason"]
    # The judge compared the versions' error ratios on real samples (push latency needs ticks: no Kafka here).
    errors = _metric(result, "error_ratio")
    assert errors["outcome"] == "pass" and errors["canary_samples"] >= 8 and errors["stable_samples"] >= 8, errors
    # The Deployment controller rolled the stable to 1.1.0; the canary and its ReplicaSet are gone.
    stable = kube.apps().read_namespaced_deployment("gateway", NS)
    assert stable.spec.template.spec.containers[0].image == f"{stack.IMAGE}:1.1.0"
    replica_sets = kube.apps().list_namespaced_replica_set(NS).items
    live = [rs for rs in replica_sets if (rs.spec.replicas or 0) > 0]
    assert [rs.spec.template.spec.containers[0].image for rs in live] == [f"{stack.IMAGE}:1.1.0"]
    assert not [rs for rs in replica_sets if (rs.metadata.labels or {}).get("role") == "canary"]
    kube.wait("the stable pods to be served by 1.1.0", lambda: _served_versions(kube) == {"1.1.0"})
    route = kube.custom().get_namespaced_custom_object(HTTPROUTE.group, "v1", NS, "httproutes", "gateway")
    assert [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    assert traffic.results["gateway-canary 101"] > 0  # traders did reach the canary through the route


def _wait_weight(kube: Kube, at_least: int, run: subprocess.Popen[str], timeout_s: float = 60) -> None:
    def weight() -> bool:
        if run.poll() is not None:
            _out, err = run.communicate()
            raise AssertionError(f"the run exited ({run.returncode}) before reaching {at_least}%: {err[-1500:]}")
        route = kube.custom().get_namespaced_custom_object(HTTPROUTE.group, "v1", NS, "httproutes", "gateway")
        refs = route["spec"]["rules"][0]["backendRefs"]
        return any(r["name"] == "gateway-canary" and r.get("weight", 0) >= at_least for r in refs)

    kube.wait(f"the canary weight to reach {at_least}%", weight, timeout_s)


def test_a_second_run_is_refused_and_an_operator_abort_goes_through_the_live_run(
        kube: Kube, gateway: GatewayStack, traffic: RouteTraffic) -> None:
    first = _cli(gateway, "run", "gateway", "--version", "1.1.0", "--steps", "10,100", "--hold", "120s", *FAST,
                 "--on-inconclusive", "pass", background=True)
    try:
        _wait_weight(kube, 10, first)
        second = _cli(gateway, "run", "gateway", "--version", "1.2.0", "--steps", "10,100", "--hold", "5s")
        assert second.returncode == 2, second.stderr
        assert re.search(rf"held by \S+:{first.pid}", second.stderr), second.stderr
        aborted = _cli(gateway, "abort", "gateway")
        assert aborted.returncode == 1 and _json(aborted)["outcome"] == "rolled_back", aborted.stderr
        out, err = first.communicate(timeout=60)
        assert first.returncode == 1 and json.loads(out)["outcome"] == "rolled_back", err[-1500:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not kube.apps().list_namespaced_deployment(NS, label_selector="role=canary").items


@pytest.mark.parametrize("then", ["resume", "abort"])
def test_a_run_killed_with_minus_9_is_resumed_or_aborted(kube: Kube, gateway: GatewayStack,
                                                         traffic: RouteTraffic, then: str) -> None:
    run = _cli(gateway, "run", "gateway", "--version", "1.1.0", "--steps", "10,100", "--hold", "120s", *FAST,
               "--on-inconclusive", "pass", background=True)
    _wait_weight(kube, 10, run)
    run.send_signal(signal.SIGKILL)
    run.wait(10)
    status = _json(_cli(gateway, "status", "gateway"))
    assert status["outcome"] == "progressing" and status["weight"] == 10, status
    # The killed run's Lease has not lapsed, but its process is gone from this host: it holds nothing.
    started = time.monotonic()
    if then == "abort":
        done = _cli(gateway, "abort", "gateway")
        assert done.returncode == 1 and _json(done)["outcome"] == "rolled_back", done.stderr
        assert time.monotonic() - started < 45  # not a lease's wait (60 s)
        assert not kube.apps().list_namespaced_deployment(NS, label_selector="role=canary").items
        return
    resumed = _cli(gateway, "resume", "gateway", background=True)
    try:
        kube.wait("the resumed run to hold the Lease", lambda: _holder(kube).endswith(f":{resumed.pid}"), 45)
        promoted = _cli(gateway, "promote", "gateway")  # through the live run: it skips the rest of the hold
        assert promoted.returncode == 0 and _json(promoted)["outcome"] == "promoted", promoted.stderr
        out, err = resumed.communicate(timeout=90)
        assert resumed.returncode == 0 and json.loads(out)["outcome"] == "promoted", err[-1500:]
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait()
    stable = kube.apps().read_namespaced_deployment("gateway", NS)
    assert stable.spec.template.spec.containers[0].image == f"{stack.IMAGE}:1.1.0"


def _holder(kube: Kube) -> str:
    try:
        lease = kube.custom().get_namespaced_custom_object("coordination.k8s.io", "v1", NS, "leases",
                                                           "openbell-canary-gateway")
    except Exception:  # not created yet
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def _doc_rbac(namespace: str) -> list[dict[str, Any]]:
    """The Role and RoleBinding of docs/kubernetes-canary.md, as written there, moved to `namespace`."""
    text = DOC.read_text()
    block = text[text.index("## RBAC"):]
    block = block[block.index("```yaml") + len("```yaml"):]
    docs = [d for d in yaml.safe_load_all(block[:block.index("```")]) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects") or []:
            subject["namespace"] = namespace
    return docs


def _service_account_kubeconfig(kube: Kube, name: str, path: Path) -> str:
    """A kubeconfig holding a fresh token of service account `name` (TokenRequest): its rights are its RBAC."""
    from kubernetes import client

    kube.core().create_namespaced_service_account(NS, {"metadata": {"name": name}})
    token = kube.core().create_namespaced_service_account_token(
        name, NS, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=["https://kubernetes.default.svc.cluster.local"], expiration_seconds=3600))).status.token
    ca = (kube.layout.pki / "ca.crt").read_bytes()
    config = cluster.kubeconfig(kube.layout, ca, token)
    config["contexts"][0]["context"]["namespace"] = NS
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_documented_rbac_is_enough_for_a_whole_rollout(kube: Kube, gateway: GatewayStack,
                                                           traffic: RouteTraffic, tmp_path: Path) -> None:
    rbac = _doc_rbac(NS)
    subject = rbac[1]["subjects"][0]["name"]
    stack.apply(kube.api, rbac)
    kubeconfig = _service_account_kubeconfig(kube, subject, tmp_path / "kubeconfig")
    # Nothing beyond the Role: the service account cannot even list the namespace's Secrets.
    denied = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "secrets"], capture_output=True,
                            text=True, timeout=30)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    done = _cli(gateway, "run", "gateway", "--version", "1.1.0", "--steps", "50,100", "--hold", "4s", *FAST,
                "--on-inconclusive", "pass", kubeconfig=kubeconfig)
    assert done.returncode == 0 and _json(done)["outcome"] == "promoted", done.stderr[-1500:]
    assert _json(_cli(gateway, "status", "gateway", kubeconfig=kubeconfig))["outcome"] == "promoted"


def test_a_faulty_version_is_rolled_back_and_the_stable_left_alone(kube: Kube, gateway: GatewayStack,
                                                                  traffic: RouteTraffic) -> None:
    """Last in the module: the errors it serves burn the fleet's SLO windows, and a run started after it is
    rightly refused (--on-burning refuse) for the next minutes."""
    done = _cli(gateway, "run", "gateway", "--version", "1.1.0-faulty", "--steps", "25,50,100", "--hold", "30s",
                *FAST, "--on-inconclusive", "pass")
    result = _json(done)
    assert done.returncode == 1 and result["outcome"] == "rolled_back", result
    assert result["step"] == 1 and re.search(r"judge|burn", result["reason"]), result["reason"]
    stable = kube.apps().read_namespaced_deployment("gateway", NS)
    assert stable.spec.template.spec.containers[0].image == f"{stack.IMAGE}:1.0.0"
    assert not kube.apps().list_namespaced_deployment(NS, label_selector="role=canary").items
    assert traffic.results["gateway-canary 503"] > 0  # the fault was real, and seen by traders
