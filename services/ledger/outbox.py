"""The transactional outbox relay: committed orders from PostgreSQL to Kafka, at least once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from services.ledger.deadlines import within
from services.ledger.metrics import LedgerMetrics
from services.ledger.orders import Pool

log = logging.getLogger("ledger.outbox")

BATCH = 500
# librdkafka gives up on a record after this long, so every pass ends with a verdict (acknowledged or
# failed) for each record it produced and never leaves one queued to be sent again by the next pass.
MESSAGE_TIMEOUT_S = 5.0
_FLUSH_MARGIN_S = 2.0
_RETENTION = "1 day"  # published rows are kept this long for forensics, then deleted
_CLEANUP_EVERY_S = 60.0
_MAX_BACKOFF_S = 2.0

# SKIP LOCKED lets several ledgers (stable and canary) relay side by side, each claiming different rows;
# the row locks hold until the pass commits its `published_at` marks.
_CLAIM = """SELECT id, topic, key, payload::text FROM outbox WHERE published_at IS NULL
            ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"""
_MARK = "UPDATE outbox SET published_at = now() WHERE id = ANY(%s)"
_PENDING = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
_CLEANUP = f"""DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
               WHERE published_at < now() - interval '{_RETENTION}' LIMIT 10000)"""


class OutboxRelay:
    """Every `interval` seconds, claims unpublished outbox rows, produces them and marks the acknowledged ones."""

    def __init__(self, pool: Pool, kafka: str, metrics: LedgerMetrics, interval: float,
                 schema_ready: asyncio.Event) -> None:
        self.pool = pool
        self.metrics = metrics
        self.interval = interval
        self.schema_ready = schema_ready
        self._config: dict[str, Any] = {
            "bootstrap.servers": kafka,
            "enable.idempotence": True,  # no duplicates from librdkafka's own retries
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": int(MESSAGE_TIMEOUT_S * 1000),
            "client.id": "openbell-ledger",
            "log.connection.close": False,
            "logger": logging.getLogger("ledger.kafka"),  # librdkafka's log lines in the service's format
            "error_cb": self._on_error,
        }
        self._producer: Producer | None = None
        self._fatal = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_cleanup = time.monotonic()

    def start(self) -> None:
        """Start the background loop."""
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, timeout: float) -> None:
        """Finish the pass under way, run a last one, flush the producer; all within about `timeout` seconds."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        if self._task is not None and not self.schema_ready.is_set():
            self._task.cancel()  # still waiting for the schema: there is nothing to relay
            return
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                self._task.cancel()
                log.warning("outbox relay pass did not finish in %.1f s", timeout)
                return
        if self.schema_ready.is_set() and deadline - time.monotonic() > MESSAGE_TIMEOUT_S:
            try:
                await within(deadline - time.monotonic(), self.relay_once())
            except Exception as exc:  # the rows stay unpublished: the next ledger to start relays them
                log.warning("last outbox pass failed: %s", exc)

    async def _run(self) -> None:
        await self.schema_ready.wait()
        failures = 0
        while not self._stop.is_set():
            claimed = 0
            try:
                claimed = await self.relay_once()
                failures = 0
            except Exception as exc:  # PostgreSQL or Kafka away: the rows wait, we retry with backoff
                failures += 1
                if failures == 1 or failures % 50 == 0:
                    log.warning("outbox pass failed (%d in a row): %s", failures, exc)
            if claimed >= BATCH:
                continue  # a backlog: drain it without waiting
            delay = min(self.interval * 2 ** min(failures, 10), max(_MAX_BACKOFF_S, self.interval))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def relay_once(self) -> int:
        """One pass: claim up to BATCH rows, produce them, mark those Kafka acknowledged. Returns rows claimed."""
        delivered: list[int] = []
        async with self.pool.connection() as conn:
            async with conn.transaction():
                rows = await (await conn.execute(_CLAIM, (BATCH,))).fetchall()
                if rows:
                    delivered = await asyncio.to_thread(self._deliver, rows)
                    if delivered:
                        await conn.execute(_MARK, (delivered,))
            self.metrics.outbox_published.inc(len(delivered))  # committed: they will not be sent again
            row = await (await conn.execute(_PENDING)).fetchone()
            if time.monotonic() - self._last_cleanup > _CLEANUP_EVERY_S:
                self._last_cleanup = time.monotonic()
                await conn.execute(_CLEANUP)
        self.metrics.outbox_pending.set(row[0] if row else 0)
        if len(delivered) < len(rows):
            log.warning("outbox: %d of %d records not acknowledged by Kafka, retrying later",
                        len(rows) - len(delivered), len(rows))
        return len(rows)

    def _deliver(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Produce the rows and wait for their acknowledgements (blocking: runs in a worker thread)."""
        if self._producer is None or self._fatal:
            # An idempotent producer that hit a fatal error (e.g. a sequence gap) must be replaced.
            self._fatal = False
            self._producer = Producer(self._config)
        producer = self._producer
        acked: list[int] = []

        def on_delivery(row_id: int, err: KafkaError | None, _: Message) -> None:
            if err is None:
                acked.append(row_id)
            elif err.fatal():
                self._fatal = True

        for row_id, topic, key, payload in rows:
            while True:
                try:
                    producer.produce(topic, payload.encode(), key.encode(),
                                     on_delivery=functools.partial(on_delivery, row_id))
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
        producer.flush(MESSAGE_TIMEOUT_S + _FLUSH_MARGIN_S)
        return acked

    def _on_error(self, err: KafkaError) -> None:
        # Transient errors (a broker down) surface as unacknowledged records in the pass's warning.
        if err.fatal():
            self._fatal = True
            log.error("kafka producer fatal error, replacing the producer: %s", err)
        else:
            log.debug("kafka: %s", err)
