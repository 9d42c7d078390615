"""Order requests: validation, the idempotent write (order + position + outbox row) and the reads."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

Pool = AsyncConnectionPool[AsyncConnection[Any]]

_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,31}")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as HTTP header values travel safely
_MAX_AMOUNT = Decimal(10) ** 12  # numeric(20, 8): 12 integer digits
_MAX_SCALE = 8


class InvalidOrder(ValueError):
    """The request is well-formed JSON but not a valid order (HTTP 422)."""


class KeyReused(Exception):
    """The idempotency key already names an order with a different request (HTTP 422)."""


def valid_idempotency_key(key: str | None) -> bool:
    """True for 1-255 visible ASCII characters."""
    return key is not None and _IDEMPOTENCY_KEY.fullmatch(key) is not None


def _amount(body: dict[str, Any], name: str) -> Decimal:
    value = body.get(name)
    # bool is an int in Python, but `true` is not a quantity.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidOrder(f"{name} must be a number (or a decimal string)")
    try:
        # str() of a float is its shortest round-trip form, so 0.1 stays 0.1 and not its binary expansion.
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidOrder(f"{name} must be a number, got {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidOrder(f"{name} must be greater than 0")
    if amount >= _MAX_AMOUNT:
        raise InvalidOrder(f"{name} must be below {_MAX_AMOUNT}")
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > _MAX_SCALE:
        raise InvalidOrder(f"{name} has more than {_MAX_SCALE} decimal places")
    return amount.normalize()


@dataclass(frozen=True)
class OrderRequest:
    """A validated `POST /v1/orders` body; qty and price exact decimals (shares, price currency units)."""

    account: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal

    @classmethod
    def parse(cls, body: object) -> OrderRequest:
        """Validate a decoded JSON body, raising InvalidOrder with a message meant for the client."""
        if not isinstance(body, dict):
            raise InvalidOrder("the body must be a JSON object")
        unknown = sorted(set(body) - {"account", "symbol", "side", "qty", "price"})
        if unknown:
            raise InvalidOrder(f"unknown fields: {', '.join(unknown)}")
        account, symbol, side = body.get("account"), body.get("symbol"), body.get("side")
        if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
            raise InvalidOrder("account must be 1-64 characters of letters, digits and ._:@-")
        if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
            raise InvalidOrder("symbol must be 1-32 characters of letters, digits and ._/-")
        if side not in ("buy", "sell"):
            raise InvalidOrder('side must be "buy" or "sell"')
        return cls(account, symbol, side, _amount(body, "qty"), _amount(body, "price"))

    def fingerprint(self) -> bytes:
        """SHA-256 of the normalised request: 10 and 10.0 are the same order, a changed field is not."""
        canonical = "\x1f".join((self.account, self.symbol, self.side, f"{self.qty:f}", f"{self.price:f}"))
        return hashlib.sha256(canonical.encode()).digest()


# The order as the API returns it and as `orders` carries it (services/README.md), built by PostgreSQL so
# both are byte-for-byte the same document; trim_scale drops numeric(20, 8)'s trailing zeros.
_ORDER_JSON = """jsonb_build_object(
    'id', o.id, 'account', o.account, 'symbol', o.symbol, 'side', o.side,
    'qty', trim_scale(o.qty), 'price', trim_scale(o.price), 'status', o.status,
    'created_ns', (extract(epoch FROM o.created_at) * 1000000000)::bigint,
    'idempotency_key', o.idempotency_key)"""

# One statement is one transaction: the order, its position change and its outbox row commit together or
# not at all. ON CONFLICT makes the unique key the arbiter of a race on one idempotency key: the loser waits
# for the winner's commit and inserts nothing, so nothing downstream happens for it either.
# The position keeps a signed qty (buy +, sell -) and an average entry price: adding to the position
# averages it in, reducing leaves it, crossing through flat restarts it at the fill price.
_SUBMIT = f"""
WITH o AS (
    INSERT INTO orders (idempotency_key, request_hash, account, symbol, side, qty, price, status)
    VALUES (%(key)s, %(hash)s, %(account)s, %(symbol)s, %(side)s, %(qty)s, %(price)s, 'filled')
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING *
), record AS (
    SELECT o.account, {_ORDER_JSON} AS doc FROM o
), position_change AS (
    INSERT INTO positions AS p (account, symbol, qty, avg_price, updated_at)
    SELECT account, symbol, CASE side WHEN 'buy' THEN qty ELSE -qty END, price, created_at FROM o
    ON CONFLICT (account, symbol) DO UPDATE SET
        qty = p.qty + EXCLUDED.qty,
        avg_price = CASE
            WHEN p.qty + EXCLUDED.qty = 0 THEN 0
            WHEN p.qty = 0 OR sign(p.qty) = sign(EXCLUDED.qty)
                THEN (p.qty * p.avg_price + EXCLUDED.qty * EXCLUDED.avg_price) / (p.qty + EXCLUDED.qty)
            WHEN sign(p.qty + EXCLUDED.qty) = sign(p.qty) THEN p.avg_price
            ELSE EXCLUDED.avg_price
        END,
        updated_at = EXCLUDED.updated_at
), queued AS (
    INSERT INTO outbox (topic, key, payload) SELECT %(topic)s, account, doc FROM record
)
SELECT doc::text FROM record
"""
_BY_KEY = f"SELECT o.request_hash, {_ORDER_JSON}::text FROM orders o WHERE o.idempotency_key = %s"
_BY_ID = f"SELECT {_ORDER_JSON}::text FROM orders o WHERE o.id = %s"
_POSITIONS = """
SELECT jsonb_build_object('account', %(account)s::text, 'positions', coalesce(jsonb_agg(jsonb_build_object(
    'symbol', symbol, 'qty', trim_scale(qty), 'avg_price', trim_scale(avg_price)) ORDER BY symbol), '[]'))::text
FROM positions WHERE account = %(account)s
"""


class OrderStore:
    """Orders and positions in PostgreSQL. Connections come from an autocommit pool."""

    def __init__(self, pool: Pool, topic: str) -> None:
        self.pool = pool
        self.topic = topic

    async def submit(self, key: str, order: OrderRequest) -> tuple[str, bool]:
        """Write the order under `key` unless the key is taken; return (order JSON, created now).

        Raises KeyReused if the key's order was a different request. Database errors propagate: the
        caller cannot know whether a commit that failed in flight landed, and a retry with the same
        key answers it either way.
        """
        fingerprint = order.fingerprint()
        async with self.pool.connection() as conn:
            row = await (await conn.execute(_SUBMIT, {
                "key": key, "hash": fingerprint, "account": order.account, "symbol": order.symbol,
                "side": order.side, "qty": order.qty, "price": order.price, "topic": self.topic,
            })).fetchone()
            if row is not None:
                return str(row[0]), True
            # Lost to an earlier (or concurrent, now committed) request with this key: a fresh statement
            # sees its committed row.
            existing = await (await conn.execute(_BY_KEY, (key,))).fetchone()
        if existing is None:  # only if that row vanished, which nothing in the ledger does
            raise RuntimeError(f"idempotency key {key!r} conflicted but its order is missing")
        if bytes(existing[0]) != fingerprint:
            raise KeyReused(key)
        return str(existing[1]), False

    async def order_by_id(self, order_id: int) -> str | None:
        """The order's JSON, or None."""
        return await self._one(_BY_ID, (order_id,))

    async def order_by_key(self, key: str) -> str | None:
        """The JSON of the order written under an idempotency key, or None."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(_BY_KEY, (key,))).fetchone()
        return None if row is None else str(row[1])

    async def positions(self, account: str) -> str:
        """`{"account", "positions": [{"symbol", "qty", "avg_price"}]}` as JSON; qty signed (short < 0)."""
        return await self._one(_POSITIONS, {"account": account}) or "{}"

    async def _one(self, query: str, params: Any) -> str | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query, params)).fetchone()
        return None if row is None else str(row[0])
