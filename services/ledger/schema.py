"""The ledger's PostgreSQL schema, migrated forward at start-up."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

# Serialises concurrent start-ups (a stable and a canary ledger on one database): DDL with IF NOT EXISTS
# alone still races on the system catalogues. The number is arbitrary but fixed ("LEDGER" in ASCII).
_MIGRATION_LOCK = 0x4C4544474552

# Append only: a released migration never changes, a new one gets the next version.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
    CREATE TABLE IF NOT EXISTS orders (
        id              bigserial PRIMARY KEY,
        idempotency_key text NOT NULL UNIQUE,
        request_hash    bytea NOT NULL,
        account         text NOT NULL,
        symbol          text NOT NULL,
        side            text NOT NULL CHECK (side IN ('buy', 'sell')),
        qty             numeric(20, 8) NOT NULL CHECK (qty > 0),
        price           numeric(20, 8) NOT NULL CHECK (price > 0),
        status          text NOT NULL,
        created_at      timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS positions (
        account    text NOT NULL,
        symbol     text NOT NULL,
        qty        numeric(28, 8) NOT NULL,
        avg_price  numeric(28, 8) NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account, symbol)
    );
    CREATE TABLE IF NOT EXISTS outbox (
        id           bigserial PRIMARY KEY,
        topic        text NOT NULL,
        key          text NOT NULL,
        payload      jsonb NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz
    );
    -- The relay and the pending gauge only ever look at unpublished rows.
    CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
    """),
)


async def migrate(conn: AsyncConnection[Any]) -> int:
    """Bring the schema to the latest version in one transaction; return that version. Idempotent."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = await (await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")).fetchone()
        current = int(row[0]) if row else 0
        for version, ddl in MIGRATIONS:
            if version > current:
                await conn.execute(ddl)
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                current = version
        return current
