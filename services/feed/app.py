"""The feed service: a pacing thread producing ticks to Kafka, and its HTTP control API."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import threading
import time
from typing import Any

import orjson
from aiohttp import web
from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Counter, Gauge

from services.common.kafka_errors import ThrottledLog, error_callback
from services.common.service import Service, base_parser, configure_logging
from services.feed.schedule import MAX_MULTIPLIER, Schedule, number, parse_schedule
from services.feed.universe import Instrument, TickMaker, build_universe

# Ticks are made in batches every 10 ms, each stamped when made: the pace sets how often the broker is asked
# (one produce request per batch), not any tick's latency.
PACE_INTERVAL_S = 0.01
MAX_DEBT_S = 0.5  # never owe more than this many seconds of ticks: after a stall, slow down, don't burst
MAX_QUEUED = 500_000  # local producer queue; ~50 s of ticks at 10k/s buffers a broker restart
DELIVERY_TIMEOUT_MS = 300_000  # keep retrying a tick for 5 min before calling it failed
FLUSH_ON_STOP_S = 10.0

log = logging.getLogger("feed")


def producer_config(bootstrap: str) -> dict[str, Any]:
    """librdkafka settings: idempotent, fully acknowledged, low linger, patient through broker restarts."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "openbell-feed",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 1,  # a batch's ticks are produced within a millisecond: one request for them
        "message.timeout.ms": DELIVERY_TIMEOUT_MS,
        "queue.buffering.max.messages": MAX_QUEUED,
        "partitioner": "murmur2_random",  # Java-compatible keyed partitioning
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,  # default 10 s would stretch recovery after a broker restart
        "socket.keepalive.enable": True,
        "logger": logging.getLogger("feed.kafka"),  # librdkafka's lines through Python logging
        "log_level": 2,  # it logs every failed reconnect; error_cb reports outages (rate-limited) instead
    }


class Feed:
    """Owns the universe, the rate controls and the producing thread."""

    def __init__(self, args: argparse.Namespace, service: Service) -> None:
        self.topic: str = args.topic
        self.base_rate: float = args.rate
        self.universe: list[Instrument] = build_universe(args.symbols, args.zipf, args.seed)
        self.maker = TickMaker(self.universe, args.seed)
        self.keys = [ins.symbol.encode() for ins in self.universe]
        # Sequence numbers restart at 1 with every feed process: `session` (its start, Unix ns) tells a
        # consumer that seq 1 after seq 5000 is a new session, not a redelivery (as exchange feeds do).
        self.session = time.time_ns()
        # Indexed like the universe; written by the producing thread only (int stores are atomic under the GIL).
        self.produced = [0] * len(self.universe)
        self.acked = [0] * len(self.universe)
        self.multiplier = 1.0
        self.schedule: Schedule | None = None
        self.paused = False
        self.actual_rate = 0.0
        self.ready = False
        self.fatal: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed-producer", daemon=True)
        self._acked_pending = 0
        self._failed_pending = 0
        self._delivery_errors = ThrottledLog(log)
        self.producer = Producer({**producer_config(args.kafka),
                                  "error_cb": error_callback(log, self._on_fatal, "producer")})
        if args.schedule:
            self.schedule = parse_schedule(orjson.loads(args.schedule), time.monotonic())

        v = service.version
        reg = service.registry
        self.m_produced = Counter("feed_ticks_produced", "ticks handed to the producer", ["version"],
                                  registry=reg).labels(v)
        self.m_acked = Counter("feed_ticks_acked", "ticks acknowledged by the broker", ["version"],
                               registry=reg).labels(v)
        self.m_failed = Counter("feed_ticks_failed", "ticks whose delivery failed", ["version"],
                                registry=reg).labels(v)
        self.m_queue_full = Counter("feed_queue_full", "times the local producer queue was full (slowed down)",
                                    ["version"], registry=reg).labels(v)
        self.m_target = Gauge("feed_rate_target_per_second", "target ticks/s including the multiplier",
                              ["version"], registry=reg).labels(v)
        self.m_multiplier = Gauge("feed_rate_multiplier", "current rate multiplier", ["version"],
                                  registry=reg).labels(v)
        self.m_actual = Gauge("feed_rate_actual_per_second", "ticks/s produced over the last second",
                              ["version"], registry=reg).labels(v)

    # --- rate -------------------------------------------------------------------------------------------------

    def current_multiplier(self, now: float) -> float:
        """The multiplier in force at monotonic `now`; a finished schedule leaves its last value in place."""
        schedule = self.schedule
        if schedule is None:
            return self.multiplier
        value = schedule.multiplier(now)
        if schedule.finished(now):
            self.multiplier, self.schedule = schedule.steps[-1].multiplier, None
            return self.multiplier
        return self.multiplier if value is None else value

    def rate_view(self) -> dict[str, Any]:
        """JSON view of the rate controls (ticks/s)."""
        now = time.monotonic()
        m = self.current_multiplier(now)
        schedule = self.schedule
        return {"rate": self.base_rate, "multiplier": round(m, 6), "target_per_second": round(self.base_rate * m, 3),
                "actual_per_second": round(self.actual_rate, 1), "paused": self.paused,
                "schedule": schedule.describe(now) if schedule else None}

    # --- producing --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the producing thread."""
        self._thread.start()

    def stop(self) -> int:
        """Stop producing, flush for at most FLUSH_ON_STOP_S; return how many ticks were left unacknowledged."""
        self._stop.set()
        self._thread.join(timeout=5)
        left: int = self.producer.flush(FLUSH_ON_STOP_S)
        self._drain_counts()
        return left

    def _on_fatal(self, description: str) -> None:
        self.fatal = description

    def _on_delivery(self, index: int, seq: int, err: KafkaError | None, _: Message) -> None:
        if err is not None:
            self._failed_pending += 1
            self._delivery_errors(logging.ERROR, "tick %s #%d failed: %s", self.universe[index].symbol, seq, err)
            return
        self._acked_pending += 1
        # Acks within a partition arrive in order, so contiguity means 1..seq are durable; after a failure
        # the symbol's acked mark stays below the hole for good.
        if seq == self.acked[index] + 1:
            self.acked[index] = seq

    def _drain_counts(self) -> None:
        acked, self._acked_pending = self._acked_pending, 0
        failed, self._failed_pending = self._failed_pending, 0
        if acked:
            self.m_acked.inc(acked)
        if failed:
            self.m_failed.inc(failed)

    def _run(self) -> None:
        producer, maker, topic = self.producer, self.maker, self.topic
        pending: tuple[bytes, bytes, Any] | None = None  # a tick the full queue refused; sent before any new one
        credit = 0.0
        last = next_at = window_start = time.monotonic()
        window_count = 0
        while not self._stop.is_set():
            now = time.monotonic()
            multiplier = self.current_multiplier(now)
            target = self.base_rate * multiplier
            self.m_target.set(target)
            self.m_multiplier.set(multiplier)
            # Owe at most MAX_DEBT_S of ticks (at least one, so slow rates still tick; none at rate 0).
            cap = max(1.0, target * MAX_DEBT_S) if target > 0 else 0.0
            credit = 0.0 if self.paused else min(credit + target * (now - last), cap)
            last = now
            sent = 0
            while credit >= 1.0 or pending is not None:
                if pending is None:
                    index = maker.pick()
                    record = maker.tick(index)
                    record["ts_ns"] = time.time_ns()
                    record["session"] = self.session
                    seq = record["seq"]
                    assert isinstance(seq, int)
                    pending = (self.keys[index], orjson.dumps(record),
                               functools.partial(self._on_delivery, index, seq))
                    self.produced[index] = seq
                    credit -= 1.0
                try:
                    producer.produce(topic, key=pending[0], value=pending[1], on_delivery=pending[2])
                except BufferError:
                    # Queue full (broker slow or down): keep the tick, let deliveries drain, slow down.
                    self.m_queue_full.inc()
                    producer.poll(0.05)
                    break
                pending = None
                sent += 1
            producer.poll(0)
            if sent:
                self.m_produced.inc(sent)
                window_count += sent
            self._drain_counts()
            if now - window_start >= 1.0:
                self.actual_rate = window_count / (now - window_start)
                self.m_actual.set(self.actual_rate)
                window_start, window_count = now, 0
            next_at += PACE_INTERVAL_S
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -PACE_INTERVAL_S:
                next_at = time.monotonic()  # fell behind (GC, CPU): re-anchor; credit carries the debt

    async def readiness(self) -> str | None:
        """None once the producer has broker metadata for the topic, else why not."""
        if self.fatal:
            return self.fatal
        if self.ready:
            return None
        try:
            meta = await asyncio.to_thread(self.producer.list_topics, self.topic, 2.0)
        except Exception as exc:
            return f"no broker metadata: {exc}"
        t = meta.topics.get(self.topic)
        if t is None or t.error is not None or not t.partitions:
            return f"no metadata for topic {self.topic}: {t.error if t else 'absent'}"
        self.ready = True
        return None


def routes(feed: Feed) -> list[web.RouteDef]:
    """The feed's HTTP API."""

    async def body(request: web.Request) -> Any:
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text=f'{{"error": "body is not JSON: {exc.msg}"}}',
                                     content_type="application/json") from exc

    def bad(message: str) -> web.Response:
        return web.json_response({"error": message}, status=400)

    async def symbols(_: web.Request) -> web.Response:
        return web.json_response({"symbols": [{"symbol": i.symbol, "exchange": i.exchange, "weight": i.weight}
                                              for i in feed.universe]})

    async def get_rate(_: web.Request) -> web.Response:
        return web.json_response(feed.rate_view())

    async def post_rate(request: web.Request) -> web.Response:
        data = await body(request)
        if not isinstance(data, dict) or len(data) != 1 or not {"multiplier", "rate"} >= set(data):
            return bad('body must be {"multiplier": M} or {"rate": ticks_per_second}')
        try:
            if "multiplier" in data:
                multiplier = number(data["multiplier"], "multiplier", 0, MAX_MULTIPLIER)
            else:
                multiplier = number(data["rate"], "rate", 0, feed.base_rate * MAX_MULTIPLIER) / feed.base_rate
        except ValueError as exc:
            return bad(str(exc))
        feed.multiplier, feed.schedule = multiplier, None  # a manual setting cancels any schedule
        return web.json_response(feed.rate_view())

    async def post_schedule(request: web.Request) -> web.Response:
        try:
            feed.schedule = parse_schedule(await body(request), time.monotonic())
        except ValueError as exc:
            return bad(str(exc))
        return web.json_response(feed.rate_view())

    async def delete_schedule(_: web.Request) -> web.Response:
        feed.multiplier = feed.current_multiplier(time.monotonic())  # hold the rate reached so far
        feed.schedule = None
        return web.json_response(feed.rate_view())

    async def acked(_: web.Request) -> web.Response:
        syms = feed.universe
        return web.json_response({
            "session": feed.session,
            "acked": {syms[i].symbol: n for i, n in enumerate(feed.acked) if n},
            "produced": {syms[i].symbol: n for i, n in enumerate(feed.produced) if n},
        })

    async def pause(_: web.Request) -> web.Response:
        feed.paused = True
        return web.json_response(feed.rate_view())

    async def resume(_: web.Request) -> web.Response:
        feed.paused = False
        return web.json_response(feed.rate_view())

    return [web.get("/v1/symbols", symbols), web.get("/v1/rate", get_rate), web.post("/v1/rate", post_rate),
            web.get("/v1/schedule", get_rate), web.post("/v1/schedule", post_schedule),
            web.delete("/v1/schedule", delete_schedule), web.get("/v1/acked", acked),
            web.post("/v1/pause", pause), web.post("/v1/resume", resume)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Common flags plus the feed's own."""
    p = base_parser("Market feed: Zipf-skewed ticks to Kafka at a scheduled rate.")
    p.add_argument("--topic", default="ticks")
    p.add_argument("--symbols", type=int, default=500, help="universe size")
    p.add_argument("--rate", type=float, default=1000.0, help="ticks/s in total at multiplier 1")
    p.add_argument("--zipf", type=float, default=1.1, help="exponent of the activity skew across symbols")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--schedule", default=None, help='initial schedule JSON, as POST /v1/schedule')
    args = p.parse_args(argv)
    if not 1 <= args.symbols <= 100_000:
        p.error("--symbols must be between 1 and 100000")
    if not 0 < args.rate <= 1_000_000:
        p.error("--rate must be in (0, 1000000]")
    if not 0 <= args.zipf <= 10:
        p.error("--zipf must be between 0 and 10")
    if args.schedule:
        try:
            parse_schedule(orjson.loads(args.schedule), 0.0)
        except (ValueError, orjson.JSONDecodeError) as exc:
            p.error(f"--schedule: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the feed until SIGTERM/SIGINT; exit 0 when everything produced was acknowledged, else 1."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    service = Service("feed", args.service_version)
    service.instrument_http()
    feed = Feed(args, service)
    service.app.add_routes(routes(feed))
    service.readiness.append(feed.readiness)
    left = 0

    async def start() -> None:
        feed.start()

    async def stop() -> None:
        nonlocal left
        left = await asyncio.to_thread(feed.stop)
        log.info("stopped: %d ticks left unacknowledged", left)

    service.on_stop.append(stop)
    host, port = args.listen
    asyncio.run(service.serve(host, port, start=start))
    return 0 if left == 0 else 1
