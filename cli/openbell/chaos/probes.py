"""openbell's Chaos Toolkit probes: the SLO gate, the burn rate of one SLO, Kafka's health, a sandbox
component's health, and data checks (acknowledged ticks in the topic, acknowledged orders in the ledger).

Every probe returns a JSON-able dict with an `ok` boolean, so a steady-state hypothesis judges any of them with
one tolerance, this module's `ok`:

    {"type": "probe", "name": "slo-gate", "tolerance": {"type": "probe", "name": "gate-passes",
       "provider": {"type": "python", "module": "openbell.chaos.probes", "func": "ok", "arguments": {}}},
     "provider": {"type": "python", "module": "openbell.chaos.probes", "func": "slo_gate",
                  "arguments": {"slo_paths": ["slo/gateway-availability.yaml"]}}}

(Chaos Toolkit passes the probe's output to the tolerance as `value`; it needs the `arguments` key to do so.)
Probes only read: what they query is the platform's real endpoints, Prometheus and Kafka, on 127.0.0.1 for
the sandbox.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openbell.chaos import target
from openbell.errors import SpecError
from openbell.targets import platform
from openbell.targets.platform import Sandbox

if TYPE_CHECKING:
    from openbell.slo.evaluate import GroupResult, PairResult
    from openbell.slo.model import SLO
    from openbell.slo.verdict import Verdict

__all__ = ["acked_orders_present", "acked_ticks_present", "burn_rate", "component_healthy",
           "consumer_lag_at_least", "kafka_health", "ok", "slo_gate"]

ORDERS_DIR = "chaos"
"""Under the sandbox home: what `actions.submit_orders` acknowledged, for `acked_orders_present` to check."""


# --- the tolerance -----------------------------------------------------------------------------------------


def ok(value: Any = None) -> bool:
    """Tolerance for every probe here: True when the probe's output says `ok`."""
    return isinstance(value, dict) and value.get("ok") is True


# --- the SLO gate ------------------------------------------------------------------------------------------


def evaluate_gate(slos: list[SLO], severity: str, prometheus_url: str) -> tuple[Verdict, list[GroupResult]]:
    """`openbell.slo.evaluate.evaluate` (the gate every risky action asks), one SLO per thread: a safeguard
    that polls every scrape interval cannot wait for 7 queries per SLO one after the other."""
    from concurrent.futures import ThreadPoolExecutor

    from openbell.metrics.prometheus import PrometheusClient
    from openbell.slo.evaluate import evaluate, verdict_of

    with PrometheusClient(prometheus_url, timeout_s=5.0) as client, \
            ThreadPoolExecutor(max_workers=max(1, min(8, len(slos)))) as pool:
        parts = list(pool.map(lambda slo: evaluate(client, [slo], severity)[1], slos))
    results = [r for part in parts for r in part]
    return verdict_of(results, slos), results


def burn_figures(result: GroupResult, pair: PairResult) -> dict[str, Any]:
    """One burning (or inconclusive) alert pair of one SLO group: the figures a report names."""
    return {
        "slo": result.label, "severity": pair.severity,
        "long_window_s": pair.long_window_s, "short_window_s": pair.short_window_s,
        "long_burn_rate": _round(pair.long_burn_rate), "short_burn_rate": _round(pair.short_burn_rate),
        "burn_rate_threshold": pair.burn_rate_threshold,
        "long_error_ratio": _round(pair.long_error_ratio), "short_error_ratio": _round(pair.short_error_ratio),
        "budget_remaining": _round(result.budget_remaining), "events": _round(pair.events), "reason": pair.reason,
    }


def summarize(verdict: Verdict, results: list[GroupResult], severity: str) -> dict[str, Any]:
    """The gate's answer as a compact dict: outcome, reasons, every burning pair, each group's budget left."""
    budgets = {r.label: _round(r.budget_remaining) for r in results}
    known = [b for b in budgets.values() if b is not None]
    return {
        "ok": verdict.passed,
        "outcome": verdict.outcome,
        "severity": severity,
        "at": round(time.time(), 3),
        "reasons": list(verdict.reasons),
        "burning": [burn_figures(r, p) for r in results for p in r.pairs if p.outcome == "fail"],
        "budget_remaining": budgets,
        "lowest_budget_remaining": min(known) if known else None,
        "slos": [{"slo": r.label, "outcome": r.outcome, "sli_now": _round(r.sli_now),
                  "fastest_burn_rate": _round(_fastest(r)), "budget_remaining": _round(r.budget_remaining)}
                 for r in results],
    }


def slo_gate(slo_paths: str | list[str], severity: str = "page", prometheus_url: str | None = None,
             home: str | None = None, on_inconclusive: str = "fail") -> dict[str, Any]:
    """The SLO gate's verdict on `slo_paths` (files or folders; $OPENBELL_CHAOS_SLO overrides them) at
    `severity` (page: the fast windows; ticket: all). `ok` when nothing burns beyond its threshold; no data is
    inconclusive, which is not ok unless `on_inconclusive` is "pass". Prometheus: `prometheus_url`, else
    $OPENBELL_PROMETHEUS_URL, else the sandbox's."""
    from openbell.slo.loader import load_slos

    if severity not in ("page", "ticket"):
        raise SpecError("slo_gate", "severity", f"expected page or ticket, got {severity!r}")
    if on_inconclusive not in ("fail", "pass"):
        raise SpecError("slo_gate", "on_inconclusive", f"expected fail or pass, got {on_inconclusive!r}")
    slos = load_slos(target.slo_paths(slo_paths))
    url = platform.prometheus_url(prometheus_url, home)
    verdict, results = evaluate_gate(slos, severity, url)
    summary = summarize(verdict, results, severity)
    if verdict.outcome == "inconclusive" and on_inconclusive == "pass":
        summary["ok"] = True
    summary["prometheus"] = url
    return summary


def burn_rate(slo: str, window: str = "5m", slo_paths: str | list[str] | None = None,
              prometheus_url: str | None = None, home: str | None = None, max_burn_rate: float | None = None,
              min_budget_remaining: float | None = None) -> dict[str, Any]:
    """The burn rate of the SLO named `slo` over `window` (its error ratio / its error budget; the worst group)
    and the budget left over its period. `ok` when there is data and it is within `max_burn_rate` and
    `min_budget_remaining` (each checked only when given)."""
    from openbell.durations import parse_duration_s
    from openbell.metrics.prometheus import PrometheusClient, QueryError, QueryTimeout
    from openbell.slo.burn import budget_remaining, is_number
    from openbell.slo.loader import load_slos
    from openbell.slo.promql import error_ratio

    try:
        window_s = parse_duration_s(window)
    except ValueError as exc:
        raise SpecError("burn_rate", "window", str(exc)) from None
    found = [s for s in load_slos(target.slo_paths(slo_paths or ["slo"])) if s.name == slo]
    if not found:
        raise SpecError("burn_rate", "slo", f"no SLO named {slo!r} in {slo_paths or 'slo'}")
    spec = found[0]
    url = platform.prometheus_url(prometheus_url, home)
    error: str | None = None
    with PrometheusClient(url, timeout_s=5.0) as client:
        try:
            ratios = client.query(error_ratio(spec, window_s))
            periods = client.query(error_ratio(spec, spec.period_s))
        except (QueryError, QueryTimeout) as exc:
            ratios, periods, error = [], [], str(exc)
    groups = {_label(s.labels, spec.group_by): s.value / spec.error_budget for s in ratios if is_number(s.value)}
    budgets = [budget_remaining(s.value, spec.error_budget) for s in periods if is_number(s.value)]
    worst = max(groups.values()) if groups else None
    lowest = min(budgets) if budgets else None
    good = worst is not None
    if good and max_burn_rate is not None and worst is not None:
        good = worst <= max_burn_rate
    if good and min_budget_remaining is not None:
        good = lowest is not None and lowest >= min_budget_remaining
    return {"ok": good, "slo": f"{spec.service}/{spec.name}", "window_s": window_s, "burn_rate": _round(worst),
            "groups": {k: _round(v) for k, v in groups.items()}, "budget_remaining": _round(lowest),
            "max_burn_rate": max_burn_rate, "min_budget_remaining": min_budget_remaining, "error": error}


# --- sandbox health ----------------------------------------------------------------------------------------


def component_healthy(component: str = "all", home: str | None = None, within_s: float = 0.0) -> dict[str, Any]:
    """Whether a sandbox component (or "all" of them, as `sandbox status` judges) runs and answers its real
    health endpoint; with `within_s`, waits up to that long for it to become healthy (HAProxy re-admits a
    restarted gateway after its next check, Kafka elects leaders after a restart)."""
    sandbox = Sandbox(home)
    started = time.monotonic()
    while True:
        rows = sandbox.health(component)
        healthy = all(running and health.healthy for running, health in rows.values())
        waited = time.monotonic() - started
        if healthy or waited >= within_s:
            return {"ok": healthy, "component": component, "waited_s": round(waited, 3),
                    "unhealthy": {name: health.detail for name, (running, health) in rows.items()
                                  if not (running and health.healthy)}}
        time.sleep(0.5)


def gateways_consuming(home: str | None = None, within_s: float = 20.0, records: int = 50,
                       require: bool = False) -> dict[str, Any]:
    """Whether every stable gateway consumes from Kafka: each one's records counter grows by at least
    `records` within `within_s` (under latency; after a partition heals, without a restart). With `require`
    a gateway that does not is an error, so the probe can assert inside an experiment's method."""
    import httpx

    sandbox = Sandbox(home)
    gateways = sandbox.stable_gateways()

    def counts() -> dict[str, float]:
        out: dict[str, float] = {}
        for name in gateways:
            try:
                text = httpx.get(f"http://127.0.0.1:{sandbox.port(name)}/metrics", timeout=2.0).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if line.startswith("gateway_kafka_records_total"):
                    out[name] = float(line.rsplit(" ", 1)[-1])
        return out

    first = counts()
    started = time.monotonic()
    grown: dict[str, float] = {}
    while time.monotonic() - started < within_s:
        time.sleep(1.0)
        now = counts()
        grown = {name: now.get(name, 0.0) - first.get(name, 0.0) for name in gateways}
        if all(g >= records for g in grown.values()):
            break
    consuming = bool(grown) and all(g >= records for g in grown.values())
    if require and not consuming:
        raise ProbeFailed(f"gateways not consuming from Kafka within {within_s:g}s: records {grown}")
    return {"ok": consuming, "records": grown, "waited_s": round(time.monotonic() - started, 3)}


# --- Kafka -------------------------------------------------------------------------------------------------


def kafka_health(home: str | None = None, groups: list[str] | None = None, max_lag_records: int = 500,
                 within_s: float = 0.0, include_gateways: bool = True, timeout_s: float = 3.0,
                 max_lag_s: float | None = None) -> dict[str, Any]:
    """Kafka as its consumers see it: partitions without a leader, under-replicated partitions, the committed
    lag of each consumer group (default: the enricher's) and each gateway's own fetch lag (the gateways read
    without a group), in records, and the enricher's own lag in seconds (its worst partition). `ok` when every
    partition has a leader, every lag is within `max_lag_records` and, with `max_lag_s`, the enricher reports
    a lag within `max_lag_s` (no answer, or no partition assigned, is not ok). With `within_s`, polls until ok
    or that long has passed: "lag recovers under the bound within the stated time" is `within_s` and the bounds.

    Records alone cannot say "recovered" after an outage: just after a broker restart nothing new has been
    appended (the producers' backlog is still queued) and the group's commits are where they were, so the
    committed lag reads a few records while the consumer has not yet rejoined its group and is seconds
    behind. The enricher's time lag counts that (its partitions lost or unfetched), so `max_lag_s` is what
    makes the probe mean "the consumer is back at the head"."""
    ep = Sandbox(home).endpoints()
    started = time.monotonic()
    while True:
        snapshot = _kafka_snapshot(ep, groups if groups is not None else ["enricher"], include_gateways,
                                   timeout_s)
        lags = [g["lag_records"] for g in snapshot["groups"].values()] + list(snapshot["gateways"].values())
        lag_s = snapshot["enricher_lag_s"]
        good = (snapshot["error"] is None and not snapshot["leaderless"]
                and all(lag is not None and lag <= max_lag_records for lag in lags)
                and (max_lag_s is None or (lag_s is not None and lag_s <= max_lag_s)))
        waited = time.monotonic() - started
        if good or waited >= within_s:
            return {"ok": good, "waited_s": round(waited, 3), "max_lag_records": max_lag_records,
                    "max_lag_s": max_lag_s, **snapshot}
        time.sleep(0.5)


class ProbeFailed(Exception):
    """A probe used as evidence inside a method found the evidence missing (Chaos Toolkit records the
    activity as failed, and `openbell chaos run` fails the run: a fault that did not take proves nothing)."""


def consumer_lag_at_least(records: int, group: str = "enricher", home: str | None = None,
                          timeout_s: float = 3.0) -> dict[str, Any]:
    """Evidence that a fault took: the consumer group's committed lag is at least `records` (e.g. while the
    enricher is frozen). Raises ProbeFailed otherwise; returns the lag figures."""
    snapshot = _kafka_snapshot(Sandbox(home).endpoints(), [group], False, timeout_s)
    lag = (snapshot["groups"].get(group) or {}).get("lag_records")
    if snapshot["error"] or lag is None or lag < records:
        raise ProbeFailed(f"consumer group {group}: lag {lag} records, expected at least {records}"
                          + (f" ({snapshot['error']})" if snapshot["error"] else ""))
    return {"ok": True, "group": group, "lag_records": lag, "at_least": records,
            "partitions": snapshot["groups"][group]["partitions"]}


def _quiet_logger() -> logging.Logger:
    """librdkafka logs every refused connection while a broker is down: not the probe's output."""
    log = logging.getLogger("openbell.chaos.kafka")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def _kafka_snapshot(ep: dict[str, str], groups: list[str], include_gateways: bool,
                    timeout_s: float) -> dict[str, Any]:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._listoffsets import OffsetSpec  # re-exported by the package without saying so

    out: dict[str, Any] = {"leaderless": [], "under_replicated": [], "groups": {}, "gateways": {},
                           "enricher_lag_s": None, "error": None}
    config: dict[str, Any] = {"bootstrap.servers": ep["kafka_bootstrap"], "log_level": 0, "logger": _quiet_logger(),
                              "socket.connection.setup.timeout.ms": int(timeout_s * 1000)}
    admin = AdminClient(config)
    try:
        meta = admin.list_topics(timeout=timeout_s)
        for name, topic in sorted(meta.topics.items()):
            if name.startswith("__"):
                continue
            for p, part in sorted(topic.partitions.items()):
                if part.leader < 0:
                    out["leaderless"].append(f"{name}/{p}")
                if len(part.isrs) < len(part.replicas):
                    out["under_replicated"].append(f"{name}/{p}")
        for group in groups:
            committed = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s)[group].result(timeout=timeout_s)
            tps = [TopicPartition(tp.topic, tp.partition) for tp in committed.topic_partitions]
            if not tps:
                out["groups"][group] = {"lag_records": None, "partitions": {}}
                continue
            latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped in confluent-kafka's stubs
            highs = admin.list_offsets({tp: latest for tp in tps}, request_timeout=timeout_s)
            partitions = {}
            for tp in committed.topic_partitions:
                high = highs[TopicPartition(tp.topic, tp.partition)].result(timeout=timeout_s).offset
                partitions[f"{tp.topic}/{tp.partition}"] = max(0, high - max(0, tp.offset))
            out["groups"][group] = {"lag_records": sum(partitions.values()), "partitions": partitions}
    except Exception as exc:  # KafkaException, a future that timed out, a refused request: "cannot tell"
        out["error"] = f"Kafka at {ep['kafka_bootstrap']}: {type(exc).__name__}: {exc}"
    if include_gateways:
        for name, url in sorted(ep.items()):
            if name.startswith("gateway-") and name.endswith("_url"):
                out["gateways"][name[:-4]] = _metric(url, "gateway_kafka_lag_records", sum)
    lag_s = _metric(ep["enricher_url"], "enricher_consumer_lag_seconds", max, 'topic="ticks"')
    out["enricher_lag_s"] = None if lag_s is None else round(lag_s, 3)
    return out


def _metric(url: str, name: str, fold: Callable[[list[float]], float], having: str = "") -> float | None:
    """Fold the values of a service's /metrics series `name` whose labels contain `having` (e.g.
    'topic="ticks"'); None when the service cannot be asked or has no such series."""
    import httpx

    try:
        text = httpx.get(url + "/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + "{") and having in line.partition("}")[0]]
    return fold(values) if values else None


# --- data checks -------------------------------------------------------------------------------------------


def acked_ticks_present(home: str | None = None, topic: str = "ticks", timeout_s: float = 60.0) -> dict[str, Any]:
    """No acknowledged tick lost, checked from data: every seq the feed reports acknowledged by the broker
    (`/v1/acked`: per symbol, 1..n are durable) of its current session is read back from `topic`. Reads only
    the session's records (from the offset of its start time) up to the high watermarks taken after the
    acknowledgement snapshot, so every acknowledged record is below them."""
    import httpx
    from confluent_kafka import Consumer, TopicPartition

    ep = Sandbox(home).endpoints()
    answer = httpx.get(ep["feed_url"] + "/v1/acked", timeout=5.0).json()
    session, acked = int(answer["session"]), {str(k): int(v) for k, v in answer["acked"].items()}
    consumer = Consumer({"bootstrap.servers": ep["kafka_bootstrap"], "group.id": f"openbell-chaos-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": 0,
                         "logger": _quiet_logger(), "fetch.max.bytes": 16 << 20})
    seen: dict[str, set[int]] = {}
    started = time.monotonic()
    try:
        parts = sorted(consumer.list_topics(topic, timeout=10.0).topics[topic].partitions)
        since_ms = session // 1_000_000 - 1000
        starts = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in parts], timeout=10.0)
        highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10.0)[1] for p in parts}
        assign = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else highs[tp.partition])
                  for tp in starts]
        pending = {tp.partition for tp in assign if tp.offset < highs[tp.partition]}
        consumer.assign(assign)
        loads = _json_loads()
        while pending and time.monotonic() - started < timeout_s:
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                if message.error():
                    continue
                partition, offset = message.partition(), message.offset()
                if offset is not None and offset + 1 >= highs[partition]:
                    pending.discard(partition)
                record = loads(message.value() or b"{}")
                if record.get("session") == session:
                    seen.setdefault(str(record["symbol"]), set()).add(int(record["seq"]))
    finally:
        consumer.close()
    missing = {s: n - len(seen.get(s, set()) & set(range(1, n + 1))) for s, n in acked.items()}
    missing = {s: n for s, n in missing.items() if n}
    examples = {s: sorted(set(range(1, acked[s] + 1)) - seen.get(s, set()))[:5] for s in list(missing)[:5]}
    complete = not pending
    return {"ok": complete and not missing and sum(acked.values()) > 0, "topic": topic, "session": session,
            "acked": sum(acked.values()), "symbols": len(acked), "missing": sum(missing.values()),
            "missing_examples": examples, "read_complete": complete,
            "read_s": round(time.monotonic() - started, 3)}


def acked_orders_present(record: str, home: str | None = None, missing_ok: bool = True) -> dict[str, Any]:
    """No acknowledged order lost or duplicated, checked from the ledger's data: every order that
    `actions.submit_orders(record=...)` had acknowledged (201/200 with an id) is in PostgreSQL's `orders`
    table exactly once, with the id the client was given. Before the method of a first run nothing is
    recorded yet: ok when `missing_ok` (submit_orders removes the previous run's record when it starts, so
    the check after the method always reads this run's)."""
    import psycopg

    path = orders_file(record, home)
    if missing_ok and not path.exists():
        return {"ok": True, "acknowledged": 0, "note": f"no orders recorded yet at {path}"}
    try:
        sent = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(str(path), "", f"no orders recorded by submit_orders(record={record!r}): {exc}") from None
    acked: dict[str, int] = {str(k): int(v) for k, v in sent["acked"].items()}
    with psycopg.connect(Sandbox(home).endpoints()["postgres_dsn"], connect_timeout=5) as conn:
        rows = conn.execute("SELECT idempotency_key, id FROM orders WHERE idempotency_key = ANY(%s)",
                            (list(acked),)).fetchall()
    by_key: dict[str, list[int]] = {}
    for key, order_id in rows:
        by_key.setdefault(str(key), []).append(int(order_id))
    lost = [k for k in acked if k not in by_key]
    duplicated = [k for k, ids in by_key.items() if len(ids) > 1]
    changed = [k for k, ids in by_key.items() if ids and ids[0] != acked.get(k)]
    return {"ok": bool(acked) and not (lost or duplicated or changed or sent.get("errors")),
            "acknowledged": len(acked), "lost": len(lost), "duplicated": len(duplicated), "id_mismatch": len(changed),
            "client_errors": sent.get("errors", [])[:5], "retried": sent.get("retried", 0),
            "examples": (lost + duplicated + changed)[:5]}


def orders_file(record: str, home: str | None = None) -> Path:
    """Where `submit_orders(record=...)` keeps what it acknowledged (under the sandbox home)."""
    if not record or not record.replace("-", "").replace("_", "").isalnum():
        raise SpecError("record", record, "expected a name of letters, digits, - and _")
    return Sandbox(home).home / ORDERS_DIR / f"orders-{record}.json"


# --- helpers -----------------------------------------------------------------------------------------------


def _json_loads() -> Callable[[bytes], dict[str, Any]]:
    try:
        import orjson

        return orjson.loads
    except ImportError:
        return json.loads


def _fastest(result: GroupResult) -> float | None:
    rates = [p.short_burn_rate for p in result.pairs if p.short_burn_rate is not None]
    return max(rates) if rates else None


def _label(labels: dict[str, str], group_by: tuple[str, ...] | list[str]) -> str:
    return ",".join(f"{k}={labels.get(k, '')}" for k in group_by) or "all"


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)
