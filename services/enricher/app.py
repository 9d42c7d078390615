"""The enricher service: the pipeline thread, the ClickHouse writer and the analytics HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from prometheus_client import Histogram

from services.common.service import Service, base_parser, configure_logging
from services.enricher.pipeline import Metrics, Pipeline
from services.enricher.store import QUERIES, BadRequest, Store, Writer

ANALYTICS_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STOP_TIMEOUT_S = 15.0

log = logging.getLogger("enricher")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Common flags plus the enricher's own."""
    p = base_parser("Enricher: VWAP, spread, moving average per symbol -> Kafka and ClickHouse; analytics API.")
    p.add_argument("--in-topic", default="ticks")
    p.add_argument("--out-topic", default="enriched")
    p.add_argument("--group", default="enricher", help="Kafka consumer group")
    p.add_argument("--clickhouse-path", default="./enricher-clickhouse",
                   help="chdb data directory (persistent across restarts)")
    p.add_argument("--ma-window", type=int, default=20, help="moving average window, ticks")
    p.add_argument("--flush-interval", type=float, default=0.5, help="seconds between ClickHouse batch inserts")
    args = p.parse_args(argv)
    if not 1 <= args.ma_window <= 10_000:
        p.error("--ma-window must be between 1 and 10000")
    if not 0.01 <= args.flush_interval <= 60:
        p.error("--flush-interval must be between 0.01 and 60 seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the enricher until SIGTERM/SIGINT; exit 1 if a publish failed for good (restart replays it)."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    service = Service("enricher", args.service_version)
    service.instrument_http()
    metrics = Metrics(service.registry, service.version)
    query_seconds = Histogram("analytics_query_duration_seconds", "analytics queries served from ClickHouse",
                              ["query", "version"], buckets=ANALYTICS_BUCKETS_S, registry=service.registry)
    os.makedirs(args.clickhouse_path, exist_ok=True)
    store = Store(args.clickhouse_path)

    def inserted(rows: int, seconds: float) -> None:
        metrics.ch_rows.inc(rows)
        metrics.ch_insert.observe(seconds)

    writer = Writer(store, args.flush_interval, inserted, metrics.ch_errors.inc)
    pipeline = Pipeline(args.kafka, args.in_topic, args.out_topic, args.group, args.ma_window, writer, metrics)
    # One reader thread: analytics and readiness probes share the reader connection, one query at a time.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics")

    async def ready() -> str | None:
        if pipeline.failed:
            return pipeline.failed
        if not pipeline.assigned:
            return "no partitions assigned yet"
        try:
            ok = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(reader, store.ping), 2.0)
        except Exception as exc:
            return f"ClickHouse: {exc!r}"
        return None if ok else "ClickHouse did not answer SELECT 1"

    async def analytics(request: web.Request) -> web.Response:
        name = request.match_info["query"]
        query = QUERIES.get(name)
        if query is None:
            raise web.HTTPNotFound(text=f'{{"error": "no analytics query {name}"}}', content_type="application/json")
        params = dict(request.query)
        started = time.perf_counter()
        try:
            result: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(reader, query, store, params)
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except Exception as exc:
            query_seconds.labels(name, service.version).observe(time.perf_counter() - started)
            log.exception("analytics %s failed", name)
            return web.json_response({"error": f"query failed: {exc}"}, status=500)
        query_seconds.labels(name, service.version).observe(time.perf_counter() - started)
        return web.json_response(result)

    async def watch_failure() -> None:
        # A publish that failed for good cannot be retried in place: drain and exit so a restart replays it.
        while not pipeline.failed:
            await asyncio.sleep(0.5)
        log.critical("%s: shutting down for a restart", pipeline.failed)
        os.kill(os.getpid(), signal.SIGTERM)

    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        writer.start()
        pipeline.start()
        tasks.append(asyncio.create_task(watch_failure()))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.to_thread(pipeline.stop, STOP_TIMEOUT_S)
        await asyncio.to_thread(writer.stop, STOP_TIMEOUT_S)
        reader.shutdown(wait=True)
        store.close()
        log.info("stopped: %d symbols seen", len(pipeline.symbols))

    service.readiness.append(ready)
    service.on_stop.append(stop)
    service.app.router.add_get("/v1/analytics/{query}", analytics)
    host, port = args.listen
    asyncio.run(service.serve(host, port, start=start))
    return 1 if pipeline.failed else 0
