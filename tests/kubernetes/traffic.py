"""Traffic through the HTTPRoute, for the live suite: a stand-in for the Gateway's data plane (no Envoy runs
here), named as such. It routes as a Gateway API implementation does: each request picks a backendRef of the
route's rule by weight, then a ready endpoint of that Service from its EndpointSlices (kept by the real
controller-manager).

RouteTraffic generates traffic: WebSocket handshakes plus REST quote requests at a fixed rate, and a few traders
that hold a WebSocket open and reconnect through the route when the gateway closes it (the canary's churn).
RouteProxy is an entry point for other clients (k6): a TCP proxy on 127.0.0.1 that routes each connection."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

HANDSHAKE = ("GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
QUOTES = "GET /v1/quotes?symbols=AAPL HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"


def _status(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(1024)
        if not chunk:
            return 0
        head += chunk
    return int(head.split(b" ", 2)[1])


@dataclass
class RouteTraffic:
    kube: Any  # tests.kubernetes.conftest.Kube
    namespace: str
    route: str = "gateway"
    rate_per_s: float = 20.0
    traders: int = 6
    port: int = 8080
    results: Counter[str] = field(default_factory=Counter)
    _routes: list[tuple[str, int]] = field(default_factory=list)
    _endpoints: dict[str, list[str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _refresh(self) -> None:
        route = self.kube.custom().get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", self.route)
        refs = route["spec"]["rules"][0]["backendRefs"]
        backends = [(r["name"], int(r.get("weight", 1))) for r in refs]
        endpoints: dict[str, list[str]] = {}
        for name, _ in backends:
            slices = self.kube.api.sanitize_for_serialization(
                self.kube.discovery().list_namespaced_endpoint_slice(
                    self.namespace, label_selector=f"kubernetes.io/service-name={name}").items)
            endpoints[name] = [a for s in slices for e in s.get("endpoints") or []
                               if (e.get("conditions") or {}).get("ready") for a in e.get("addresses") or []]
        with self._lock:
            self._routes, self._endpoints = backends, endpoints

    def pick(self) -> tuple[str, str] | None:
        """(service, endpoint address) by the route's weights; None when the chosen backend has no endpoint."""
        with self._lock:
            routes, endpoints = list(self._routes), dict(self._endpoints)
        total = sum(w for _, w in routes)
        if total <= 0:
            return None
        roll = random.uniform(0, total)
        name = routes[-1][0]
        for candidate, weight in routes:
            roll -= weight
            if roll <= 0:
                name = candidate
                break
        addresses = endpoints.get(name) or []
        return (name, random.choice(addresses)) if addresses else None

    def _request(self, text: str, keep: bool = False) -> tuple[str, int, socket.socket | None]:
        chosen = self.pick()
        if chosen is None:
            return "none", 0, None
        service, address = chosen
        sock = socket.create_connection((address, self.port), timeout=3)
        sock.sendall(text.format(host=f"{address}:{self.port}").encode())
        code = _status(sock)
        if not keep or code != 101:
            sock.close()
            return service, code, None
        return service, code, sock

    def _requests(self) -> None:
        while not self._stop.wait(1.0 / self.rate_per_s):
            for text in (HANDSHAKE, QUOTES):
                try:
                    service, code, _ = self._request(text)
                except OSError:
                    service, code = "error", 0
                with self._lock:
                    self.results[f"{service} {code}"] += 1

    def _trader(self) -> None:
        while not self._stop.is_set():
            try:
                service, _code, sock = self._request(HANDSHAKE, keep=True)
            except OSError:
                sock = None
            if sock is None:
                self._stop.wait(0.2)
                continue
            with self._lock:
                self.results[f"trader {service}"] += 1
            sock.settimeout(0.5)
            with sock:
                while not self._stop.is_set():  # frames until the gateway closes it (a drain), then reconnect
                    try:
                        if not sock.recv(65536):
                            break
                    except TimeoutError:
                        continue
                    except OSError:
                        break

    def _refresher(self) -> None:
        while not self._stop.wait(0.3):
            with contextlib.suppress(Exception):  # the route mid-change: the next refresh sees it
                self._refresh()

    def start(self) -> RouteTraffic:
        self._refresh()
        targets = [self._refresher] + ([self._requests] if self.rate_per_s > 0 else []) + [self._trader] * self.traders
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> RouteTraffic:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class RouteProxy:
    """The platform's entry point for k6 on this machine: each accepted connection goes, whole, to an endpoint
    picked by the route's weights (as an L4 data plane would: a keep-alive connection stays where it went)."""

    router: RouteTraffic  # its route and endpoint view (started with traders=0 and rate_per_s=0 for no load)
    port: int = 0
    _server: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    connections: Counter[str] = field(default_factory=Counter)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RouteProxy:
        server = socket.create_server(("127.0.0.1", self.port), backlog=512)
        self._server, self.port = server, server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        chosen = self.router.pick()
        if chosen is None:
            client.close()
            return
        service, address = chosen
        try:
            upstream = socket.create_connection((address, self.router.port), timeout=3)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self.connections[service] += 1
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        src.close()
