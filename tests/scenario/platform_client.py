"""What the scenario tests use to talk to a running sandbox: the real CLI, WebSocket traders, REST calls."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

OPENBELL = [sys.executable, "-m", "openbell"]


def openbell(*args: str, home: Path | None = None, env: dict[str, str] | None = None,
             timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (as a user would), bounded in time."""
    full_env = {**os.environ, **(env or {})}
    argv = [*OPENBELL, *args]
    if home is not None:
        argv += ["--home", str(home)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=full_env)


ROOT = Path(__file__).resolve().parents[2]


def impossible_slo(path: Path, objective: float = 99.0) -> Path:
    """An objective the sandbox cannot meet (every push within a millisecond), with the push-latency runbook:
    it burns from the gateways' first scrape. Written to `path`; returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""apiVersion: openbell/v1
kind: SLO
metadata: {{name: push-in-a-millisecond}}
spec:
  service: gateway
  objective: {objective:g}
  runbook: {ROOT / "runbooks" / "gateway-push-latency.md"}
  sli:
    latency:
      histogram: gateway_push_latency_seconds
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
      threshold: 1ms
      selector: job="gateway"
""")
    return path


def wait_until_burning(sandbox: Sandbox, slo: Path, within_s: float = 90) -> dict[str, Any]:
    """A precondition: poll the real `openbell slo gate` on `slo` until it pages (exit 1, outcome fail);
    its JSON. An impossible objective burns from the first pushes, but the gate rightly does not page on a
    few events or a young history ("too little traffic to page on"), so a test about a platform already
    burning first waits for the gate to say so. Fails the test when it has not within `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        done = openbell("slo", "gate", str(slo), "--severity", "page", "--output", "json",
                        "--prometheus", sandbox.endpoints["prometheus_url"], timeout_s=60)
        verdict = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        if done.returncode == 1 and verdict.get("outcome") == "fail":
            return dict(verdict)
        if time.monotonic() >= deadline:
            raise AssertionError(f"{slo.name} still does not page after {within_s:g} s (exit {done.returncode}): "
                                 f"{verdict.get('reasons') or done.stderr[-1000:]}")
        time.sleep(2)


@dataclass
class Sandbox:
    """A running sandbox: its home and the endpoints `sandbox status --output json` reports."""

    home: Path
    endpoints: dict[str, str]

    def status(self) -> dict[str, Any]:
        done = openbell("sandbox", "status", "--output", "json", home=self.home, timeout_s=60)
        if not done.stdout.strip().startswith("{"):
            raise AssertionError(f"sandbox status printed no JSON (exit {done.returncode}): {done.stderr[-3000:]}")
        return dict(json.loads(done.stdout))

    def pid(self, component: str) -> int:
        """The pid the sandbox recorded for `component` (its state file: no health probes on the way)."""
        state = json.loads((self.home / "sandbox.json").read_text())
        try:
            return int(state["processes"][component]["pid"])
        except KeyError:
            raise KeyError(component) from None

    def up(self) -> dict[str, Any]:
        """`sandbox up` again: restarts whatever is not running, keeps the rest."""
        done = openbell("sandbox", "up", "--output", "json", home=self.home)
        assert done.returncode == 0, done.stderr[-3000:]
        return dict(json.loads(done.stdout))

    def symbols(self, count: int) -> list[str]:
        """The feed's `count` most active symbols (the ones that tick every second)."""
        universe = httpx.get(self.endpoints["feed_url"] + "/v1/symbols", timeout=5).json()["symbols"]
        ranked = sorted(universe, key=lambda s: -float(s["weight"]))
        return [str(s["symbol"]) for s in ranked[:count]]


@dataclass
class Trader:
    """One WebSocket client: what it received, per symbol, and the push latency of every record."""

    symbols: Sequence[str]
    hello: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    fseq_gaps: int = 0
    close_code: int | None = None
    close_reason: str = ""

    def seqs(self, symbol: str, session: int | None = None) -> list[int]:
        """The seqs received for `symbol`, in arrival order (of one feed session, or of the latest)."""
        mine = [r for r in self.records if r["symbol"] == symbol]
        wanted = max((int(r.get("session", 0)) for r in mine), default=0) if session is None else session
        return [int(r["seq"]) for r in mine if int(r.get("session", 0)) == wanted]

    def sessions(self) -> set[int]:
        return {int(r.get("session", 0)) for r in self.records}

    def unexplained_gaps(self) -> int:
        """Per-symbol seq holes, within each feed session, that conflation (`skipped`) does not account for."""
        holes = 0
        for symbol in {r["symbol"] for r in self.records}:
            for session in self.sessions():
                seqs = self.seqs(symbol, session)
                holes += sum(b - a - 1 for a, b in itertools.pairwise(seqs) if b > a + 1)
        return max(0, holes - sum(self.skipped.values()))


async def trade(url: str, symbols: Sequence[str], duration_s: float, trader: Trader | None = None) -> Trader:
    """Connect, subscribe, and record everything received for `duration_s` (or until the server closes)."""
    trader = trader or Trader(symbols)
    last_fseq = 0
    deadline = time.monotonic() + duration_s
    async with aiohttp.ClientSession() as session, session.ws_connect(url, heartbeat=None) as ws:
        await ws.send_str(json.dumps({"op": "subscribe", "symbols": list(symbols)}))
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                trader.close_code = ws.close_code
                trader.close_reason = str(msg.extra or "")
                break
            if msg.type is aiohttp.WSMsgType.ERROR:
                break
            now_ns = time.time_ns()
            frame = json.loads(msg.data)
            if frame.get("type") == "hello":
                trader.hello = frame
            elif frame.get("type") == "subscribed":
                trader.records.extend(frame.get("snapshot") or [])
            elif frame.get("type") == "quotes":
                trader.frames += 1
                fseq = int(frame["fseq"])
                trader.fseq_gaps += max(0, fseq - last_fseq - 1)
                last_fseq = fseq
                for symbol, count in (frame.get("skipped") or {}).items():
                    trader.skipped[symbol] = trader.skipped.get(symbol, 0) + int(count)
                for record in frame["quotes"]:
                    trader.records.append(record)
                    trader.latencies_s.append((now_ns - int(record["ts_ns"])) / 1e9)
    return trader


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def stalled_trader(host: str, port: int, symbols: Sequence[str], duration_s: float) -> None:
    """A trader whose application stops reading: raw WebSocket handshake and subscribe, a small receive
    buffer, then it sits on the socket for `duration_s` without reading a byte."""
    import base64
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(sock, (f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)  # byte by byte: nothing past the headers is consumed
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = json.dumps({"op": "subscribe", "symbols": list(symbols)}).encode()
    mask = os.urandom(4)
    header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") if len(payload) > 125 \
        else bytes([0x81, 0x80 | len(payload)])
    await loop.sock_sendall(sock, header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    try:
        await asyncio.sleep(duration_s)
    finally:
        sock.close()
