"""Hard deadlines around database work that do not wait for psycopg's clean-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("ledger")

# Tasks given up on but still unwinding; kept referenced so they are not garbage-collected mid-flight.
_abandoned: set[asyncio.Task[Any]] = set()


def _reap(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("abandoned database task ended with %r", task.exception())


async def within(timeout: float, work: Awaitable[T]) -> T:
    """Run `work`, raising TimeoutError after `timeout` seconds.

    Unlike asyncio.timeout, the caller does not wait for the cancelled work to unwind: psycopg answers a
    cancellation by asking the server to cancel the query, which against a hung server takes up to 15 s
    more. The work is cancelled and left to finish on its own (its connection is then discarded).
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_reap)
    raise TimeoutError(f"no answer within {timeout:g} s")
