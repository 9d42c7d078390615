"""Synthetic traffic for a canary's judge: what Flagger's load tester does for services too quiet to judge.

A canary at 10% of a quiet service sees a few requests per step: a 5% error rate there is a fraction of an
error per hold, which no test can tell from chance, so a bad version is promoted. During a rollout the prober
sends the same request at `rate_per_s` to the canary and, at the same rate, to the stable replicas, straight to
each instance (not through the router, so the weight does not thin it out). The requests are real: each
service counts them in the series the judge and the SLO gates read, on both sides alike, so the judge has
evidence at any weight. They are synthetic traffic, counted as such here (requests, errors, per role).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

PATH = "/v1/quotes?symbols=AAPL,MSFT,SPY"  # a quote snapshot: the gateway's own REST route


@dataclass
class ProbeCounts:
    requests: int = 0
    errors: int = 0  # 5xx or no answer

    def to_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "errors": self.errors}


@dataclass
class Prober:
    """Sends `rate_per_s` requests a second to the canary and as many to stable, from a thread, until stopped.

    `endpoints` is asked each round for (canary base URLs, stable base URLs): a canary restarted or promoted
    mid-rollout is followed. A request that times out or fails counts as an error (the judge sees the service's
    own count; these are for the report)."""

    endpoints: Callable[[], tuple[list[str], list[str]]]
    rate_per_s: float
    path: str = PATH
    timeout_s: float = 2.0
    counts: dict[str, ProbeCounts] = field(default_factory=lambda: {"canary": ProbeCounts(), "stable": ProbeCounts()})
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Prober:
        if self.rate_per_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="canary-probe", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1.0)
            self._thread = None

    def _run(self) -> None:
        interval = 1.0 / self.rate_per_s
        turn = itertools.count()
        with httpx.Client(timeout=self.timeout_s) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    canary, stable = self.endpoints()
                except Exception:  # the target is momentarily unreadable (a state file being rewritten)
                    canary, stable = [], []
                n = next(turn)
                for role, urls in (("canary", canary), ("stable", stable)):
                    if urls:
                        self._one(client, role, urls[n % len(urls)])
                next_at += interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                if time.monotonic() - next_at > 1.0:
                    next_at = time.monotonic()  # fell behind (a stalled machine): no burst to catch up

    def _one(self, client: httpx.Client, role: str, base: str) -> None:
        counts = self.counts[role]
        counts.requests += 1
        try:
            if client.get(base + self.path).status_code >= 500:
                counts.errors += 1
        except httpx.HTTPError:
            counts.errors += 1

    def to_dict(self) -> dict[str, object]:
        return {"rate_per_s": self.rate_per_s, "path": self.path, **{k: v.to_dict() for k, v in self.counts.items()}}
