"""The sandbox's fault proxy on real sockets: bytes pass, latency holds chunks back, a partition cuts and
refuses, healing restores - driven through its admin API as the chaos actions drive it."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from openbell.sandbox.netfault import Proxy, admin_app


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _round_trip(port: int, payload: bytes = b"tick") -> float:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 5) == payload
    writer.close()
    return time.monotonic() - started


async def _scenario() -> None:
    upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
    proxy = Proxy(("127.0.0.1", upstream.sockets[0].getsockname()[1]))
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    runner = aiohttp.web.AppRunner(admin_app(proxy))
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    admin = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/fault"
    async with aiohttp.ClientSession() as http:
        assert await _round_trip(port) < 0.1
        async with http.put(admin, json={"latency_ms": 150}) as answer:
            assert answer.status == 200
        # Both directions are held back: at least two latencies per round trip.
        assert await _round_trip(port) >= 0.3
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with http.put(admin, json={"partition": True}) as answer:
            assert (await answer.json())["partition"] is True
        assert await asyncio.wait_for(reader.read(10), 5) == b""  # the open connection was cut
        writer.close()
        reader, _ = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(10), 5) == b""  # a new one is refused at once
        async with http.delete(admin) as answer:
            assert await answer.json() == {"latency_ms": 0, "partition": False}
        assert await _round_trip(port) < 0.1
        async with http.put(admin, json={"latency_ms": -5}) as answer:
            assert answer.status == 400
        async with http.get(admin) as answer:
            assert (await answer.json())["refused"] >= 1
    await runner.cleanup()
    server.close()
    upstream.close()


def test_the_fault_proxy_passes_delays_cuts_and_heals() -> None:
    asyncio.run(asyncio.wait_for(_scenario(), 30))
