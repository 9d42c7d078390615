"""`python -m services.ledger`: the ledger service (REST orders -> PostgreSQL -> outbox -> Kafka `orders`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.common.service import Service, base_parser, configure_logging
from services.ledger.api import LedgerApi
from services.ledger.deadlines import within
from services.ledger.metrics import LedgerMetrics
from services.ledger.orders import OrderStore, Pool
from services.ledger.outbox import MESSAGE_TIMEOUT_S, OutboxRelay
from services.ledger.schema import migrate

log = logging.getLogger("ledger")

CONNECT_TIMEOUT_S = 2  # libpq's connect_timeout (whole seconds, at least 2)
POOL_WAIT_S = 2.0  # longest a request waits for a free connection before answering 503
# How long a pool slot keeps retrying a dead server before giving up; later requests grow the pool again
# at once, so recovery after a long outage does not wait out psycopg_pool's doubling backoff.
RECONNECT_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 1.0
DRAIN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0


def _positive(cast: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = cast(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    """The common flags plus the ledger's own."""
    p = base_parser("The ledger: idempotent orders into PostgreSQL, outbox relayed to Kafka.")
    p.add_argument("--dsn", required=True, help="PostgreSQL conninfo, postgresql://USER@HOST:PORT/DB")
    p.add_argument("--topic", default="orders", help="Kafka topic of committed orders")
    p.add_argument("--pool-size", type=_positive(int), default=8, help="PostgreSQL connections (fixed size pool)")
    p.add_argument("--relay-interval", type=_positive(float), default=0.1, help="seconds between outbox relay passes")
    return p


async def _migrate_until_done(pool: Pool, ready: asyncio.Event) -> None:
    """Migrate the schema, retrying every second while PostgreSQL is unreachable (runs until it succeeds)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            async with pool.connection() as conn:
                version = await migrate(conn)
            log.info("schema at version %d", version)
            ready.set()
            return
        except Exception as exc:
            if attempt == 1 or attempt % 30 == 0:
                log.warning("schema migration failed (attempt %d), retrying: %s", attempt, exc)
            await asyncio.sleep(1.0)


async def run(args: argparse.Namespace) -> None:
    """Serve until SIGTERM/SIGINT, then drain requests, relay once more and close the pool."""
    service = Service("ledger", args.service_version)
    service.instrument_http()
    metrics = LedgerMetrics(service.registry, args.service_version)
    pool: Pool = AsyncConnectionPool(
        args.dsn, min_size=args.pool_size, max_size=args.pool_size, open=False, name="ledger",
        timeout=POOL_WAIT_S, reconnect_timeout=RECONNECT_TIMEOUT_S,
        check=AsyncConnectionPool.check_connection,  # a connection killed by a restart is replaced, not handed out
        connection_class=AsyncConnection[Any],
        # Every write is one statement, hence its own transaction; multi-statement work opens one explicitly.
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": f"openbell-ledger-{args.service_version}"},
    )
    metrics.watch_pool(lambda: pool.get_stats().get("pool_available", 0))
    schema_ready = asyncio.Event()
    api = LedgerApi(service, OrderStore(pool, args.topic), metrics, schema_ready)
    relay = OutboxRelay(pool, args.kafka, metrics, args.relay_interval, schema_ready)
    tasks: list[asyncio.Task[None]] = []

    async def ready() -> str | None:
        if not schema_ready.is_set():
            return "schema not migrated yet (PostgreSQL unreachable?)"

        async def select_1() -> None:
            async with pool.connection(READY_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")

        try:
            await within(READY_TIMEOUT_S, select_1())
        except Exception as exc:
            return f"postgresql (SELECT 1): {exc or type(exc).__name__}"
        return None

    async def start() -> None:
        await pool.open(wait=False)
        tasks.append(asyncio.create_task(_migrate_until_done(pool, schema_ready), name="migrate"))
        relay.start()

    async def stop() -> None:
        if not await api.wait_idle(DRAIN_TIMEOUT_S):
            log.warning("requests still in flight after %.0f s, closing anyway", DRAIN_TIMEOUT_S)
        await relay.stop(MESSAGE_TIMEOUT_S + 5.0)
        for task in tasks:
            task.cancel()
        await pool.close(CLOSE_TIMEOUT_S)

    service.readiness.append(ready)
    service.on_stop.append(stop)
    host, port = args.listen
    await service.serve(host, port, start=start)


def main() -> None:
    """Entry point."""
    args = parser().parse_args()
    configure_logging(args.log_level)
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)  # one line per connection otherwise
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
