"""Chaos experiments on the shared sandbox with real traffic: a fleet of reconnecting WebSocket traders polling
REST quotes (and short-lived traders coming and going) while the real `openbell chaos run` drives the real
Chaos Toolkit in a subprocess. Each sandbox experiment passes on a healthy platform; the claims "no
acknowledged tick / order lost" are checked here from data, independently of the experiments' own probes; the
harsh variant trips the SLO safeguard and its rollbacks leave a healthy sandbox.

The order is the catalogue's (experiments/README.md): in a sandbox whose Prometheus history is minutes, what
one experiment legitimately burns stays in the page windows for up to half an hour, so each runs before the
experiments whose gate reads what it burns (PostgreSQL's 503s burn api-errors, Kafka's replayed backlog burns
push latency), and the harsh variant, which burns the edge, comes last."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scenario.fleet import Fleet
from tests.scenario.platform_client import Sandbox, impossible_slo, openbell, trade, wait_until_burning

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments" / "sandbox"
GATE_SLOS = [str(ROOT / p) for p in ("slo/gateway-availability.yaml", "slo/gateway-push-latency.yaml",
                                     "slo/api-errors.yaml", "experiments/sandbox/slo/gateway-edge-availability.yaml")]


class Traffic:
    """The module's traders: a reconnecting fleet; a short-lived trader every second (new handshakes keep the
    gateway-availability SLI's windows fed: long-lived connections alone make no events); and a trader watching
    the 150 most active symbols, so every exchange's push-latency SLI has enough events that a few late pushes
    on a busy machine are not most of a young sandbox's window."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.fleet = Fleet(sandbox.endpoints["websocket_url"], sandbox.endpoints["market_url"], sandbox.symbols(30),
                           traders=12, rest_interval_s=0.25)
        self.url, self.symbols, self.wide = sandbox.endpoints["websocket_url"], sandbox.symbols(3), sandbox.symbols(150)
        self._stop = threading.Event()
        self._churn = threading.Thread(target=self._come_and_go, daemon=True)

    def _come_and_go(self) -> None:
        watcher: asyncio.Task[Any] | None = None

        async def loop() -> None:
            nonlocal watcher
            while not self._stop.is_set():
                if watcher is None or watcher.done():  # reconnects after a kill, as a real client does
                    watcher = asyncio.create_task(_quietly(trade(self.url, self.wide, 3600)))
                with contextlib.suppress(Exception):
                    await trade(self.url, self.symbols, 0.5)
                await asyncio.sleep(1.0)
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher

        asyncio.run(loop())

    def start(self) -> Traffic:
        self.fleet.start()
        self._churn.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._churn.join(10)
        self.fleet.stop()

    def receiving(self, within_s: float) -> bool:
        """Ticks keep reaching the fleet (more records than now within `within_s`)."""
        start = sum(self.fleet.snapshot()["messages"].values())
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if sum(self.fleet.snapshot()["messages"].values()) > start:
                return True
            time.sleep(0.2)
        return False

    def all_connected(self, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            current = self.fleet.current()
            if len(current) == self.fleet.traders and all(current.values()):
                return True
            time.sleep(0.2)
        return False


async def _quietly(coro: Any) -> None:
    """A trader whose handshake fails while every gateway is down just ends; the loop starts another."""
    with contextlib.suppress(Exception):
        await coro


@pytest.fixture(scope="module")
def traffic(sandbox: Sandbox) -> Iterator[Traffic]:
    from openbell.chaos.probes import slo_gate

    running = Traffic(sandbox).start()
    try:
        # Every experiment starts from a gate that passes: wait (bounded) for traffic to feed each SLI's windows
        # and for what earlier modules burned, if anything, to leave the short windows.
        deadline, last = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            last = slo_gate(GATE_SLOS, home=str(sandbox.home))
            if last["ok"]:
                break
            time.sleep(2)
        assert last.get("ok"), f"the SLO gate did not pass before the experiments: {last.get('reasons')}"
        yield running
    finally:
        running.stop()


def chaos(sandbox: Sandbox, *args: str, timeout_s: float = 150) -> tuple[int, dict[str, Any], str]:
    """`openbell chaos run ... --output json` on the shared sandbox, as a user runs it."""
    done = openbell("chaos", "run", *args, "--output", "json", home=sandbox.home, timeout_s=timeout_s)
    data = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.returncode, data, done.stderr


def step(data: dict[str, Any], phase: str, name: str) -> dict[str, Any]:
    return next(s for s in data["timeline"] if s["phase"] == phase and s["name"] == name)


def output_of(data: dict[str, Any], phase: str, name: str) -> dict[str, Any]:
    """An activity's output, from the journal (the timeline keeps only a summary)."""
    doc = json.loads(Path(data["journal"]).read_text())
    runs = {"method": doc["run"], "rollbacks": doc["rollbacks"],
            "steady-state-before": (doc["steady_states"]["before"] or {}).get("probes", []),
            "steady-state-after": (doc["steady_states"]["after"] or {}).get("probes", [])}[phase]
    return dict(next(r for r in runs if r["activity"]["name"] == name)["output"])


def test_a_broken_experiment_file_exits_2_with_chaostoolkits_message(sandbox: Sandbox, tmp_path: Path) -> None:
    invalid = tmp_path / "invalid.json"
    doc = json.loads((EXPERIMENTS / "gateway-replica-loss.json").read_text())
    doc["method"][0]["provider"]["arguments"]["colour"] = "red"  # not a parameter of actions.kill
    invalid.write_text(json.dumps(doc))
    code, _, stderr = chaos(sandbox, str(invalid), timeout_s=60)
    assert code == 2
    assert stderr == (f"openbell: chaos ({invalid}): argument 'colour' is not part of the function signature in "
                      "activity 'kill'\n")
    broken = tmp_path / "broken.json"
    broken.write_text('{"title": "half an experiment", ')
    code, _, stderr = chaos(sandbox, str(broken), timeout_s=60)
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.startswith(f"openbell: {broken}: json.decoder.JSONDecodeError: Expecting property name")
    assert sandbox.status()["state"] == "up"  # nothing was touched


def test_a_platform_already_burning_is_refused_as_unhealthy_and_nothing_is_injected(
        sandbox: Sandbox, traffic: Traffic, tmp_path: Path) -> None:
    slo = impossible_slo(tmp_path / "slo" / "push-in-a-millisecond.yaml")
    wait_until_burning(sandbox, slo)
    pids = {c["name"]: c["pid"] for c in sandbox.status()["components"]}
    code, data, stderr = chaos(sandbox, "gateway-replica-loss", "--slo", str(slo.parent), timeout_s=120)
    assert code == 1, stderr[-2000:]
    assert data["outcome"] == "unhealthy", data["verdict"]
    reason = data["verdict"]["reasons"][0]
    assert reason.startswith("the SLO safeguard refused to start: unhealthy before the experiment: "
                             "gateway/push-in-a-millisecond: page"), reason
    assert ("burning since" in reason or "burning for over" in reason) and "gateway-push-latency.md" in reason
    assert not [s for s in data["timeline"] if s["phase"] == "method"]  # nothing was injected
    assert {c["name"]: c["pid"] for c in sandbox.status()["components"]} == pids


def test_gateway_replica_loss_passes_and_its_traders_reconnect(sandbox: Sandbox, traffic: Traffic,
                                                               tmp_path: Path) -> None:
    before = traffic.fleet.snapshot()
    junit = tmp_path / "chaos.xml"
    code, data, stderr = chaos(sandbox, "gateway-replica-loss", "--junit", str(junit))
    assert code == 0, (stderr[-2000:], data.get("verdict"))
    assert data["verdict"]["outcome"] == "pass" and data["verdict"]["figures"]["steady_state_after"] is True
    assert step(data, "method", "kill-9-gateway-1")["status"] == "succeeded"
    assert json.loads(Path(data["journal"]).read_text())["status"] == "completed"
    # The killed replica's traders were cut (no close frame from a dead process) and came back through HAProxy.
    after = traffic.fleet.snapshot()
    assert sum(after["closes"].values()) > sum(before["closes"].values())
    assert traffic.all_connected(within_s=15), traffic.fleet.current()
    assert traffic.receiving(within_s=10), "the reconnected traders receive no ticks"
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert {"steady state before the method", "action: kill-9-gateway-1", "action: restart-gateway-1",
            "steady state after the method", "rollback: heal-sandbox", "SLO safeguard", "experiment"} == set(cases)
    assert not any(c.find("failure") is not None for c in cases.values())


def test_postgres_primary_loss_loses_or_duplicates_no_acknowledged_order(sandbox: Sandbox, traffic: Traffic) -> None:
    import psycopg

    client = OrderClient(sandbox.endpoints["market_url"] + "/v1/orders").start()
    try:
        code, data, stderr = chaos(sandbox, "postgres-primary-loss")
    finally:
        client.stop()
    assert code == 0, (stderr[-2000:], data.get("verdict"))
    assert output_of(data, "steady-state-after", "acknowledged-orders-in-ledger")["acknowledged"] > 20
    # This test's own client, checked against the ledger's data: each acknowledged order exactly once, same id.
    assert not client.errors, client.errors[:3]
    assert len(client.acked) > 20
    with psycopg.connect(sandbox.endpoints["postgres_dsn"]) as conn:
        rows = conn.execute("SELECT idempotency_key, id FROM orders WHERE idempotency_key = ANY(%s)",
                            (list(client.acked),)).fetchall()
    by_key: dict[str, list[int]] = {}
    for key, order_id in rows:
        by_key.setdefault(key, []).append(int(order_id))
    assert {k: ids[0] for k, ids in by_key.items()} == client.acked
    assert all(len(ids) == 1 for ids in by_key.values())


def test_kafka_broker_loss_loses_no_acknowledged_tick_and_lag_recovers(sandbox: Sandbox, traffic: Traffic) -> None:
    code, data, stderr = chaos(sandbox, "kafka-broker-loss")
    assert code == 0, (stderr[-2000:], data.get("verdict"))
    lag = output_of(data, "steady-state-after", "kafka-lag-recovers-within-45s")
    assert lag["ok"] and not lag["leaderless"] and lag["groups"]["enricher"]["lag_records"] <= 500
    # Back at the head, not merely a few records behind: just after the restart the commits and the log's end
    # are where they were while the enricher has not yet rejoined its group (it read 11 s behind then).
    assert lag["enricher_lag_s"] is not None and lag["enricher_lag_s"] <= 0.05
    # From data, independently of the experiment's probe: every tick the feed had acknowledged is in the topic.
    answer = httpx.get(sandbox.endpoints["feed_url"] + "/v1/acked", timeout=5).json()
    acked: dict[str, int] = answer["acked"]
    seen = read_ticks(sandbox.endpoints["kafka_bootstrap"], int(answer["session"]))
    missing = {s: n for s, n in acked.items() if not set(range(1, n + 1)) <= seen.get(s, set())}
    assert not missing, f"{len(missing)} symbols lost acknowledged ticks: {list(missing.items())[:5]}"
    assert sum(acked.values()) > 1000


def lag_counters(sandbox: Sandbox) -> tuple[float, float, float]:
    """The lag SLO's counters on the enricher's /metrics: seconds over 50 ms, seconds observed; and its lag
    gauge (worst partition, seconds)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(sandbox.endpoints["enricher_url"] + "/metrics", timeout=5).text
    families = list(text_string_to_metric_families(text))
    values = {s.name: s.value for f in families for s in f.samples
              if s.labels.get("topic") == "ticks" and s.labels.get("bound") in (None, "0.05")}
    lag = max(s.value for f in families for s in f.samples if s.name == "enricher_consumer_lag_seconds")
    return (values["enricher_consumer_lag_over_bound_seconds_total"],
            values["enricher_consumer_lag_observed_seconds_total"], lag)


def test_enricher_stall_builds_lag_and_it_recovers(sandbox: Sandbox, traffic: Traffic) -> None:
    started = time.monotonic()
    over_before, observed_before, lag_before = lag_counters(sandbox)
    code, data, stderr = chaos(sandbox, "enricher-stall")
    over_after, observed_after, _ = lag_counters(sandbox)
    took = time.monotonic() - started  # from before the first reading to after the second
    assert code == 0, (stderr[-2000:], data.get("verdict"))
    assert output_of(data, "method", "lag-has-built-up")["lag_records"] >= 300
    after = output_of(data, "steady-state-after", "kafka-lag-recovers-within-30s")
    assert after["ok"] and after["waited_s"] <= 30
    assert sandbox.status()["state"] == "up"
    # The lag SLO counts the 15 s frozen, though no scrape reached the enricher then: the time over 50 ms
    # arrives with the backlog consumed on resuming, and the time observed with the lag thread's next round.
    # Neither counts more than the time that passed, give or take what was outstanding at the first reading:
    # a lag then (the previous experiment's steady state leaves it within 50 ms of the head) is counted when
    # its records are consumed, and the time observed since the lag thread's last round (a fraction of a
    # second) when it next runs.
    assert 13.0 <= over_after - over_before <= took + lag_before, (over_before, over_after, took, lag_before)
    assert 13.0 <= observed_after - observed_before <= took + 1, (observed_before, observed_after, took)


def test_a_partition_between_gateways_and_kafka_keeps_traders_and_heals_without_restart(
        sandbox: Sandbox, traffic: Traffic) -> None:
    def pids() -> dict[str, int]:
        # What the supervisor recorded (a restart would record a new pid), read from its state file.
        processes = json.loads((sandbox.home / "sandbox.json").read_text())["processes"]
        return {name: int(processes[name]["pid"]) for name in ("gateway-1", "gateway-2")}

    before = pids()
    code, data, stderr = chaos(sandbox, "gateway-kafka-partition")
    assert code == 0, (stderr[-2000:], data.get("verdict"))
    assert output_of(data, "method", "gateways-still-healthy-while-cut-off")["ok"]
    resumed = output_of(data, "method", "gateways-resume-consuming")
    assert resumed["ok"] and all(n >= 50 for n in resumed["records"].values())
    # Resumed by themselves: the same processes, not restarted ones.
    assert pids() == before


def test_latency_between_gateways_and_kafka_slows_nothing_down_to_a_stop(sandbox: Sandbox, traffic: Traffic) -> None:
    code, data, stderr = chaos(sandbox, "gateway-kafka-latency")
    assert code == 0, (stderr[-2000:], data.get("verdict"))
    assert output_of(data, "method", "add-40ms-latency")["latency_ms"] == 40
    assert output_of(data, "method", "gateways-keep-consuming-under-latency")["ok"]


def test_the_harsh_variant_trips_the_safeguard_and_the_rollbacks_restore_a_healthy_sandbox(
        sandbox: Sandbox, traffic: Traffic) -> None:
    code, data, stderr = chaos(sandbox, "gateway-all-replicas-loss")
    assert code == 1, (stderr[-2000:], data.get("verdict"))
    verdict = data["verdict"]
    assert verdict["reasons"][0].startswith("stopped by the SLO safeguard: page-severity burn during the method")
    guard = verdict["figures"]["safeguard"]
    assert guard["tripped"] and guard["phase"] == "method"
    edge = [b for b in guard["burning"] if b["slo"] == "gateway/gateway-edge-availability"]
    assert edge, guard["burning"]
    assert all(b["long_burn_rate"] > b["burn_rate_threshold"] and b["short_burn_rate"] > b["burn_rate_threshold"]
               for b in edge)
    # Stopped well before the method's 40 s outage, rolled back, and the sandbox is whole again.
    kill, heal = step(data, "method", "kill-9-every-gateway"), step(data, "rollbacks", "heal-sandbox")
    assert heal["status"] == "succeeded" and heal["end"] - kill["start"] < 25
    assert not any(s["name"] == "restart-the-gateways" for s in data["timeline"])
    assert openbell("sandbox", "status", home=sandbox.home, timeout_s=60).returncode == 0
    assert traffic.all_connected(within_s=20), traffic.fleet.current()


# --- helpers -----------------------------------------------------------------------------------------------


class OrderClient:
    """A trading client in two threads: orders with idempotency keys, the same key retried until the ledger
    acknowledges it (as the platform's clients must), what was acknowledged kept for the data check."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: dict[str, int] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._submit, args=(n,), daemon=True) for n in range(2)]
        self._lock = threading.Lock()

    def start(self) -> OrderClient:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(45)

    def _submit(self, n: int) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                key = str(uuid.uuid4())
                body = {"account": f"chaos-test-{n}", "symbol": "OBL", "side": "sell", "qty": 1 + n, "price": 11.5}
                give_up = time.monotonic() + 30
                while time.monotonic() < give_up:
                    try:
                        answer = client.post(self.url, json=body, headers={"Idempotency-Key": key})
                    except httpx.TransportError:
                        time.sleep(0.2)
                        continue
                    if answer.status_code in (200, 201):
                        with self._lock:
                            self.acked[key] = int(answer.json()["id"])
                        break
                    if answer.status_code < 500:
                        with self._lock:
                            self.errors.append(f"{answer.status_code} {answer.text[:200]}")
                        break
                    time.sleep(0.2)
                time.sleep(0.1)


def read_ticks(bootstrap: str, session: int, timeout_s: float = 60) -> dict[str, set[int]]:
    """Every seq of the feed's session in the ticks topic, read from the beginning to the high watermarks."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}", "log_level": 0,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    seen: dict[str, set[int]] = {}
    try:
        partitions = sorted(consumer.list_topics("ticks", timeout=10).topics["ticks"].partitions)
        highs = {p: consumer.get_watermark_offsets(TopicPartition("ticks", p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition("ticks", p, OFFSET_BEGINNING) for p in partitions])
        pending = {p for p in partitions if highs[p] > 0}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                if message.error():
                    continue
                if (message.offset() or 0) + 1 >= highs[message.partition()]:
                    pending.discard(message.partition())
                record = json.loads(message.value() or b"{}")
                if record.get("session") == session:
                    seen.setdefault(record["symbol"], set()).add(int(record["seq"]))
        assert not pending, f"partitions not read to their high watermark in {timeout_s:g}s: {pending}"
    finally:
        consumer.close()
    return seen
