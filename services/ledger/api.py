"""The ledger's REST API: submit orders idempotently, read orders and positions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
import psycopg
from aiohttp import web

from services.common.service import Service
from services.ledger.deadlines import within
from services.ledger.metrics import LedgerMetrics
from services.ledger.orders import InvalidOrder, KeyReused, OrderRequest, OrderStore, valid_idempotency_key

log = logging.getLogger("ledger.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Every database round of a request is bounded: a client would rather retry than hang.
DB_TIMEOUT_S = 5.0
RETRY_AFTER_S = "1"
_MAX_ORDER_ID = 2**63 - 1
# PostgreSQL down, restarting, the pool out of connections, a timeout: the client should retry (with the
# same idempotency key), so these are 503 and never a traceback.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError)


class Unavailable(Exception):
    """The ledger cannot serve the request now; the client should retry (HTTP 503)."""


def _error(status: int, message: str, retry: bool = False) -> web.Response:
    headers = {"Retry-After": RETRY_AFTER_S} if retry else None
    return web.json_response({"error": message}, status=status, headers=headers)


def _json(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=text, status=status, headers=headers, content_type="application/json")


class LedgerApi:
    """Routes, request draining and the order-write metrics of one ledger process."""

    def __init__(self, service: Service, store: OrderStore, metrics: LedgerMetrics,
                 schema_ready: asyncio.Event) -> None:
        self.service = service
        self.store = store
        self.metrics = metrics
        self.schema_ready = schema_ready
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        service.app.middlewares.append(self._drain)
        router = service.app.router
        self._guarded_submit = self._guard(self._submit)
        router.add_post("/v1/orders", self._post_order)
        router.add_get("/v1/orders", self._guard(self._get_order_by_key))
        router.add_get("/v1/orders/{id}", self._guard(self._get_order))
        router.add_get("/v1/positions", self._guard(self._get_positions))

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for in-flight requests to finish; False if some still run."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    @web.middleware
    async def _drain(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse new API requests once stopping; track the in-flight ones so shutdown can wait for them."""
        if not request.path.startswith("/v1/"):
            return await handler(request)
        if self.service.stopping:
            if request.method == "POST":
                self.metrics.count_write(503)
            response = _error(503, "the ledger is shutting down, retry on another replica", retry=True)
            response.force_close()
            return response
        self._inflight += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    def _guard(self, handler: Handler) -> Handler:
        """Turn database unavailability into 503 + Retry-After and any other failure into a JSON 500."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                if not self.schema_ready.is_set():
                    raise Unavailable("the schema is not migrated yet")
                return await within(DB_TIMEOUT_S, handler(request))
            except (Unavailable, *_UNAVAILABLE) as exc:
                log.debug("unavailable: %r", exc)
                return _error(503, f"the database is unavailable ({type(exc).__name__}), retry", retry=True)
            except web.HTTPException:
                raise
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                return _error(500, "internal error")
        return guarded

    async def _post_order(self, request: web.Request) -> web.StreamResponse:
        # Counted outside the guard, so a 503 or 500 it produced counts as an error.
        response = await self._guarded_submit(request)
        self.metrics.count_write(response.status)
        return response

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return _error(400, "the Idempotency-Key header is required")
        if not valid_idempotency_key(key):
            return _error(400, "the Idempotency-Key header must be 1-255 visible ASCII characters")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not valid JSON: {exc}")
        try:
            order = OrderRequest.parse(body)
        except InvalidOrder as exc:
            return _error(422, str(exc))
        try:
            doc, created = await self.store.submit(key, order)
        except KeyReused:
            return _error(422, "this Idempotency-Key was already used for a different order")
        if created:
            return _json(doc, status=201)
        return _json(doc, status=200, headers={"Idempotent-Replayed": "true"})

    async def _get_order(self, request: web.Request) -> web.StreamResponse:
        text = request.match_info["id"]
        if not text.isdigit() or not 0 < int(text) <= _MAX_ORDER_ID:
            return _error(400, "the order id must be a positive integer")
        doc = await self.store.order_by_id(int(text))
        return _error(404, f"no order {text}") if doc is None else _json(doc)

    async def _get_order_by_key(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("idempotency_key")
        if not valid_idempotency_key(key):
            return _error(400, "the idempotency_key query parameter is required (1-255 visible ASCII)")
        assert key is not None
        doc = await self.store.order_by_key(key)
        return _error(404, "no order with this idempotency key") if doc is None else _json(doc)

    async def _get_positions(self, request: web.Request) -> web.StreamResponse:
        account = request.query.get("account")
        if not account:
            return _error(400, "the account query parameter is required")
        return _json(await self.store.positions(account))
