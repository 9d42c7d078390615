"""The canary's synthetic probe (canary/probe.py) against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from openbell.canary.probe import Prober


def _server(status: int) -> tuple[ThreadingHTTPServer, list[str]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def servers() -> Iterator[tuple[str, list[str], str, list[str]]]:
    bad, bad_seen = _server(503)
    good, good_seen = _server(200)
    try:
        yield (f"http://127.0.0.1:{bad.server_address[1]}", bad_seen,
               f"http://127.0.0.1:{good.server_address[1]}", good_seen)
    finally:
        bad.shutdown()
        good.shutdown()


def test_the_probe_sends_its_rate_to_canary_and_stable_alike_and_counts_errors(servers) -> None:
    canary, canary_seen, stable, stable_seen = servers
    prober = Prober(lambda: ([canary], [stable]), rate_per_s=20.0).start()
    time.sleep(1.0)
    prober.stop()
    counts = prober.to_dict()
    assert 15 <= counts["canary"]["requests"] <= 25 and counts["canary"]["errors"] == counts["canary"]["requests"]
    assert abs(counts["stable"]["requests"] - counts["canary"]["requests"]) <= 1 and counts["stable"]["errors"] == 0
    assert canary_seen[0] == "/v1/quotes?symbols=AAPL,MSFT,SPY" and len(stable_seen) == counts["stable"]["requests"]


def test_no_canary_yet_means_no_canary_requests_and_an_off_probe_sends_nothing(servers) -> None:
    _, _, stable, stable_seen = servers
    prober = Prober(lambda: ([], [stable]), rate_per_s=20.0).start()
    time.sleep(0.3)
    prober.stop()
    assert prober.counts["canary"].requests == 0 and prober.counts["stable"].requests > 0
    off = Prober(lambda: ([stable], [stable]), rate_per_s=0.0).start()
    before = len(stable_seen)
    time.sleep(0.2)
    off.stop()
    assert len(stable_seen) == before


def test_an_instance_that_does_not_answer_counts_as_an_error() -> None:
    prober = Prober(lambda: (["http://127.0.0.1:9"], []), rate_per_s=10.0, timeout_s=0.2).start()
    time.sleep(0.35)
    prober.stop()
    assert prober.counts["canary"].requests >= 1 and prober.counts["canary"].errors == prober.counts["canary"].requests
