"""`openbell gameday --target kubernetes` against the local cluster: real k6 on this machine through the
entry point (tests/kubernetes/traffic.py's RouteProxy: a stand-in for the Gateway's data plane, routing each
connection by the HTTPRoute's weights to the Services' ready endpoints) to real gateways at the KWOK pods' IPs,
the canary phase moving the real HTTPRoute and Deployments, the SLO gate and the closing budget read from a
real Prometheus; one verdict, one report. What cannot run here: k6-operator's runner pods (no operator, no
kubelet), so the plan's load runs k6 locally, as gamedays/opening-bell-kubernetes.yaml does."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.kubernetes import stack
from tests.kubernetes.conftest import GatewayStack, Kube, deploy_gateway
from tests.kubernetes.traffic import RouteProxy, RouteTraffic

ROOT = Path(__file__).resolve().parents[2]
NS = "openbell-gameday"


@pytest.fixture(scope="module")
def gateway(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayStack]:
    yield from deploy_gateway(kube, NS, tmp_path_factory.mktemp("gateway-gameday"))


@pytest.fixture(scope="module")
def entry(kube: Kube, gateway: GatewayStack) -> Iterator[RouteProxy]:
    router = RouteTraffic(kube, NS, rate_per_s=0, traders=0).start()
    proxy = RouteProxy(router).start()
    try:
        yield proxy
    finally:
        proxy.stop()
        router.stop()


def plan(path: Path, canary_version: str) -> Path:
    doc = {
        "apiVersion": "openbell/v1", "kind": "Gameday",
        "metadata": {"name": "opening-bell-local-kubernetes",
                     "description": "NYSE open at a tiny scale, a canary at the bell, the budgets at the close."},
        "spec": {
            "slo": [str(ROOT / "slo")],
            "gate": {"severity": "page", "interval": "2s", "max_budget_consumed": 0.05},
            "phases": [
                {"name": "market-open", "start": {"at": "0s"},
                 "load": {"profile": "nyse-open", "scale": 0.0005, "time_scale": 0.03, "thresholds": "report",
                          "env": {"SYMBOLS": "AAPL,MSFT,NVDA,AMZN,GOOGL,META,TSLA,JPM"}}},
                {"name": "canary-at-the-bell", "start": {"at": "15s"}, "timeout": "4m",
                 "canary": {"service": "gateway", "version": canary_version, "steps": [50, 100], "hold": "15s",
                            "interval": "1s", "max_extension": "2s", "on_inconclusive": "pass"}},
                {"name": "closing-budget", "start": {"after": ["market-open", "canary-at-the-bell"]},
                 "slo": {"severity": "page"}},
            ]}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_gameday(gateway: GatewayStack, entry: RouteProxy, tmp_path: Path, version: str) -> tuple[int, dict]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "openbell"), "-O", "json", "gameday", "--target", "kubernetes",
         "--plan", str(plan(tmp_path / "plan.yaml", version)), "--prometheus", gateway.prometheus,
         "--base-url", entry.url, "--namespace", NS, "--report", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"exit {done.returncode}: {done.stdout[-1000:]} {done.stderr[-3000:]}") from None


def test_the_gameday_runs_load_and_a_canary_on_the_cluster_with_one_verdict(
        kube: Kube, gateway: GatewayStack, entry: RouteProxy, tmp_path: Path) -> None:
    code, result = run_gameday(gateway, entry, tmp_path, "1.1.0")
    assert code == 0, json.dumps(result, indent=1)[:4000]
    stable = kube.apps().read_namespaced_deployment("gateway", NS)
    assert stable.spec.template.spec.containers[0].image == f"{stack.IMAGE}:1.1.0"  # promoted on the cluster
    assert entry.connections["gateway-canary"] > 0  # k6's traders reached the canary through the route
    assert (tmp_path / "report" / "index.html").is_file()
