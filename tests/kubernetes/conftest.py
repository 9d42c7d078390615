"""The Kubernetes suite against a real control plane: the local cluster (openbell.localkube: kube-apiserver,
controller-manager, scheduler, etcd, KWOK nodes, the operators' upstream CRDs) started for this package's tests
and stopped after them, or left running if it already was. Never $KUBECONFIG: a developer's own cluster is not
a test fixture.

The gateway pods are KWOK pods served by the real gateway binary at each pod's IP (openbell.localkube.pods,
named as the kubelet stand-in it is), scraped by a real Prometheus (file discovery from the stand-in:
Debian's Prometheus is built without Kubernetes discovery).
Needs root and `make kube` (the test command's set-up runs it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from openbell.localkube import cluster
from openbell.localkube.pods import PodProcesses
from openbell.targets.kubernetes import KubernetesTarget
from tests.kubernetes import stack
from tests.prometheus_server import PrometheusServer


@dataclass
class Kube:
    layout: cluster.Layout
    kubeconfig: str
    api: Any  # kubernetes.client.ApiClient

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def discovery(self) -> Any:
        from kubernetes import client

        return client.DiscoveryV1Api(self.api)

    def apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api)

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items = self.core().list_namespaced_pod(namespace, label_selector=selector).items
        return list(self.api.sanitize_for_serialization(items))

    def wait(self, what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if value := check():
                return value
            time.sleep(0.25)
        raise AssertionError(f"waited {timeout_s:g}s for {what}")

    def delete_namespace(self, namespace: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core().delete_namespace(namespace)
            # The pods' own grace (15 s for the gateways, as infra sets it) would hold the namespace
            # controller's next pass for 10 s: the test's stand-in processes are stopped anyway.
            self.core().delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise

        def gone() -> bool:
            try:
                self.core().read_namespace(namespace)
            except ApiException as exc:
                return exc.status == 404
            return False

        self.wait(f"namespace {namespace} to be deleted", gone, 120)


@pytest.fixture(scope="package")
def kube() -> Iterator[Kube]:
    """The cluster for this package's tests; stopped after them when they started it (the sandbox scenarios
    that follow get the machine's cores back)."""
    if os.geteuid() != 0:
        pytest.fail("the Kubernetes suite needs root (the local cluster's network namespace)")
    layout = cluster.Layout.default()
    if missing := layout.missing_binaries():
        pytest.fail(f"the local cluster is not built ({', '.join(missing)}): run `make kube`")
    started = not cluster.status(layout)["running"]
    cluster.up(layout, progress=print)
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(layout.kubeconfig), client_configuration=cfg)
    cfg.safe_chars_for_path_param = "/?="
    with pytest.MonkeyPatch.context() as mp:
        # openbell and chaostoolkit subprocesses, and KubernetesTarget, find the cluster as a user's would.
        mp.setenv("KUBECONFIG", str(layout.kubeconfig))
        try:
            yield Kube(layout, str(layout.kubeconfig), client.ApiClient(cfg))
        finally:
            if started:
                cluster.down(layout)


@dataclass
class GatewayStack:
    namespace: str
    service: str
    prometheus: str
    pods: PodProcesses

    def target(self, **kwargs: Any) -> KubernetesTarget:
        return KubernetesTarget(service=self.service, namespace=self.namespace, prometheus=self.prometheus,
                                progress=print, poll_s=0.5, route_settle_s=0.5, **kwargs)


def deploy_gateway(kube: Kube, namespace: str, workdir: Path, replicas: int = 2) -> Iterator[GatewayStack]:
    """The gateway stack in `namespace`, its pods served by real gateways, a Prometheus scraping them; all
    removed afterwards (the namespace deleted and waited for: the namespace controller and the garbage
    collector do the rest)."""
    kube.delete_namespace(namespace)  # a run killed earlier may have left it
    stack.apply(kube.api, stack.objects(namespace, replicas=replicas))
    selector = f"{stack.NAME_LABEL}=gateway"
    sd_file = workdir / "gateway-pods.json"
    sd_file.write_text("[]")
    pods = PodProcesses(lambda: kube.pods(namespace, selector), stack.gateway_command, workdir / "pods",
                        sd_file=sd_file, sd_target=stack.sd_target).start()
    prom = PrometheusServer(workdir / "prometheus", [], scrape_config=stack.prometheus_scrape_config(sd_file))
    try:
        kube.wait("the stable Deployment to be available", lambda: (
            (kube.apps().read_namespaced_deployment(stack.SERVICE, namespace).status.available_replicas or 0)
            >= replicas))
        kube.wait("a gateway serving at each pod IP", lambda: all(
            _healthy(p["status"]["podIP"]) for p in kube.pods(namespace, selector)))
        prom.start()
        up = f'count(up{{job="gateway",role="stable"}} == 1) >= {replicas}'
        kube.wait("Prometheus to scrape every stable pod", lambda: _query(prom.url, up))
        yield GatewayStack(namespace, stack.SERVICE, prom.url, pods)
    finally:
        prom.stop()
        kube.delete_namespace(namespace)
        pods.stop()


def _healthy(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        return httpx.get(f"http://{ip}:{stack.PORT}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _query(url: str, expr: str) -> bool:
    try:
        result = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=2).json()["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    return bool(result)


@pytest.fixture(scope="module")
def gateway(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayStack]:
    """The gateway (the docs' names) in namespace `openbell-canary`, for one test module."""
    yield from deploy_gateway(kube, "openbell-canary", tmp_path_factory.mktemp("gateway"))


@pytest.fixture(scope="module")
def target(gateway: GatewayStack) -> Iterator[KubernetesTarget]:
    """The target, checked; any canary a failed earlier test left behind is rolled back before and after."""
    tgt = gateway.target()
    tgt.check()
    tgt.rollback()
    try:
        yield tgt
    finally:
        tgt.rollback()
