"""The ledger's own Prometheus series (names and labels as slo/README.md reads them)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class LedgerMetrics:
    """Order-write outcomes, outbox backlog and throughput, free pool connections; all labelled `version`."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        writes = Counter(
            "ledger_order_writes_total", "Order submissions by outcome: ok (committed or replayed), "
            "error (the ledger's or PostgreSQL's fault), rejected (the client's fault)",
            ["result", "version"], registry=registry,
        )
        self.write_ok = writes.labels("ok", version)
        self.write_error = writes.labels("error", version)
        self.write_rejected = writes.labels("rejected", version)
        self.outbox_pending = Gauge(
            "ledger_outbox_pending", "Outbox rows not yet acknowledged by Kafka (as of the last relay pass)",
            ["version"], registry=registry,
        ).labels(version)
        self.outbox_published = Counter(
            "ledger_outbox_published", "Outbox rows acknowledged by Kafka and marked published",
            ["version"], registry=registry,
        ).labels(version)
        self._pool_available = Gauge(
            "ledger_db_pool_available", "Idle PostgreSQL connections in the pool", ["version"], registry=registry,
        ).labels(version)

    def count_write(self, status: int) -> None:
        """Classify one POST /v1/orders by its HTTP status: 2xx ok, 4xx rejected, anything else error."""
        if 200 <= status < 300:
            self.write_ok.inc()
        elif 400 <= status < 500:
            self.write_rejected.inc()
        else:
            self.write_error.inc()

    def watch_pool(self, available: Callable[[], float]) -> None:
        """Read the pool's idle-connection count at scrape time."""
        self._pool_available.set_function(available)
