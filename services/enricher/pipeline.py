"""The hot path: consume ticks, enrich them per symbol, publish, and commit offsets only once published.

One thread runs the Kafka consumer and producer (blocking C clients) so the asyncio HTTP loop stays free.
At-least-once end to end: each consumed record gets an in-flight entry in its partition's queue; the entry is
done when its enriched record is acknowledged by the broker (or when it needed no publish: a duplicate or an
invalid record). The committed offset of a partition only ever advances over a prefix of done entries, so a
crash replays and never loses. Rows go to ClickHouse only after their publish is acknowledged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # the package re-exports it without saying so
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.kafka_errors import error_callback
from services.enricher.store import Writer

POLL_TIMEOUT_S = 0.005  # idle wait; also bounds how late delivery reports are served
BATCH_MAX = 1000  # records drained per loop once one has arrived (no waiting for a batch to fill)
COMMIT_INTERVAL_S = 0.1
LAG_INTERVAL_S = 0.1  # the lag gauge is refreshed this often (it reports the worst lag of the interval)
ADMIN_REBUILD_S = 5.0
WATERMARK_WAIT_S = 0.25  # a slower answer is not an outage: the sample goes without it (see BLIND_AFTER_S)
BLIND_AFTER_S = 1.0  # no high watermark and no record for this long: count the time as lag (an outage)
LAG_BOUNDS_S = (0.05,)  # lag bounds whose time over is counted (the lag SLO's bound: slo/kafka-consumer-lag.yaml)
FLUSH_TIMEOUT_S = 10.0
DELIVERY_TIMEOUT_MS = 300_000
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

log = logging.getLogger("enricher.pipeline")
LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped in confluent-kafka's stubs


class Metrics:
    """The enricher's pipeline series, each bound to the service's `version` label."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.version = version

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, ["version"], registry=registry).labels(version)

        self.consumed = counter("enricher_records_consumed", "tick records consumed")
        self.published = counter("enricher_records_published", "enriched records acknowledged by the broker")
        self.duplicates = counter("enricher_duplicates_dropped", "ticks dropped: seq not above the last seen")
        self.invalid = counter("enricher_records_invalid", "tick records that are not valid JSON ticks")
        self.failed = counter("enricher_publish_failed", "enriched records whose delivery failed")
        self.ch_rows = counter("enricher_clickhouse_rows", "rows inserted into ClickHouse")
        self.ch_errors = counter("enricher_clickhouse_errors", "failed ClickHouse inserts (retried)")
        self.ch_insert = Histogram("enricher_clickhouse_insert_seconds", "ClickHouse batch insert duration",
                                   ["version"], buckets=LATENCY_BUCKETS_S, registry=registry).labels(version)
        self.processing = Histogram("enricher_processing_seconds", "consume -> publish acknowledged",
                                    ["version"], buckets=LATENCY_BUCKETS_S, registry=registry).labels(version)
        self.lag = Gauge("enricher_consumer_lag_seconds",
                         "worst consumer lag over the last 0.1 s: age of the oldest tick not yet consumed, "
                         "0 at the high watermark", ["topic", "partition", "version"], registry=registry)
        # The lag SLO's counters: seconds the consumer was behind by more than a bound (worst partition, exact from
        # the consumed records' timestamps, see `TimeOverBound`) and seconds it ran with partitions assigned.
        # Counters, so a scrape that misses a moment (or the whole process, stopped) loses none of it.
        self.lag_over = Counter("enricher_consumer_lag_over_bound_seconds",
                                "seconds the worst partition's lag exceeded `bound` (counted as records are "
                                "consumed)", ["topic", "bound", "version"], registry=registry)
        self.lag_observed = Counter("enricher_consumer_lag_observed_seconds",
                                    "seconds the consumer has run (the lag SLO's total)",
                                    ["topic", "version"], registry=registry)
        self.consume_latency = Histogram("enricher_consume_latency_seconds",
                                         "tick age when consumed: consume time - the record's timestamp",
                                         ["version"], buckets=LATENCY_BUCKETS_S, registry=registry).labels(version)


@dataclass(slots=True)
class SymbolState:
    """Per-symbol session state: dedup mark, VWAP sums and the moving-average window."""

    session: int = 0  # the feed session (its start, Unix ns) the seq counts in
    last_seq: int = 0
    notional: float = 0.0  # sum(last * size) since the session started, currency units
    volume: int = 0  # sum(size), shares
    window: deque[float] = field(default_factory=deque)


@dataclass(slots=True)
class Inflight:
    """A consumed record: done once its enriched record is acknowledged (or it needed no publish)."""

    offset: int
    consumed_at: float  # perf_counter seconds
    done: bool = False


@dataclass
class PartitionState:
    """What the pipeline knows about one assigned input partition."""

    assigned_at: float  # time.time() seconds
    inflight: deque[Inflight] = field(default_factory=deque)
    next_offset: int | None = None  # position after the last consumed record
    start_offset: int | None = None  # the group's committed offset at assignment (set by the lag thread)
    lost: bool = False  # taken away without a handoff (we fell out of the group); still reported as lag
    last_record_s: float | None = None  # Kafka timestamp of the last consumed record, Unix seconds
    # Worst age of a record at the moment it was consumed, since the lag thread last took it (pipeline thread
    # writes, lag thread swaps it for 0: a float store is atomic under the GIL).
    consumed_lag_s: float = 0.0
    consumed_at: float = 0.0  # time.time() of the last consumed record
    # Lag thread only: the last high watermark answer, and since when the first unconsumed offset is known
    # to exist (its lag is at least the time since then).
    high: int | None = None
    high_at: float | None = None
    pending_offset: int | None = None
    pending_since: float = 0.0
    current_at: float = 0.0  # when the position was last seen at the high watermark


def kafka_logger() -> logging.Logger:
    """Route librdkafka's own log lines through Python logging."""
    return logging.getLogger("enricher.kafka")


class Pipeline:
    """Consumes `in_topic`, publishes to `out_topic`, feeds the ClickHouse writer; runs in its own thread."""

    def __init__(self, bootstrap: str, in_topic: str, out_topic: str, group: str, ma_window: int,
                 writer: Writer, metrics: Metrics) -> None:
        self.in_topic, self.out_topic, self.group, self.ma_window = in_topic, out_topic, group, ma_window
        self.writer, self.m = writer, metrics
        self.symbols: dict[str, SymbolState] = {}
        self.partitions: dict[int, PartitionState] = {}
        self.failed: str | None = None  # set when a publish failed for good: the process must restart
        self._stop = threading.Event()
        self._last_watermark_log = 0.0
        # librdkafka logs every failed reconnect; error_cb reports outages (rate-limited) instead.
        common: dict[str, Any] = {"bootstrap.servers": bootstrap, "log_level": 2, "reconnect.backoff.ms": 100,
                  "reconnect.backoff.max.ms": 1000, "socket.keepalive.enable": True,
                  "logger": kafka_logger(),
                  "error_cb": error_callback(log, self._on_fatal)}
        self.consumer = Consumer({
            **common,
            "group.id": group,
            "client.id": "openbell-enricher",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # a new group starts from the beginning: nothing produced is skipped
            "session.timeout.ms": 6000,  # a crashed instance's partitions move within seconds
            "heartbeat.interval.ms": 1500,
            # A long poll: the broker answers as soon as a tick lands (the feed appends a pace's ticks at
            # once, so one answer per append), else after 100 ms. No tick waits for a timer here.
            "fetch.wait.max.ms": 100,
            "fetch.min.bytes": 1,
        })
        self.producer = Producer({
            **common,
            "client.id": "openbell-enricher",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,  # a fetch's records are produced within a millisecond: one request for them
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            "partitioner": "murmur2_random",
        })
        # This process speaks for the time since it started: a backlog older than that (a restart of a sandbox
        # left down for hours, a group reset to an old offset) counts from now on, not for hours nobody observed,
        # so the time over the bound never exceeds the time observed.
        started = time.time()
        self._over = [(TimeOverBound(b, covered_to=started),
                       metrics.lag_over.labels(in_topic, f"{b:g}", metrics.version)) for b in LAG_BOUNDS_S]
        self._observed = metrics.lag_observed.labels(in_topic, metrics.version)
        # Per input partition, the offset after the last record this process consumed, kept across rebalances:
        # a record consumed again (replayed from an older committed offset after the group moved partitions)
        # was not waiting to be consumed, so it adds nothing to the time over the bound. Pipeline thread only.
        self._consumed_to: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, name="enricher-pipeline", daemon=True)
        self._lag_thread = threading.Thread(target=self._lag_loop, name="enricher-lag", daemon=True)
        self._lag_stop = threading.Event()
        self._admin_config = {k: v for k, v in common.items() if k != "error_cb"}
        self._admin = AdminClient(self._admin_config)  # watermarks and committed offsets, lag thread only
        self._admin_built = time.monotonic()

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe and start the pipeline and lag threads."""
        self.consumer.subscribe([self.in_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        self._thread.start()
        self._lag_thread.start()

    def stop(self, timeout: float) -> None:
        """Stop consuming, flush the producer, commit what was published, leave the group (bounded)."""
        self._stop.set()
        self._lag_stop.set()
        self._lag_thread.join(timeout=2)
        self._thread.join(timeout)

    @property
    def assigned(self) -> bool:
        """True once the group gave this instance at least one partition."""
        return bool(self.partitions)

    @property
    def stopped(self) -> bool:
        """True when the pipeline thread has exited (after stop, or after a fatal publish failure)."""
        return self._thread.ident is not None and not self._thread.is_alive()

    # --- Kafka callbacks (run on the pipeline thread, inside poll/flush) ----------------------------------------

    def _on_fatal(self, description: str) -> None:
        self.failed = description

    def _on_assign(self, _: Consumer, tps: list[TopicPartition]) -> None:
        now = time.time()
        assigned = {tp.partition for tp in tps}
        # Back in the group: lost partitions that went elsewhere stop being ours to report.
        self._forget([TopicPartition(self.in_topic, p) for p, part in self.partitions.items()
                      if part.lost and p not in assigned])
        for p in assigned:
            part = self.partitions.get(p)
            if part is None:
                self.partitions[p] = PartitionState(assigned_at=now)
            elif part.lost:
                part.lost = False  # consumption restarts from the committed offset: a fresh in-flight queue
                part.inflight.clear()
        log.info("assigned %s", sorted(assigned))

    def _on_revoke(self, _: Consumer, tps: list[TopicPartition]) -> None:
        # Hand partitions back with everything published and committed, so the next owner replays nothing.
        self.producer.flush(FLUSH_TIMEOUT_S)
        try:
            self._commit(asynchronous=False)
        except KafkaException as exc:  # broker away: the next owner replays from the last commit instead
            log.warning("commit on revoke failed: %s", exc)
        self._forget(tps)

    def _on_lost(self, _: Consumer, tps: list[TopicPartition]) -> None:
        # Usually the broker or coordinator is unreachable. Committing would fail (the next owner replays from
        # the last commit); keep reporting the lag, which is growing, until the group assigns again.
        for tp in tps:
            part = self.partitions.get(tp.partition)
            if part is not None:
                part.lost = True
        log.warning("lost partitions %s", sorted(tp.partition for tp in tps))

    def _forget(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.partitions.pop(tp.partition, None)
            with contextlib.suppress(KeyError):  # no lag sample was recorded yet
                self.m.lag.remove(self.in_topic, str(tp.partition), self.m.version)
        if tps:
            log.info("revoked %s", sorted(tp.partition for tp in tps))

    def _on_delivery(self, entry: Inflight, value: bytes, err: KafkaError | None, _: Message) -> None:
        if err is not None:
            self.m.failed.inc()
            # The offset of this record is never committed; stop and restart so it is replayed.
            self.failed = f"publish failed: {err}"
            log.critical(self.failed)
            return
        entry.done = True
        self.m.published.inc()
        self.m.processing.observe(time.perf_counter() - entry.consumed_at)
        self.writer.add(value)

    # --- the loop -----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        consumer, producer = self.consumer, self.producer
        next_commit = time.monotonic() + COMMIT_INTERVAL_S
        try:
            while not self._stop.is_set() and self.failed is None:
                first = consumer.poll(POLL_TIMEOUT_S)
                if first is not None:
                    batch = [first, *consumer.consume(BATCH_MAX, 0)]
                    now = time.time()
                    for msg in batch:
                        self._handle(msg, now)
                    self.m.consumed.inc(len(batch))
                producer.poll(0)
                if time.monotonic() >= next_commit:
                    self._commit(asynchronous=True)
                    next_commit = time.monotonic() + COMMIT_INTERVAL_S
        except Exception as exc:
            self.failed = f"pipeline crashed: {exc!r}"
            log.exception("pipeline crashed")
        finally:
            left = producer.flush(FLUSH_TIMEOUT_S)
            try:
                self._commit(asynchronous=False)
            except KafkaException as exc:
                log.warning("final commit failed: %s", exc)
            consumer.close()
            log.info("pipeline stopped (%d records unacknowledged)", left)

    def _handle(self, msg: Message, now: float) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume: %s", err)
            return
        partition, offset = msg.partition(), msg.offset()
        part = self.partitions.get(partition) if partition is not None else None
        if partition is None or part is None or part.lost or offset is None:  # fetched as its partition went
            return
        entry = Inflight(offset, time.perf_counter())
        part.inflight.append(entry)
        part.next_offset = offset + 1
        _, ts_ms = msg.timestamp()
        ts = ts_ms / 1000 if ts_ms > 0 else now
        part.last_record_s = ts
        # How far behind the consumer was for this record: exact, from the tick's own timestamp.
        age = max(0.0, now - ts)
        self.m.consume_latency.observe(age)
        if age > part.consumed_lag_s:
            part.consumed_lag_s = age
        if offset >= self._consumed_to.get(partition, 0):
            self._consumed_to[partition] = offset + 1
            for over, counter in self._over:
                if added := over.consumed(ts, now):
                    counter.inc(added)
        part.consumed_at = now
        value = self._enrich(msg.value())
        if value is None:
            entry.done = True
            return
        while True:
            try:
                self.producer.produce(self.out_topic, key=msg.key(), value=value,
                                      on_delivery=functools.partial(self._on_delivery, entry, value))
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full (broker down): wait for deliveries, never drop

    def _enrich(self, raw: bytes | None) -> bytes | None:
        """The enriched record for a tick, or None for a duplicate or an invalid record."""
        try:
            tick = orjson.loads(raw or b"")
            symbol, seq = tick["symbol"], tick["seq"]
            bid, ask, last, size = float(tick["bid"]), float(tick["ask"]), float(tick["last"]), int(tick["size"])
            if not isinstance(symbol, str) or not isinstance(seq, int) or size < 0 or not math.isfinite(last):
                raise ValueError("bad field types")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.m.invalid.inc()
            return None
        state = self.symbols.get(symbol)
        if state is None:
            state = self.symbols[symbol] = SymbolState()
        session = tick.get("session", 0)
        if not isinstance(session, int) or session < state.session:
            self.m.duplicates.inc()  # a record of an earlier feed session, replayed
            return None
        if session > state.session:
            # A restarted feed opens a new session: seq starts again at 1 and so do VWAP and the average.
            self.symbols[symbol] = state = SymbolState(session=session)
        if seq <= state.last_seq:
            self.m.duplicates.inc()
            return None
        state.last_seq = seq
        state.notional += last * size
        state.volume += size
        window = state.window
        window.append(last)
        if len(window) > self.ma_window:
            window.popleft()
        return orjson.dumps({
            "symbol": symbol, "seq": seq, "session": session,
            "exchange": tick.get("exchange", ""), "ts_ns": tick.get("ts_ns", 0),
            "bid": bid, "ask": ask, "last": last, "size": size,
            "vwap": round(state.notional / state.volume, 6) if state.volume else last,
            "spread": round(ask - bid, 6),
            "ma": round(sum(window) / len(window), 6),
            "enriched_ns": time.time_ns(),
        })

    def _commit(self, asynchronous: bool) -> None:
        """Commit, per partition, the offset after the longest prefix of done records."""
        offsets = []
        for p, part in self.partitions.items():
            if part.lost:
                continue
            q, done_to = part.inflight, None
            while q and q[0].done:
                done_to = q.popleft().offset
            if done_to is not None:
                offsets.append(TopicPartition(self.in_topic, p, done_to + 1))
        if offsets and asynchronous:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        elif offsets:
            self.consumer.commit(offsets=offsets, asynchronous=False)

    # --- lag ----------------------------------------------------------------------------------------------------

    def _lag_loop(self) -> None:
        """Every LAG_INTERVAL_S set each partition's lag gauge to `sample_lag` (the worst lag of the interval).

        High watermarks come from an admin ListOffsets request whose wait is bounded here (the consumer's own
        watermark query can hang past its timeout while a broker restarts). A sample without an answer is
        not counted as behind at once (a slow answer on a busy machine is not an outage); one that lasts
        BLIND_AFTER_S with no record consumed is, so an outage shows as a growing lag, not a frozen gauge.
        """
        last = time.monotonic()
        next_at = last + LAG_INTERVAL_S
        while not self._lag_stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + LAG_INTERVAL_S, time.monotonic())
            # The time since the last round (all of it after a SIGSTOP) counts as observed, from the start like
            # the time over the bound: that arrives with the records consumed on resuming.
            clock = time.monotonic()
            self._observed.inc(clock - last)
            last = clock
            parts = list(self.partitions.items())
            if not parts:
                continue
            highs: dict[int, int] = {}
            try:
                deadline = time.monotonic() + WATERMARK_WAIT_S
                futures = self._admin.list_offsets(
                    {TopicPartition(self.in_topic, p): LATEST for p, _ in parts}, request_timeout=1.0)
                # Until a partition yields a record its position is unknown: start from the group's commit.
                unstarted = [TopicPartition(self.in_topic, p) for p, part in parts
                             if part.next_offset is None and part.start_offset is None]
                committed = self._admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(self.group, unstarted)], request_timeout=1.0
                )[self.group] if unstarted else None
                for tp, future in futures.items():
                    highs[tp.partition] = future.result(timeout=max(0.0, deadline - time.monotonic())).offset
                if committed is not None:
                    for tp in committed.result(timeout=max(0.0, deadline - time.monotonic())).topic_partitions:
                        part = self.partitions.get(tp.partition)
                        if part is not None:
                            part.start_offset = max(0, tp.offset)  # no commit yet: from the beginning
            except (KafkaException, FutureTimeout, ValueError) as exc:
                # Partitions without an answer go without one this time. After a broker restart librdkafka's
                # admin client can keep failing with FENCED_LEADER_EPOCH (stale metadata it never refreshes):
                # rebuild it.
                if isinstance(exc, KafkaException) and time.monotonic() - self._admin_built > ADMIN_REBUILD_S:
                    self._admin = AdminClient(self._admin_config)
                    self._admin_built = time.monotonic()
                if time.monotonic() - self._last_watermark_log > 30:
                    self._last_watermark_log = time.monotonic()
                    log.warning("high watermarks unknown: %r", exc)
            now = time.time()
            for p, part in parts:
                position = part.next_offset if part.next_offset is not None else part.start_offset
                lag = sample_lag(part, highs.get(p), position, now)
                if self.partitions.get(p) is not part:
                    continue  # revoked meanwhile: do not bring its series back
                self.m.lag.labels(self.in_topic, str(p), self.m.version).set(lag)


@dataclass
class TimeOverBound:
    """Seconds the consumer's lag exceeded `bound_s`, exact from the records it consumes (one consuming thread).

    A record stamped `ts` and consumed at `now` was not yet consumed in between, so the lag (the age of the
    oldest unconsumed record) exceeded the bound over (ts + bound, now). The time over the bound is the union
    of those intervals over every consumed record of every partition (the worst partition counts), and since
    `now` never goes back, each record adds what its interval reaches past the union so far. The lag of a
    stopped consumer, a broker outage or a restart is counted when the backlog is consumed, however long the
    stop: no sampling, and no scrape, can miss it.
    """

    bound_s: float
    covered_to: float = 0.0  # the union's right end so far (Unix seconds); start it at when observing began

    def consumed(self, ts: float, now: float) -> float:
        """The seconds over the bound this record adds (0 for a record younger than the bound)."""
        start = ts + self.bound_s
        if now <= start:
            return 0.0
        added = max(0.0, now - max(start, self.covered_to))
        self.covered_to = max(self.covered_to, now)
        return added


def sample_lag(part: PartitionState, high: int | None, position: int | None, now: float,
               blind_after_s: float = BLIND_AFTER_S) -> float:
    """The partition's lag in seconds for the interval ending at `now` (Unix seconds); updates `part`.

    The lag at an instant is the age of the oldest record not yet consumed (0 when the consumer is at the
    high watermark). Two bounds are combined, the worse counting:
    - every record consumed in the interval: its age when consumed (exact, `part.consumed_lag_s`);
    - the first record not yet consumed: it is known to exist since the first high watermark answer that
      was past it, so its lag is at least the time since then (0 at the answer that first shows it).
    Comparing the position with the high watermark alone and reporting the last consumed record's age
    (what this gauge did first) calls the gap between two ticks "lag": a partition with a tick every
    60 ms read 60 ms behind whenever a new tick had landed and not yet been fetched, 10-20% of the time.
    Without an answer (broker away, partitions lost) the lag is unknown: it counts as the time since the
    partition was last known current, once that exceeds `blind_after_s` (or at once for lost partitions).
    """
    consumed, part.consumed_lag_s = part.consumed_lag_s, 0.0
    if not part.lost and high is not None and position is not None:
        if position >= high:
            part.pending_offset = None
            part.current_at = now
            pending = 0.0
        else:
            if part.pending_offset != position:
                existed = part.high is not None and part.high > position and part.high_at is not None
                part.pending_offset = position
                part.pending_since = part.high_at if existed and part.high_at is not None else now
            pending = now - part.pending_since
        part.high, part.high_at = high, now
        return max(consumed, pending)
    unknown = now - max(part.current_at, part.last_record_s or 0.0, part.assigned_at)
    return max(consumed, unknown if part.lost or unknown > blind_after_s else 0.0)
