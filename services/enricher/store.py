"""Enriched ticks in ClickHouse (chdb, in-process): a batching writer thread and the analytics read model.

chdb hosts one embedded engine per process. Connections to the same path are thread-safe and run queries in
parallel with the GIL released; still, the writer and the readers each own a connection and each connection is
used by one thread at a time (the writer thread; the single-thread analytics executor), so no query ever waits
on another's connection lock and a streaming insert never blocks a read.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from chdb.state.sqlitelike import Connection, connect

TABLE = "openbell.enriched_ticks"
MAX_BUFFERED_ROWS = 2_000_000  # if ClickHouse keeps failing, shed the oldest rows instead of growing forever
RETENTION_DAYS = 7

DDL = (
    "CREATE DATABASE IF NOT EXISTS openbell",
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        symbol LowCardinality(String),
        exchange LowCardinality(String),
        seq UInt64,
        ts_ns Int64,
        ts DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(ts_ns),
        bid Float64, ask Float64, last Float64, size UInt64,
        vwap Float64, spread Float64, ma Float64,
        enriched_ns Int64
    ) ENGINE = MergeTree
    PARTITION BY toDate(ts)
    ORDER BY (symbol, ts)
    TTL toDateTime(ts) + INTERVAL {RETENTION_DAYS} DAY""",
)

log = logging.getLogger("enricher.store")


class Store:
    """The chdb engine at `path`: one writer connection, one reader connection."""

    def __init__(self, path: str) -> None:
        self._writer: Connection = connect(path)
        for statement in DDL:
            self._writer.query(statement)
        self._reader: Connection = connect(path)

    def ping(self) -> bool:
        """True when ClickHouse answers `SELECT 1` (call from the reader thread)."""
        return str(self._reader.query("SELECT 1", "CSV")).strip() == "1"

    def insert(self, rows: list[bytes]) -> None:
        """Insert JSONEachRow-encoded rows in one batch (call from the writer thread)."""
        with self._writer.send_insert(f"INSERT INTO {TABLE}", "JSONEachRow") as inserter:
            inserter.append(b"\n".join(rows))
            inserter.finish()

    def select(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Run a read query with bound `{name:Type}` parameters; rows as dicts (call from the reader thread)."""
        result = self._reader.query(sql + " SETTINGS output_format_json_quote_64bit_integers = 0",
                                    "JSON", params=params)
        data: list[dict[str, Any]] = orjson.loads(result.bytes())["data"]
        return data

    def close(self) -> None:
        """Close both connections (the engine shuts down with the last one)."""
        self._reader.close()
        self._writer.close()


class Writer:
    """Buffers rows from the hot path and inserts them every `interval` seconds from its own thread."""

    def __init__(self, store: Store, interval: float, on_insert: Callable[[int, float], None],
                 on_error: Callable[[], None]) -> None:
        self._store = store
        self._interval = interval
        self._on_insert = on_insert  # (rows, seconds) after each successful insert
        self._on_error = on_error
        self._rows: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clickhouse-writer", daemon=True)
        self.shed = 0

    def add(self, row: bytes) -> None:
        """Queue one JSON row; never blocks on ClickHouse."""
        with self._lock:
            self._rows.append(row)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread after one last insert of everything buffered (bounded by `timeout` seconds)."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Insert what is buffered now; on failure keep it for the next round."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        started = time.perf_counter()
        try:
            self._store.insert(rows)
        except Exception:
            self._on_error()
            log.exception("ClickHouse insert of %d rows failed; will retry", len(rows))
            with self._lock:
                self._rows[:0] = rows
                excess = len(self._rows) - MAX_BUFFERED_ROWS
                if excess > 0:
                    del self._rows[:excess]
                    self.shed += excess
            return
        self._on_insert(len(rows), time.perf_counter() - started)


# --- analytics queries --------------------------------------------------------------------------------------

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")
INTERVAL_RE = re.compile(r"^(\d{1,4})([smhd])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_MINUTES = 7 * 24 * 60
MAX_BUCKETS = 10_000
TOP_ORDER = {"volume": "volume", "trades": "trades", "notional": "notional"}


class BadRequest(ValueError):
    """A query parameter is missing or invalid (HTTP 400)."""


def _int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer between {low} and {high}, got {raw!r}")
    return int(raw)


def _symbol(params: dict[str, str]) -> str:
    symbol = params.get("symbol", "")
    if not SYMBOL_RE.match(symbol):
        raise BadRequest(f"symbol must be 1-16 of A-Z 0-9 . -, got {symbol!r}")
    return symbol


def _since_ns(minutes: int) -> int:
    return time.time_ns() - minutes * 60 * 1_000_000_000


def top(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """Most active symbols over the last `minutes`, ranked `by` volume (shares), trades or notional."""
    by = params.get("by", "volume")
    if by not in TOP_ORDER:
        raise BadRequest(f"by must be one of {sorted(TOP_ORDER)}, got {by!r}")
    minutes = _int(params, "minutes", 5, 1, MAX_MINUTES)
    limit = _int(params, "limit", 10, 1, 1000)
    rows = store.select(
        f"""SELECT symbol, any(exchange) AS exchange, count() AS trades, sum(size) AS volume,
                   round(sum(last * size), 2) AS notional, round(sum(last * size) / sum(size), 4) AS vwap,
                   argMax(last, ts) AS last_price
            FROM {TABLE} WHERE ts >= fromUnixTimestamp64Nano({{since:Int64}})
            GROUP BY symbol ORDER BY {TOP_ORDER[by]} DESC, symbol LIMIT {{limit:UInt32}}""",
        {"since": _since_ns(minutes), "limit": limit})
    return {"by": by, "minutes": minutes, "rows": rows}


def ohlc(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """Open/high/low/close/volume bars of `symbol` per `interval` (e.g. 10s, 1m, 1h) over the last `minutes`."""
    symbol = _symbol(params)
    interval = params.get("interval", "1m")
    match = INTERVAL_RE.match(interval)
    if not match or int(match.group(1)) == 0:
        raise BadRequest(f"interval must look like 10s, 1m, 5m or 1h, got {interval!r}")
    step_s = int(match.group(1)) * UNIT_S[match.group(2)]
    minutes = _int(params, "minutes", 30, 1, MAX_MINUTES)
    if minutes * 60 / step_s > MAX_BUCKETS:
        raise BadRequest(f"minutes / interval gives more than {MAX_BUCKETS} bars")
    rows = store.select(
        f"""SELECT toUnixTimestamp(toStartOfInterval(ts, toIntervalSecond({{step:UInt32}}))) AS t,
                   argMin(last, ts) AS open, max(last) AS high, min(last) AS low, argMax(last, ts) AS close,
                   sum(size) AS volume, count() AS trades
            FROM {TABLE} WHERE symbol = {{symbol:String}} AND ts >= fromUnixTimestamp64Nano({{since:Int64}})
            GROUP BY t ORDER BY t""",
        {"symbol": symbol, "step": step_s, "since": _since_ns(minutes)})
    return {"symbol": symbol, "interval": interval, "interval_s": step_s, "minutes": minutes, "bars": rows}


def vwap(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """VWAP of `symbol` over the last `minutes`, with its volume, trade count and the latest session VWAP."""
    symbol = _symbol(params)
    minutes = _int(params, "minutes", 5, 1, MAX_MINUTES)
    rows = store.select(
        f"""SELECT round(sum(last * size) / sum(size), 4) AS window_vwap, sum(size) AS volume, count() AS trades,
                   argMax(vwap, ts) AS session_vwap, argMax(last, ts) AS last_price,
                   toUnixTimestamp64Milli(max(ts)) AS last_ts_ms
            FROM {TABLE} WHERE symbol = {{symbol:String}} AND ts >= fromUnixTimestamp64Nano({{since:Int64}})
            HAVING trades > 0""",
        {"symbol": symbol, "since": _since_ns(minutes)})
    if not rows:
        return {"symbol": symbol, "minutes": minutes, "vwap": None, "volume": 0, "trades": 0}
    row = rows[0]
    return {"symbol": symbol, "minutes": minutes, "vwap": row.pop("window_vwap"), **row}


QUERIES: dict[str, Callable[[Store, dict[str, str]], dict[str, Any]]] = {"top": top, "ohlc": ohlc, "vwap": vwap}
