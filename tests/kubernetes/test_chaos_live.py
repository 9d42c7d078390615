"""`openbell chaos run ... --target kubernetes` against the local cluster, as an SRE runs it: Chaos Toolkit and
chaostoolkit-kubernetes in a subprocess, the SLO safeguard on a real Prometheus, the allow-list, the journal.

What is real: the API server, the controller-manager (ReplicaSets and StatefulSets recreate pods, the disruption
controller computes the PodDisruptionBudget the Eviction API honours, the EndpointSlices clients follow), the
scheduler (infra's hard zone spread, cordons), the upstream Karpenter NodePool and CloudNativePG Cluster CRDs,
the gateway binary at each gateway pod's IP (the kubelet stand-in), its WebSocket clients, and Prometheus.
What stands in: KWOK runs the pods; the `ledger`, Strimzi broker and CloudNativePG primary pods are labelled
KWOK pods with nothing in them, and the Strimzi JMX series zone-loss's hypothesis reads come from a constant
exporter (`kafka-standin`): zone-loss proves here that the zone's pods move and the platform's objects are
restored, nothing about Kafka or PostgreSQL themselves. The gateway has no Kafka (no ticks), so the SLOs judged
are gateway-availability (its WebSocket handshakes): push latency and the API's errors have no events here.
The experiments run with their own hypotheses and tolerances; only durations are shortened (their env knobs).
One difference from a kubelet: the stand-in sends SIGTERM to a pod's gateway whatever the grace period, so a
pod deleted with grace 0 still closes its WebSockets with the drain frame (a crash would just drop them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from openbell.chaos import nodes as chaos_nodes
from openbell.localkube import cluster
from openbell.localkube.pods import PodProcesses
from tests.kubernetes import stack
from tests.kubernetes.conftest import Kube, _healthy, _query
from tests.prometheus_server import PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
OPENBELL = Path(sys.executable).parent / "openbell"
NS = "openbell"  # the experiments name it
NAMESPACES = ("openbell", "kafka", "postgres")
SLO = ROOT / "slo" / "gateway-availability.yaml"
GATEWAY = f"{stack.NAME_LABEL}=gateway,role=stable"
TRADERS = 150
SETTLED = TRADERS - 8  # a few traders are always between two sessions
MIN_CONNECTIONS = 100  # the experiments' default
BASELINE = "30s"  # "before the fault": longer than each shortened method below
SPOT = "karpenter.sh/capacity-type"
FAST = {  # the experiments' durations, shortened; their tolerances are untouched
    "OPENBELL_CHAOS_MIN_CONNECTIONS": str(MIN_CONNECTIONS),
    "OPENBELL_CHAOS_BASELINE_OFFSET": BASELINE,
    "OPENBELL_CHAOS_KILL_SETTLE_S": "3",
    "OPENBELL_CHAOS_RECONNECT_S": "4",
    "OPENBELL_CHAOS_NODE_REPLACEMENT_S": "3",
    "OPENBELL_CHAOS_ZONE_OUTAGE_S": "4",
    "OPENBELL_CHAOS_BROKER_SETTLE_S": "1",
}


# --- traders: WebSocket clients behind the Service, as a load balancer would spread them ---------------------


@dataclass
class Traders:
    """`count` clients, each holding one WebSocket to a ready endpoint of Service `gateway-stable` (its
    EndpointSlices, re-read every 0.5 s, as a load balancer follows them). A session lasts `session_s` (a trader
    logs off, another logs on: handshakes keep coming, as they do on a trading day, so a bad release shows in the
    handshake SLI at once rather than only in the burst its first scrape never saw). On a close (a drain's 1012
    frame, a dead pod) or a refused handshake a client reconnects to the next endpoint after 0.1-0.3 s. Bounded:
    `stop` ends everything within seconds."""

    kube: Kube
    namespace: str
    count: int
    endpoints: list[str] = field(default_factory=list)
    open: int = 0
    handshakes_ok: int = 0
    handshakes_failed: int = 0
    by_ip: dict[str, int] = field(default_factory=dict)  # open connections per endpoint
    session_s: tuple[float, float] = (10.0, 20.0)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traders:
        self._threads = [threading.Thread(target=self._follow, name="traders-endpoints", daemon=True),
                         threading.Thread(target=lambda: asyncio.run(self._main()), name="traders", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _follow(self) -> None:
        from kubernetes import client

        api = client.DiscoveryV1Api(self.kube.api)
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # the API server busy: keep the last list
                slices = api.list_namespaced_endpoint_slice(
                    self.namespace, label_selector="kubernetes.io/service-name=gateway-stable").items
                self.endpoints = sorted(a for s in slices for e in s.endpoints or []
                                        if e.conditions is None or e.conditions.ready is not False
                                        for a in e.addresses[:1])
            self._stop.wait(0.5)

    async def _main(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, connect=3, sock_connect=3)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
            tasks = [asyncio.create_task(self._client(session, i)) for i in range(self.count)]
            while not self._stop.is_set():
                await asyncio.sleep(0.2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _client(self, session: Any, index: int) -> None:
        import aiohttp

        attempt = 0
        rng = random.Random(index)
        while not self._stop.is_set():
            endpoints = self.endpoints
            if not endpoints:
                await asyncio.sleep(0.2)
                continue
            ip = endpoints[(index + attempt) % len(endpoints)]
            attempt += 1
            try:
                async with session.ws_connect(f"ws://{ip}:{stack.PORT}/ws", timeout=aiohttp.ClientWSTimeout(
                        ws_close=2.0), heartbeat=None) as ws:
                    self.handshakes_ok += 1
                    self.open += 1
                    self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
                    try:
                        await ws.send_str(json.dumps({"op": "subscribe", "symbols": ["OBL"]}))
                        with contextlib.suppress(TimeoutError):  # the session's end: log off
                            async with asyncio.timeout(rng.uniform(*self.session_s)):
                                async for _ in ws:
                                    pass
                    finally:
                        self.open -= 1
                        self.by_ip[ip] -= 1
            except (TimeoutError, aiohttp.ClientError, OSError):
                self.handshakes_failed += 1
            await asyncio.sleep(0.1 + 0.2 * rng.random())


# --- the platform: gateway (real), data tier (stand-ins), NodePools, Prometheus, traders -------------------


@dataclass
class Live:
    kube: Kube
    workdir: Path
    prometheus: str
    env: dict[str, str]
    traders: Traders
    runs: int = 0

    def gateway_pods(self) -> list[dict[str, Any]]:
        return self.kube.pods(NS, GATEWAY)

    def node(self, name: str) -> dict[str, Any]:
        return dict(self.kube.api.sanitize_for_serialization(self.kube.core().read_node(name)))

    def connections(self) -> float:
        return _value(self.prometheus, 'sum(gateway_connections{job="gateway"})')

    def connected(self) -> None:
        """The traders connected (all but the few between two sessions), and Prometheus seeing it."""
        self.kube.wait(f"{TRADERS} traders connected", lambda: self.traders.open >= SETTLED and _query(
            self.prometheus, f'sum(gateway_connections{{job="gateway"}}) >= {SETTLED}'), 60)

    def settled(self) -> None:
        """The traders connected, Prometheus seeing them now and `BASELINE` ago (the hypothesis compares)."""
        expr = (f'sum(gateway_connections{{job="gateway"}}) >= {SETTLED} and '
                f'sum(gateway_connections{{job="gateway"}} offset {BASELINE}) >= {SETTLED}')
        self.kube.wait(f"{TRADERS} traders connected now and {BASELINE} ago",
                       lambda: self.traders.open >= SETTLED and _query(self.prometheus, expr), 90)

    def run(self, experiment: str, *args: str, env: dict[str, str] | None = None,
            timeout_s: float = 150) -> Run:
        self.runs += 1
        journal = self.workdir / f"{experiment}-{self.runs}.json"
        argv = [str(OPENBELL), "chaos", "run", experiment, "--target", "kubernetes", "--namespace", NS,
                "--slo", str(SLO), "--journal", str(journal), "--output", "json", *args]
        done = subprocess.run(argv, env={**os.environ, **self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout_s, cwd=ROOT, stdin=subprocess.DEVNULL)
        return Run.of(done.returncode, done.stdout, done.stderr, journal)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    result: dict[str, Any] | None
    journal: dict[str, Any] | None

    @classmethod
    def of(cls, code: int, stdout: str, stderr: str, journal: Path) -> Run:
        result = json.loads(stdout) if stdout.strip().startswith("{") else None
        doc = json.loads(journal.read_text()) if journal.exists() else None
        return cls(code, stdout, stderr, result, doc)

    def explain(self) -> str:
        reasons = (self.result or {}).get("verdict", {}).get("reasons")
        return f"exit {self.code}; reasons {reasons}; stderr {self.stderr[-1500:]}"

    def output(self, phase: str, name: str) -> Any:
        """The output of the named activity of the journal's method ("run") or rollbacks."""
        assert self.journal is not None, self.explain()
        for run in self.journal.get(phase) or []:
            if run["activity"]["name"] == name:
                return run.get("output")
        raise AssertionError(f"no {phase} activity {name!r} in the journal")


def _value(url: str, expr: str) -> float:
    try:
        result = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=2).json()["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return float("nan")
    return float(result[0]["value"][1]) if result else float("nan")


def _kafka_standin() -> tuple[Any, int]:
    """Strimzi's JMX series as a healthy cluster reports them, constant (zone-loss's hypothesis reads them)."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    from tests.prometheus_server import free_port

    registry = CollectorRegistry()
    for name, value in (("kafka_controller_kafkacontroller_activecontrollercount", 1),
                        ("kafka_controller_kafkacontroller_offlinepartitionscount", 0),
                        ("kafka_server_replicamanager_underminisrpartitioncount", 0),
                        ("kafka_server_replicamanager_atminisrpartitioncount", 0)):
        Gauge(name, "stand-in", ["strimzi_io_cluster"], registry=registry).labels("openbell").set(value)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    return server, port


def _restore_marked_nodes(kube: Kube) -> None:
    """Any node a chaos run cordoned and did not restore (a run killed half way): uncordoned, mark dropped."""
    for node in kube.api.sanitize_for_serialization(
            kube.core().list_node(label_selector=f"{chaos_nodes.MARK_LABEL}=true").items):
        patch = chaos_nodes.restore_patch(node)
        if patch is not None:
            kube.core().patch_node(node["metadata"]["name"], patch)


def _delete_namespaces(kube: Kube, names: tuple[str, ...]) -> None:
    from kubernetes.client.rest import ApiException

    for name in names:
        try:
            kube.core().delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def gone() -> bool:
        left = {n.metadata.name for n in kube.core().list_namespace().items}
        return not left & set(names)

    kube.wait(f"namespaces {', '.join(names)} to be deleted", gone, 120)


def _nodepools(kube: Kube) -> dict[str, Any]:
    pools = kube.custom().list_cluster_custom_object("karpenter.sh", "v1", "nodepools")["items"]
    return {p["metadata"]["name"]: p for p in pools}


@pytest.fixture(scope="module")
def live(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("chaos-live")
    _restore_marked_nodes(kube)
    _delete_namespaces(kube, NAMESPACES)  # a run killed earlier may have left them
    existing = _nodepools(kube)
    created = [p for p in stack.nodepools(list(cluster.ZONES)) if p["metadata"]["name"] not in existing]
    stack.apply(kube.api, created)
    stack.apply(kube.api, stack.objects(NS, replicas=3, zone_spread=True, pdb=True, prefer_capacity="spot")
                + stack.data_tier_standins(NS))
    sd_file = workdir / "gateway-pods.json"
    sd_file.write_text("[]")
    pods = PodProcesses(lambda: kube.pods(NS, f"{stack.NAME_LABEL}=gateway"), stack.gateway_command,
                        workdir / "pods", sd_file=sd_file, sd_target=stack.sd_target).start()
    exporter, port = _kafka_standin()
    prom = PrometheusServer(workdir / "prometheus", [], scrape_config=stack.prometheus_scrape_config(
        sd_file, static={"kafka-standin": f"127.0.0.1:{port}"}))
    traders = Traders(kube, NS, TRADERS)
    allow = workdir / "chaos-allow.yaml"
    allow.write_text(yaml.safe_dump({"allow": [{"context": cluster.CONTEXT, "namespaces": list(NAMESPACES),
                                                "experiments": ["*"]}]}))
    try:
        kube.wait("the gateway Deployment available", lambda: (
            kube.apps().read_namespaced_deployment("gateway", NS).status.available_replicas or 0) >= 3)
        kube.wait("a gateway serving at each pod IP", lambda: all(
            _healthy(p["status"].get("podIP")) for p in kube.pods(NS, GATEWAY)))
        kube.wait("the stand-ins Running", lambda: all(
            len([p for p in kube.pods(ns, sel) if p["status"].get("phase") == "Running"]) >= n
            for ns, sel, n in ((NS, f"{stack.NAME_LABEL}=ledger", 2), ("kafka", "strimzi.io/cluster=openbell", 3),
                               ("postgres", "cnpg.io/cluster=openbell", 1))))
        prom.start()
        kube.wait("Prometheus to scrape every gateway", lambda: _query(
            prom.url, 'count(up{job="gateway",role="stable"} == 1) >= 3 and on() up{job="kafka-standin"} == 1'))
        traders.start()
        env = {"OPENBELL_CHAOS_ALLOW": str(allow), "OPENBELL_PROMETHEUS_URL": prom.url, "KUBECONFIG": kube.kubeconfig,
               **FAST}
        yield Live(kube, workdir, prom.url, env, traders)
    finally:
        traders.stop()
        prom.stop()
        exporter.shutdown()
        _restore_marked_nodes(kube)
        for pool in created:
            with contextlib.suppress(Exception):
                kube.custom().delete_cluster_custom_object("karpenter.sh", "v1", "nodepools", pool["metadata"]["name"])
        _delete_namespaces(kube, NAMESPACES)
        pods.stop()


def _uids(pods: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["uid"]: p for p in pods}


def _zone_of(live: Live, node_name: str) -> str:
    return str(live.node(node_name)["metadata"]["labels"][cluster.ZONE_LABEL])


# === the allow-list and the pre-flight: refused, nothing changed ===========================================


def test_the_allow_list_refuses_a_context_not_on_it_and_nothing_changes(live: Live) -> None:
    config = yaml.safe_load(Path(live.kube.kubeconfig).read_text())
    other = {"name": "prod-eks", "context": dict(config["contexts"][0]["context"])}
    config["contexts"].append(other)
    config["current-context"] = "prod-eks"  # the same cluster, under a context the allow-list does not name
    kubeconfig = live.workdir / "kubeconfig-prod"
    kubeconfig.write_text(yaml.safe_dump(config))
    before = _uids(live.gateway_pods())
    journal = live.workdir / "refused.json"
    done = subprocess.run([str(OPENBELL), "chaos", "run", "gateway-pod-loss", "--target", "kubernetes",
                           "--namespace", NS, "--journal", str(journal)],
                          env={**os.environ, **live.env, "KUBECONFIG": str(kubeconfig)}, capture_output=True,
                          text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "refused" in lines[0] and "'prod-eks'" in lines[0] and "gateway-pod-loss" in lines[0], lines[0]
    assert not journal.exists(), "Chaos Toolkit never started"
    assert _uids(live.gateway_pods()).keys() == before.keys(), "no pod was touched"
    # The same command on the allowed context gets past the allow-list (and --dry runs nothing).
    live.connected()
    dry = live.run("gateway-pod-loss", "--dry")
    assert dry.code == 0, dry.explain()
    assert _uids(live.gateway_pods()).keys() == before.keys()


def test_kafka_broker_loss_fails_fast_naming_strimzi_whose_crd_is_not_here(live: Live) -> None:
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):  # no Strimzi CRD: the API server has no Kafka kind to dry-run
        stack.fresh_dynamic(live.kube.api).resources.get(api_version="kafka.strimzi.io/v1beta2", kind="Kafka")
    brokers = _uids(live.kube.pods("kafka", "strimzi.io/cluster=openbell"))
    started = time.monotonic()
    run = live.run("kafka-broker-loss")
    assert run.code == 3, run.explain()
    line = run.stderr.strip().splitlines()[-1]
    assert "kafkas.kafka.strimzi.io/v1beta2" in line and "Strimzi is not installed" in line, line
    assert "Nothing was run" in line and run.journal is None
    assert time.monotonic() - started < 15
    assert _uids(live.kube.pods("kafka", "strimzi.io/cluster=openbell")).keys() == brokers.keys()


def test_postgres_failover_target_is_accepted_by_the_cnpg_crd_and_the_run_fails_fast(live: Live) -> None:
    """CloudNativePG's CRD is here, its operator is not: infra's Cluster passes the real CRD's schema
    (server-side dry-run, nothing stored), and the experiment refuses to run without that Cluster."""
    from infra import postgres
    from infra.config import load_stack_file

    spec = postgres.Postgres._cluster_spec(load_stack_file(ROOT / "stacks" / "Pulumi.staging.yaml"),
                                           store_name=f"{postgres.CLUSTER}-s3")
    spec["bootstrap"]["initdb"]["secret"] = {"name": f"{postgres.CLUSTER}-owner"}
    body = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": postgres.CLUSTER, "namespace": postgres.NAMESPACE}, "spec": spec}
    accepted = live.kube.custom().create_namespaced_custom_object(
        "postgresql.cnpg.io", "v1", postgres.NAMESPACE, "clusters", body, dry_run="All")
    assert accepted["spec"]["instances"] == spec["instances"]
    bad = {**body, "spec": {**spec, "instances": 0}}
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as refused:  # the CRD's schema really is enforced
        live.kube.custom().create_namespaced_custom_object(
            "postgresql.cnpg.io", "v1", postgres.NAMESPACE, "clusters", bad, dry_run="All")
    assert refused.value.status == 422 and "instances" in str(refused.value.body)
    primary = _uids(live.kube.pods("postgres", "cnpg.io/cluster=openbell"))
    run = live.run("postgres-primary-failover")
    assert run.code == 3, run.explain()
    line = run.stderr.strip().splitlines()[-1]
    assert "clusters.postgresql.cnpg.io/v1 'openbell' in namespace postgres" in line, line
    assert "CloudNativePG" in line and "Nothing was run" in line, line
    assert _uids(live.kube.pods("postgres", "cnpg.io/cluster=openbell")).keys() == primary.keys()


# === the experiments, end to end ===========================================================================


def test_gateway_pod_loss_the_replicaset_replaces_the_pod_and_it_serves(live: Live) -> None:
    live.settled()
    before = _uids(live.gateway_pods())
    run = live.run("gateway-pod-loss")
    assert run.code == 0 and run.result is not None and run.result["outcome"] == "pass", run.explain()
    journal = run.journal
    assert journal is not None and journal["status"] == "completed" and not journal["deviated"]
    assert journal["steady_states"]["before"]["steady_state_met"] and journal["steady_states"]["after"][
        "steady_state_met"]
    (killed,) = run.output("run", "kill-one-gateway-pod")
    after = _uids(live.gateway_pods())
    assert len(after) == 3
    gone = [p["metadata"]["name"] for u, p in before.items() if u not in after]
    new = [p for u, p in after.items() if u not in before]
    assert gone == [killed] and len(new) == 1, (gone, [p["metadata"]["name"] for p in new])
    owner = new[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet" and owner["name"] == before[next(iter(before))]["metadata"][
        "ownerReferences"][0]["name"], "the same ReplicaSet recreated it"
    # The new pod is served: the real gateway answers at its IP as that replica, and Prometheus scrapes it.
    ip, name = new[0]["status"]["podIP"], new[0]["metadata"]["name"]
    health = httpx.get(f"http://{ip}:{stack.PORT}/healthz", timeout=2).json()
    assert health["replica"] == name
    assert _query(live.prometheus, f'up{{job="gateway",pod="{name}"}} == 1')
    assert live.connections() >= 0.9 * TRADERS


def test_spot_interruption_drains_a_spot_node_pods_move_and_the_node_is_restored(live: Live) -> None:
    live.settled()
    before = _uids(live.gateway_pods())
    on_spot = {p["spec"]["nodeName"] for p in before.values()
               if live.node(p["spec"]["nodeName"])["metadata"]["labels"][SPOT] == "spot"}
    assert on_spot, "Karpenter-like placement: gateway pods on spot nodes"
    run = live.run("karpenter-spot-interruption")
    assert run.code == 0 and run.result is not None and run.result["outcome"] == "pass", run.explain()
    drained = run.output("run", "interrupt-a-spot-node-hosting-a-gateway")
    (node,) = drained["nodes"]
    assert node in on_spot and drained["cordoned"] == [node] and drained["evicted"] is True
    moved = [d for d in drained["drained"] if d["uid"] in before]
    assert moved and all(d["node"] == node for d in moved)
    after = _uids(live.gateway_pods())
    assert len(after) == 3 and not {d["uid"] for d in moved} & after.keys()
    replacements = [p for u, p in after.items() if u not in before]
    assert len(replacements) == len(moved)
    assert all(p["spec"]["nodeName"] != node for p in replacements), "rescheduled on another node"
    assert all(_zone_of(live, p["spec"]["nodeName"]) == _zone_of(live, node) for p in replacements), \
        "the hard zone spread keeps the zone's replica in the zone (its on-demand node)"
    # The interrupted node is back: uncordoned, unmarked (the method's restore; the rollback found nothing).
    restored = live.node(node)
    assert not restored["spec"].get("unschedulable") and chaos_nodes.MARK_LABEL not in restored["metadata"]["labels"]
    assert run.output("run", "replacement-capacity-back")["restored"] == [node]
    assert run.output("rollbacks", "restore-the-interrupted-node")["restored"] == []


def test_zone_loss_moves_the_zone_s_pods_out_and_restores_nodes_and_nodepools(live: Live) -> None:
    live.settled()
    pools_before = {n: p["spec"]["template"]["spec"]["requirements"] for n, p in _nodepools(live.kube).items()}
    # The zone of the PostgreSQL primary (the gateway and the brokers are in every zone: hard spread).
    (primary,) = live.kube.pods("postgres", "cnpg.io/instanceRole=primary")
    zone = _zone_of(live, primary["spec"]["nodeName"])
    zone_nodes = {n.metadata.name for n in live.kube.core().list_node(
        label_selector=f"{cluster.ZONE_LABEL}={zone}").items}
    in_zone = {p["metadata"]["uid"]: p for ns in NAMESPACES for p in live.kube.pods(ns, "")
               if p["spec"].get("nodeName") in zone_nodes}
    kinds = {p["metadata"]["namespace"] for p in in_zone.values()}
    assert kinds == set(NAMESPACES), f"the zone hosts a pod of every tier: {kinds}"
    # Nothing to undo before the method: the NodePool rollback is a no-op, not a failed JSON-patch test (called
    # as Chaos Toolkit calls it: in a process that finds the cluster through $KUBECONFIG).
    undo = subprocess.run([sys.executable, "-c", "import json, sys; from openbell.chaos import capacity; "
                           f"print(json.dumps(capacity.allow_zone(['gateway', 'data'], {zone!r})))"],
                          env={**os.environ, **live.env}, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(undo.stdout)["changed"] == []
    # A node an operator cordoned before the drill, for a reason of their own, must stay cordoned after it.
    foreign = f"system-on-demand-{zone}"
    assert not live.node(foreign)["spec"].get("unschedulable")
    live.kube.core().patch_node(foreign, {"spec": {"unschedulable": True}})
    try:
        run = live.run("zone-loss", env={"OPENBELL_CHAOS_ZONE": zone})
        assert live.node(foreign)["spec"].get("unschedulable") is True, "the operator's cordon survived"
        assert chaos_nodes.MARK_LABEL not in live.node(foreign)["metadata"]["labels"]
    finally:
        live.kube.core().patch_node(foreign, {"spec": {"unschedulable": False}})
    assert run.code == 0 and run.result is not None and run.result["outcome"] == "pass", run.explain()
    drained = run.output("run", "the-zone-goes-dark")
    assert set(drained["nodes"]) == zone_nodes and drained["evicted"] is False
    assert set(drained["cordoned"]) == zone_nodes - {foreign}
    assert {d["uid"] for d in drained["drained"]} == set(in_zone)
    assert set(run.output("run", "keep-capacity-out-of-the-zone")["changed"]) == {"gateway", "data"}
    # Every pod of the platform now runs outside the zone; the Deployments and StatefulSets are whole.
    for ns in NAMESPACES:
        pods = live.kube.pods(ns, "")
        assert pods and all(p["spec"].get("nodeName") not in zone_nodes for p in pods), ns
        assert not set(_uids(pods)) & set(in_zone)
    assert len(live.gateway_pods()) == 3
    assert len(live.kube.pods("kafka", "strimzi.io/cluster=openbell")) == 3
    # Restored: the zone's nodes uncordoned and unmarked, the NodePools as they were.
    for name in zone_nodes - {foreign}:
        node = live.node(name)
        assert not node["spec"].get("unschedulable") and chaos_nodes.MARK_LABEL not in node["metadata"]["labels"]
    after = {n: p["spec"]["template"]["spec"]["requirements"] for n, p in _nodepools(live.kube).items()}
    assert after == pools_before
    assert set(run.output("rollbacks", "let-capacity-back-into-the-zone")["changed"]) == {"gateway", "data"}


def test_the_slo_safeguard_stops_the_run_when_a_bad_release_burns_the_budget(live: Live) -> None:
    """gateway-pod-loss at its own durations; once its method has killed the pod, a release whose gateways
    refuse half their handshakes (the `-faulty` image) rolls out: the availability SLO burns, the safeguard
    stops the method and the rollbacks run. Last in the module: the burn stays in the 1h window."""
    live.settled()
    before = set(_uids(live.gateway_pods()))
    apps = live.kube.apps()
    journal = live.workdir / "safeguard.json"
    argv = [str(OPENBELL), "chaos", "run", "gateway-pod-loss", "--target", "kubernetes", "--namespace", NS,
            "--slo", str(SLO), "--journal", str(journal), "--output", "json"]
    env = {**os.environ, **live.env, "OPENBELL_CHAOS_KILL_SETTLE_S": "15", "OPENBELL_CHAOS_RECONNECT_S": "90"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            stdin=subprocess.DEVNULL)
    faulty = f"{stack.IMAGE}:1.0.0-faulty"
    try:
        live.kube.wait("the method to kill a pod", lambda: proc.poll() is not None or bool(
            before - set(_uids(live.gateway_pods()))), 60)
        assert proc.poll() is None, "the run ended before its method"
        fault_at = time.time()
        apps.patch_namespaced_deployment("gateway", NS, {"spec": {"template": {"spec": {"containers": [
            {"name": "gateway", "image": faulty}]}}}})
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        apps.patch_namespaced_deployment("gateway", NS, {"spec": {"template": {"spec": {"containers": [
            {"name": "gateway", "image": f"{stack.IMAGE}:1.0.0"}]}}}})
    run = Run.of(proc.returncode, stdout, stderr, journal)
    per_pod = httpx.get(f"{live.prometheus}/api/v1/query", params={"query": 'gateway_connections{job="gateway"}'},
                        timeout=2).json()["data"]["result"]
    seen = (f"traders {live.traders.by_ip} ok {live.traders.handshakes_ok} failed {live.traders.handshakes_failed} "
            f"endpoints {live.traders.endpoints}; prometheus {[(r['metric'], r['value'][1]) for r in per_pod]}")
    assert run.code == 1 and run.result is not None, run.explain() + seen
    guard = run.result["verdict"]["figures"]["safeguard"]
    assert guard["tripped"] and guard["phase"] == "method", guard
    assert any("stopped by the SLO safeguard" in r for r in run.result["verdict"]["reasons"])
    (burn,) = [b for b in guard["burning"] if b["long_window_s"] == 3600]
    assert burn["slo"] == "gateway/gateway-availability"
    assert burn["long_burn_rate"] > burn["burn_rate_threshold"] and burn["short_burn_rate"] > burn[
        "burn_rate_threshold"]
    assert guard["signalled_at"] - fault_at < 60, "tripped within its poll interval of the burn showing"
    assert run.journal is not None and run.journal["status"] == "interrupted"
    assert not run.journal["steady_states"].get("after"), "the method was abandoned"
    rollbacks = {r["activity"]["name"]: r["status"] for r in run.journal["rollbacks"]}
    assert rollbacks == {"wait-for-gateway-fully-available": "succeeded"}
    live.kube.wait("the good release back", lambda: all(
        p["spec"]["containers"][0]["image"].endswith(":1.0.0") for p in live.gateway_pods())
        and len(live.gateway_pods()) == 3, 60)
