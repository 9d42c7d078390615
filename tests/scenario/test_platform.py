"""The sandbox platform, for real: one sandbox (conftest) shared by every test here, in this order —
what only reads first, then the faults (gateway replica kill -9, Kafka broker kill -9, PostgreSQL crash),
each healed by a second `sandbox up`, then Prometheus' view of it all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.scenario.platform_client import Sandbox, Trader, openbell, percentile, stalled_trader, trade

pytestmark = pytest.mark.sandbox

COMPONENTS = {"postgres", "kafka", "kafka-proxy", "haproxy", "prometheus", "postgres-exporter", "feed", "enricher",
              "ledger", "gateway-1", "gateway-2"}


def test_status_shows_every_component_healthy_with_pid_address_and_version(sandbox: Sandbox) -> None:
    status = sandbox.status()
    assert status["state"] == "up"
    rows = {row["name"]: row for row in status["components"]}
    assert set(rows) == COMPONENTS
    for row in rows.values():
        assert row["running"] and row["healthy"], row
        assert row["pid"] > 0 and row["address"].startswith("127.0.0.1:")
    assert rows["kafka"]["version"] == "4.1.0"
    assert rows["postgres"]["version"].startswith("15.")
    assert rows["haproxy"]["version"].startswith("2.")
    assert rows["prometheus"]["version"].startswith("2.")
    assert {rows[name]["version"] for name in ("feed", "enricher", "ledger", "gateway-1", "gateway-2")} == {"stable"}


def test_a_second_up_finds_the_running_processes_and_starts_nothing(sandbox: Sandbox) -> None:
    before = {row["name"]: row["pid"] for row in sandbox.status()["components"]}
    after = {row["name"]: row["pid"] for row in sandbox.up()["components"]}
    assert after == before


def test_trader_receives_only_its_symbols_in_sequence_with_push_latency(sandbox: Sandbox) -> None:
    top = sandbox.symbols(20)
    mine, others = top[::2], top[1::2]
    trader = asyncio.run(trade(sandbox.endpoints["websocket_url"], mine, duration_s=6))
    received = {r["symbol"] for r in trader.records}
    assert received == set(mine), f"missing {set(mine) - received}, unexpected {received - set(mine)}"
    assert not received & set(others)
    for symbol in mine:
        seqs = trader.seqs(symbol)
        assert seqs == sorted(set(seqs)), f"{symbol} out of order or duplicated: {seqs[:20]}"
    assert trader.unexplained_gaps() == 0
    assert trader.fseq_gaps == 0
    assert len(trader.latencies_s) > 100
    # Same host clock: every latency is a real, positive figure (the benchmark measures its distribution).
    assert min(trader.latencies_s) > 0 and percentile(trader.latencies_s, 0.99) < 10
    assert trader.hello.get("version") == "stable"


def test_killed_gateway_replica_new_traders_go_to_the_others_and_reconnects_resubscribe(sandbox: Sandbox) -> None:
    url = sandbox.endpoints["websocket_url"]
    symbols = sandbox.symbols(10)

    async def scenario() -> tuple[list[Trader], Trader, list[Trader], str]:
        traders = [Trader(symbols) for _ in range(4)]
        tasks = [asyncio.create_task(trade(url, symbols, 10, t)) for t in traders]
        await asyncio.sleep(2)
        replicas = {t.hello.get("replica") for t in traders}
        assert replicas == {"gateway-1", "gateway-2"}, replicas  # leastconn spreads four traders over both
        victim = str(traders[0].hello["replica"])
        os.kill(sandbox.pid(victim), signal.SIGKILL)
        # New traders while HAProxy has not yet marked the replica down: retried onto the survivor.
        newcomers = await asyncio.gather(*(trade(url, symbols, 2) for _ in range(6)))
        # A trader of the dead replica reconnects and resubscribes, as the protocol tells clients to.
        await asyncio.sleep(0.5)
        reconnected = await trade(url, symbols, 3)
        await asyncio.gather(*tasks)
        return traders, reconnected, list(newcomers), victim

    traders, reconnected, newcomers, victim = asyncio.run(scenario())
    survivor = "gateway-2" if victim == "gateway-1" else "gateway-1"
    for trader in newcomers:
        assert trader.hello.get("replica") == survivor and trader.records, trader.hello
    assert reconnected.hello.get("replica") == survivor
    assert {r["symbol"] for r in reconnected.records} == set(symbols)
    for trader in traders:
        if trader.hello["replica"] == survivor:
            assert trader.close_code is None, "a trader of the surviving replica was disconnected"
            assert trader.unexplained_gaps() == 0 and trader.fseq_gaps == 0
        else:
            assert trader.close_code is not None
    status = sandbox.up()
    assert status["state"] == "up"
    assert next(r for r in status["components"] if r["name"] == victim)["healthy"]
    # The restarted replica replays the last records of each partition to warm its quotes (seconds to minutes
    # old): that replay is not the pipeline's ingest latency, so none of it is observed as such.
    time.sleep(2)
    metrics = httpx.get(sandbox.endpoints[f"{victim}_url"] + "/metrics", timeout=5).text
    replayed = sum(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("gateway_kafka_records_total"))
    over = sum(float(line.split()[-1]) * (1 if "_count" in line else -1) for line in metrics.splitlines()
               if line.startswith("gateway_ingest_latency_seconds_count")
               or (line.startswith("gateway_ingest_latency_seconds_bucket") and 'le="2.5"' in line))
    assert replayed >= 300 and over == 0, (replayed, over)


def test_kafka_broker_restart_every_acknowledged_tick_reaches_enriched(sandbox: Sandbox) -> None:
    feed = sandbox.endpoints["feed_url"]
    os.kill(sandbox.pid("kafka"), signal.SIGKILL)
    time.sleep(3)
    assert sandbox.up()["state"] == "up"
    # The feed buffered through the outage: acknowledgements resume.
    acked_before = sum(httpx.get(feed + "/v1/acked", timeout=5).json()["acked"].values())
    _wait(lambda: sum(httpx.get(feed + "/v1/acked", timeout=5).json()["acked"].values()) > acked_before + 100, 60,
          "feed acknowledgements did not resume after the broker restart")
    httpx.post(feed + "/v1/pause", timeout=5).raise_for_status()
    try:
        time.sleep(1)
        answer = httpx.get(feed + "/v1/acked", timeout=5).json()
        acked: dict[str, int] = answer["acked"]
        seen = _wait_for_enriched(sandbox.endpoints["kafka_bootstrap"], int(answer["session"]), acked, timeout_s=90)
    finally:
        httpx.post(feed + "/v1/resume", timeout=5).raise_for_status()
    missing = {s: n for s, n in acked.items() if not set(range(1, n + 1)) <= seen.get(s, set())}
    assert not missing, f"{len(missing)} symbols have acknowledged ticks missing from enriched: " + \
        ", ".join(f"{s}: {sorted(set(range(1, n + 1)) - seen.get(s, set()))[:5]}" for s, n in list(missing.items())[:5])
    assert sum(acked.values()) > 1000


def test_feed_restart_opens_a_new_session_that_traders_keep_receiving(sandbox: Sandbox) -> None:
    feed = sandbox.endpoints["feed_url"]
    symbols = sandbox.symbols(10)
    old_session = int(httpx.get(feed + "/v1/acked", timeout=5).json()["session"])

    async def scenario() -> Trader:
        trader = Trader(symbols)
        task = asyncio.create_task(trade(sandbox.endpoints["websocket_url"], symbols, 14, trader))
        await asyncio.sleep(2)
        os.kill(sandbox.pid("feed"), signal.SIGKILL)
        await asyncio.to_thread(sandbox.up)
        return await task

    trader = asyncio.run(scenario())
    new_session = int(httpx.get(feed + "/v1/acked", timeout=5).json()["session"])
    assert new_session > old_session
    assert trader.close_code is None
    assert {old_session, new_session} <= trader.sessions()
    # The new session's ticks flow from seq 1 again, enriched and fanned out like the old one's.
    restarted = [s for s in symbols if trader.seqs(s, new_session)]
    assert len(restarted) >= len(symbols) // 2
    assert trader.unexplained_gaps() == 0


def test_postgres_crash_during_orders_every_acknowledged_order_is_there_exactly_once(sandbox: Sandbox) -> None:
    import psycopg

    url = sandbox.endpoints["market_url"] + "/v1/orders"
    acked: dict[str, int] = {}
    errors: list[str] = []

    async def submit(client: httpx.AsyncClient, n: int, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            key = str(uuid.uuid4())
            body = {"account": f"acct-{n}", "symbol": "OBL", "side": "buy", "qty": 1 + n, "price": 10.5}
            retry_until = time.monotonic() + 30
            while time.monotonic() < retry_until:  # a client retries with the same key until it hears back
                try:
                    response = await client.post(url, json=body, headers={"Idempotency-Key": key})
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
                    continue
                if response.status_code in (200, 201):
                    acked[key] = int(response.json()["id"])
                    break
                if response.status_code >= 500:
                    await asyncio.sleep(0.1)
                    continue
                errors.append(f"{response.status_code} {response.text[:200]}")
                break

    async def scenario() -> None:
        stop_at = time.monotonic() + 8
        async with httpx.AsyncClient(timeout=5) as client:
            workers = [asyncio.create_task(submit(client, n, stop_at)) for n in range(4)]
            await asyncio.sleep(2)
            # SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint, crash recovery at the next start.
            os.kill(sandbox.pid("postgres"), signal.SIGQUIT)
            await asyncio.sleep(1)
            await asyncio.to_thread(sandbox.up)
            await asyncio.gather(*workers)

    asyncio.run(scenario())
    assert not errors, errors[:3]
    assert len(acked) > 20
    with psycopg.connect(sandbox.endpoints["postgres_dsn"]) as conn:
        rows = conn.execute("SELECT idempotency_key, id FROM orders WHERE idempotency_key = ANY(%s)",
                            (list(acked),)).fetchall()
    by_key: dict[str, list[int]] = {}
    for key, order_id in rows:
        by_key.setdefault(key, []).append(int(order_id))
    assert {k: v[0] for k, v in by_key.items()} == acked
    assert all(len(ids) == 1 for ids in by_key.values())
    for key in list(acked)[:10]:
        again = httpx.post(url, json=_body_of(sandbox, key), headers={"Idempotency-Key": key}, timeout=5)
        assert again.status_code == 200 and again.json()["id"] == acked[key]
        assert again.headers.get("Idempotent-Replayed") == "true"


def test_canary_weight_on_haproxy_moves_new_traders_only_and_open_ones_stay(sandbox: Sandbox) -> None:
    from openbell.sandbox import supervisor
    from openbell.sandbox.layout import Layout

    lay = Layout(sandbox.home)
    url = sandbox.endpoints["websocket_url"]
    symbols = sandbox.symbols(5)
    started = supervisor.start_canary(lay, "v2", replicas=1)
    assert [(row.name, row.health.version) for row in started] == [("gateway-canary-1", "v2")]
    route = supervisor.router(lay)
    try:
        async def scenario() -> tuple[list[Trader], list[Trader], list[Trader]]:
            old = [Trader(symbols) for _ in range(3)]
            tasks = [asyncio.create_task(trade(url, symbols, 9, t)) for t in old]
            await asyncio.sleep(1.5)
            await asyncio.to_thread(route.set_canary_weight, 100)
            on_canary = await asyncio.gather(*(trade(url, symbols, 1.5) for _ in range(4)))
            await asyncio.to_thread(route.set_canary_weight, 0)
            back = await asyncio.gather(*(trade(url, symbols, 1.5) for _ in range(3)))
            await asyncio.gather(*tasks)
            return old, list(on_canary), list(back)

        old, on_canary, back = asyncio.run(scenario())
    finally:
        stopped = supervisor.stop_canary(lay)
    assert stopped == ["gateway-canary-1"]
    assert {t.hello["version"] for t in on_canary} == {"v2"} and all(t.records for t in on_canary)
    assert {t.hello["version"] for t in back} == {"stable"}
    for trader in old:  # opened before the weight changed: never moved, never cut, nothing lost
        assert trader.hello["version"] == "stable" and trader.close_code is None
        assert trader.unexplained_gaps() == 0 and trader.fseq_gaps == 0
    assert route.canary_weight() == 0
    assert route.backend_load()["gateway-canary"].total_sessions >= 4
    assert "gateway-canary-1" not in {row["name"] for row in sandbox.status()["components"]}


def test_gateway_drains_on_sigterm_with_a_reconnect_hint(sandbox: Sandbox) -> None:
    port = sandbox.endpoints["gateway-2_url"].rsplit(":", 1)[1]
    symbols = sandbox.symbols(5)

    async def scenario() -> Trader:
        task = asyncio.create_task(trade(f"ws://127.0.0.1:{port}/ws", symbols, 10))
        await asyncio.sleep(1.5)
        os.kill(sandbox.pid("gateway-2"), signal.SIGTERM)
        return await task

    trader = asyncio.run(scenario())
    assert trader.records and trader.close_code == 1012  # "service restart"
    assert int(json.loads(trader.close_reason)["reconnect_after_ms"]) >= 1000
    assert sandbox.up()["state"] == "up"


def test_a_client_that_stops_reading_does_not_stall_the_others(sandbox: Sandbox) -> None:
    port = int(sandbox.endpoints["gateway-1_url"].rsplit(":", 1)[1])
    url = f"ws://127.0.0.1:{port}/ws"
    symbols = sandbox.symbols(50)
    conflations_before = _gateway_counter(port, "gateway_send_queue_conflations_total")

    async def scenario() -> Trader:
        # Its socket buffers fill and the gateway must conflate for it, not wait on it.
        blocker = asyncio.create_task(stalled_trader("127.0.0.1", port, symbols, 10))
        await asyncio.sleep(0.5)
        trader = await trade(url, symbols, 8)
        await blocker
        return trader

    trader = asyncio.run(scenario())
    assert len(trader.records) > 200
    assert trader.unexplained_gaps() == 0 and trader.fseq_gaps == 0
    assert percentile(trader.latencies_s, 0.5) < 1.0  # it kept getting fresh ticks, not a backlog
    assert _gateway_counter(port, "gateway_send_queue_conflations_total") > conflations_before


def _gateway_counter(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_prometheus_scrapes_every_target_and_the_slo_rules_record_values(sandbox: Sandbox) -> None:
    prom = sandbox.endpoints["prometheus_url"]

    def targets() -> list[dict[str, Any]]:
        return list(httpx.get(prom + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"])

    _wait(lambda: all(t["health"] == "up" for t in targets()), 30, "not every target is up")
    jobs = {t["labels"]["job"] for t in targets()}
    assert {"gateway", "enricher", "ledger", "feed", "haproxy", "kafka", "postgres", "prometheus"} <= jobs
    # Traffic from the tests above (traders, orders, quotes) feeds the SLIs; every SLO with traffic records.
    asyncio.run(trade(sandbox.endpoints["websocket_url"], sandbox.symbols(5), 3))
    for _ in range(5):
        httpx.get(sandbox.endpoints["market_url"] + "/v1/quotes", params={"symbols": ",".join(sandbox.symbols(3))},
                  timeout=5)
    wanted = {"gateway-availability", "gateway-push-latency", "kafka-consumer-lag", "ledger-write-availability",
              "api-errors", "api-page-latency"}

    def recorded() -> set[str]:
        result = httpx.get(prom + "/api/v1/query", params={"query": "slo:sli_error:ratio_rate5m"},
                           timeout=5).json()["data"]["result"]
        return {r["metric"]["slo"] for r in result if r["value"][1] not in ("NaN",)}

    _wait(lambda: wanted <= recorded(), 60, f"SLO recording rules without a value: {wanted - recorded()}")


def test_logs_and_bad_arguments_on_a_running_sandbox(sandbox: Sandbox) -> None:
    done = openbell("sandbox", "logs", "kafka", "--lines", "5", home=sandbox.home, timeout_s=30)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 5
    done = openbell("sandbox", "logs", "zookeeper", home=sandbox.home, timeout_s=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "zookeeper" in done.stderr and "gateway-1" in done.stderr
    done = openbell("sandbox", "up", "--port", "haproxy=1", home=sandbox.home, timeout_s=60)
    assert done.returncode == 2 and "already running" in done.stderr


def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            if check():
                return
        time.sleep(0.5)
    raise AssertionError(what)


def _wait_for_enriched(bootstrap: str, session: int, acked: dict[str, int], timeout_s: float
                       ) -> dict[str, set[int]]:
    """Read `enriched` from the beginning until every acknowledged seq of the feed's session has appeared
    (or time runs out)."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0})
    consumer.subscribe(["enriched"])
    seen: dict[str, set[int]] = {}
    outstanding = {s: n for s, n in acked.items() if n > 0}
    deadline = time.monotonic() + timeout_s
    try:
        while outstanding and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                if message.error():
                    continue
                record = json.loads(message.value())
                if record.get("session") != session:
                    continue
                seen.setdefault(record["symbol"], set()).add(int(record["seq"]))
            for symbol in [s for s, n in outstanding.items() if len(seen.get(s, ())) >= n]:
                if set(range(1, outstanding[symbol] + 1)) <= seen[symbol]:
                    del outstanding[symbol]
    finally:
        consumer.close()
    return seen


def _body_of(sandbox: Sandbox, key: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(sandbox.endpoints["postgres_dsn"]) as conn:
        row = conn.execute("SELECT account, symbol, side, qty, price FROM orders WHERE idempotency_key = %s",
                           (key,)).fetchone()
    assert row is not None
    account, symbol, side, qty, price = row
    return {"account": account, "symbol": symbol, "side": side, "qty": int(qty), "price": float(price)}
