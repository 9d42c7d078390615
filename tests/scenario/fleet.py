"""A fleet of traders that behave like real clients during a rollout: each holds a WebSocket, follows the
gateway's drain hint (close 1012 with {"reconnect_after_ms": N}) and polls REST quotes. It records which
version served every connection (the `hello` frame), every close, failed handshake and 5xx, so a test
can say "every client ended on the new version" and a benchmark can count the blast radius.

Runs its own event loop in a thread: start(), then stop() returns the figures. Only 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class FleetStats:
    """Counters since start; `versions` is the version each trader is connected to now (None: not)."""

    connects: Counter[str] = field(default_factory=Counter)  # by version
    closes: Counter[int] = field(default_factory=Counter)  # by close code
    handshake_failures: int = 0
    unexpected_drops: int = 0  # connections lost without a close frame or with a non-1012 code
    messages: Counter[str] = field(default_factory=Counter)  # records received, by version
    rest: Counter[str] = field(default_factory=Counter)  # "ok" / "5xx" / "error"
    rest_5xx_at: list[float] = field(default_factory=list)  # unix times of each 5xx
    handshake_failed_at: list[float] = field(default_factory=list)
    versions: dict[int, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"connects": dict(self.connects), "closes": dict(self.closes),
                "handshake_failures": self.handshake_failures, "unexpected_drops": self.unexpected_drops,
                "messages": dict(self.messages), "rest": dict(self.rest), "versions": dict(self.versions)}


class Fleet:
    def __init__(self, ws_url: str, http_url: str, symbols: Sequence[str], traders: int = 20,
                 rest_interval_s: float = 0.5) -> None:
        self.ws_url, self.http_url = ws_url, http_url
        self.symbols = list(symbols)
        self.traders = traders
        self.rest_interval_s = rest_interval_s
        self.stats = FleetStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, settle_s: float = 2.0) -> Fleet:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(1 for v in self.current().values() if v) < self.traders:
            time.sleep(0.1)
        time.sleep(settle_s)
        return self

    def current(self) -> dict[int, str | None]:
        with self._lock:
            return dict(self.stats.versions)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.stats.to_dict()))  # type: ignore[no-any-return]

    def stop(self, timeout_s: float = 15.0) -> FleetStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.stats

    async def _main(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = [asyncio.create_task(self._trader(session, i)) for i in range(self.traders)]
            while not self._stop.is_set():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _trader(self, session: aiohttp.ClientSession, index: int) -> None:
        mine = self.symbols[index % max(1, len(self.symbols)):] + self.symbols[:index % max(1, len(self.symbols))]
        mine = mine[:10]
        rest = asyncio.create_task(self._poll_rest(session, mine, index))
        try:
            while not self._stop.is_set():
                delay = await self._connection(session, index, mine)
                await asyncio.sleep(delay)
        finally:
            rest.cancel()

    async def _connection(self, session: aiohttp.ClientSession, index: int, mine: list[str]) -> float:
        """One connection's life; returns how long to wait before reconnecting."""
        try:
            ws = await session.ws_connect(self.ws_url, heartbeat=None)
        except (TimeoutError, aiohttp.ClientError, OSError):
            with self._lock:
                self.stats.handshake_failures += 1
                self.stats.handshake_failed_at.append(time.time())
            return 0.5
        version: str | None = None
        reason = ""
        try:
            await ws.send_str(json.dumps({"op": "subscribe", "symbols": mine}))
            while not self._stop.is_set():
                msg = await _receive(ws)
                if msg is None:
                    continue
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    reason = str(msg.extra or "")
                    break
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                kind = frame.get("type")
                if kind == "hello":
                    version = str(frame.get("version"))
                    with self._lock:
                        self.stats.connects[version] += 1
                        self.stats.versions[index] = version
                elif kind == "quotes" and version is not None:
                    with self._lock:
                        self.stats.messages[version] += len(frame.get("quotes") or [])
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            pass
        finally:
            with self._lock:
                self.stats.versions[index] = None
        if self._stop.is_set():
            await ws.close()
            return 0.0
        code = ws.close_code
        with self._lock:
            self.stats.closes[code if code is not None else -1] += 1
            if code != 1012:
                self.stats.unexpected_drops += 1
        if code == 1012:
            try:
                return float(json.loads(reason or "{}").get("reconnect_after_ms", 1000)) / 1000
            except (ValueError, AttributeError):
                return 1.0
        return 0.5

    async def _poll_rest(self, session: aiohttp.ClientSession, mine: list[str], index: int) -> None:
        await asyncio.sleep((index % 10) * self.rest_interval_s / 10)
        url = f"{self.http_url}/v1/quotes?symbols={','.join(mine[:3])}"
        while not self._stop.is_set():
            try:
                async with session.get(url) as answer:
                    await answer.read()
                    key = "5xx" if answer.status >= 500 else "ok" if answer.status < 400 else "4xx"
            except (TimeoutError, aiohttp.ClientError, OSError):
                key = "error"
            with self._lock:
                self.stats.rest[key] += 1
                if key == "5xx":
                    self.stats.rest_5xx_at.append(time.time())
            await asyncio.sleep(self.rest_interval_s)


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage | None:
    """The next message, or None after a second of silence (so a stop request is seen)."""
    try:
        return await ws.receive(timeout=1.0)
    except TimeoutError:
        return None
