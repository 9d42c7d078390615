"""One HTTP face and one lifecycle for every Python service of the platform.

Each service serves `/healthz` (the process is alive), `/readyz` (its dependencies answer: 200 or 503 with
the reason) and `/metrics` (Prometheus text) next to its own routes, on one `--listen` address. It stops
gracefully on SIGTERM or SIGINT: readiness turns 503 first, then the service's own cleanup runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

Readiness = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else why not (shown in the 503 body)."""

HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.32, 0.4, 0.58, 1.0, 2.5, 5.0)


def host_port(text: str) -> tuple[str, int]:
    """Parse `HOST:PORT` (argparse type)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def base_parser(description: str) -> argparse.ArgumentParser:
    """Flags every service takes: where it listens, which Kafka, its version label."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 8080), help="HOST:PORT for HTTP")
    parser.add_argument("--kafka", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--version", dest="service_version", default="stable", help="the `version` label")
    parser.add_argument("--log-level", default="INFO")
    return parser


@dataclass
class Service:
    """A service's HTTP app, metrics registry and shutdown hooks."""

    name: str
    version: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    app: web.Application = field(default_factory=web.Application)
    readiness: list[Readiness] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    stopping: bool = False
    http_requests: Counter | None = None
    http_duration: Histogram | None = None

    def __post_init__(self) -> None:
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self.log = logging.getLogger(self.name)

    def instrument_http(self) -> None:
        """Count and time every request to a route of the service's own (the `api` SLOs read these)."""
        self.http_requests = Counter(
            "http_requests_total", "REST requests", ["route", "code", "version"], registry=self.registry
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds", "REST request duration", ["route", "version"],
            buckets=HTTP_BUCKETS_S, registry=self.registry,
        )

        @web.middleware
        async def measure(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
            route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
            if route in ("/healthz", "/readyz", "/metrics"):
                return await handler(request)
            started = time.perf_counter()
            code = 500
            try:
                response = await handler(request)
                code = response.status
                return response
            except web.HTTPException as exc:
                code = exc.status
                raise
            finally:
                assert self.http_requests is not None and self.http_duration is not None
                self.http_requests.labels(route, str(code), self.version).inc()
                self.http_duration.labels(route, self.version).observe(time.perf_counter() - started)

        self.app.middlewares.append(measure)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": self.name, "version": self.version})

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.stopping:
            return web.json_response({"ready": False, "reason": "draining"}, status=503)
        for check in self.readiness:
            reason = await check()
            if reason is not None:
                return web.json_response({"ready": False, "reason": reason}, status=503)
        return web.json_response({"ready": True, "version": self.version})

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def serve(self, host: str, port: int, start: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run until SIGTERM/SIGINT: bind, call `start`, then on a signal mark not-ready and run `on_stop`."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        if start is not None:
            await start()
        self.log.info("%s %s listening on %s:%d", self.name, self.version, host, port)
        await stop.wait()
        self.stopping = True
        self.log.info("%s stopping", self.name)
        for hook in self.on_stop:
            try:
                await hook()
            except Exception:
                self.log.exception("shutdown hook failed")
        await runner.cleanup()


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
