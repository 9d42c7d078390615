"""A TCP proxy with injectable faults: the network between the gateways and Kafka, on one machine.

Kafka hands clients the address its listener advertises, so a proxy in front of the bootstrap port alone
would only see the first connection. The sandbox's broker therefore has a listener of its own for the
gateways (`kafka-edge`) advertised at this proxy's port: every byte between a gateway and the broker
crosses it. Faults are set at runtime on the admin port:

    PUT    /v1/fault   {"latency_ms": 40}        every chunk held back 40 ms, order and throughput kept
    PUT    /v1/fault   {"partition": true}       open connections cut, new ones refused until healed
    DELETE /v1/fault                             healed
    GET    /v1/fault, /healthz

Run as `python -m openbell.sandbox.netfault --listen HOST:PORT --upstream HOST:PORT --admin HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Fault:
    latency_ms: int = 0
    partition: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"latency_ms": self.latency_ms, "partition": self.partition}


@dataclass
class Proxy:
    upstream: tuple[str, int]
    fault: Fault = field(default_factory=Fault)
    connections: set[asyncio.Task[None]] = field(default_factory=set)
    accepted: int = 0
    refused: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.fault.partition:
            self.refused += 1
            writer.close()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections.discard(task)
            for w in (writer, up_writer):
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction. With latency, each chunk is written `latency` after it arrived, by a
        writer that keeps order: the delay does not cap throughput the way sleeping per chunk would."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def write() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        writing = asyncio.create_task(write())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((time.monotonic() + self.fault.latency_ms / 1000.0, data))
            queue.put_nowait((0.0, b""))
            await writing
        finally:
            writing.cancel()
            with contextlib.suppress(Exception):
                writer.write_eof()

    def set(self, latency_ms: int, partition: bool) -> None:
        self.fault = Fault(latency_ms, partition)
        if partition:
            for task in list(self.connections):
                task.cancel()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def admin_app(proxy: Proxy) -> web.Application:
    async def get_fault(_: web.Request) -> web.Response:
        return web.json_response(proxy.fault.to_dict() | {"open": len(proxy.connections),
                                                            "accepted": proxy.accepted, "refused": proxy.refused})

    async def put_fault(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            latency = int(body.get("latency_ms", 0))
            partition = bool(body.get("partition", False))
        except (ValueError, TypeError, AttributeError, json.JSONDecodeError):
            return web.json_response({"error": "expected {\"latency_ms\": N, \"partition\": bool}"}, status=400)
        if not 0 <= latency <= 60000:
            return web.json_response({"error": "latency_ms must be within 0..60000"}, status=400)
        proxy.set(latency, partition)
        return web.json_response(proxy.fault.to_dict())

    async def heal(_: web.Request) -> web.Response:
        proxy.set(0, False)
        return web.json_response(proxy.fault.to_dict())

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "netfault", "fault": proxy.fault.to_dict()})

    app = web.Application()
    app.router.add_get("/v1/fault", get_fault)
    app.router.add_put("/v1/fault", put_fault)
    app.router.add_delete("/v1/fault", heal)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(listen: tuple[str, int], upstream: tuple[str, int], admin: tuple[str, int]) -> None:
    proxy = Proxy(upstream)
    server = await asyncio.start_server(proxy.handle, *listen)
    runner = web.AppRunner(admin_app(proxy))
    await runner.setup()
    await web.TCPSite(runner, *admin).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT clients connect to")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--admin", required=True, help="HOST:PORT of the fault API")
    args = parser.parse_args()
    asyncio.run(serve(_address(args.listen), _address(args.upstream), _address(args.admin)))


if __name__ == "__main__":
    main()
