"""The sandbox as a canary target: HAProxy's admin socket routes, the supervisor runs the gateway processes,
and the rollout's state lives next to the sandbox's own (`<home>/canary/<service>.json`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from openbell.errors import UnreachableError, UsageError
from openbell.sandbox import processes, supervisor
from openbell.sandbox.haproxy_router import CANARY_BACKEND, STABLE_BACKEND, HAProxyRouter
from openbell.sandbox.layout import Layout
from openbell.targets.base import CanaryTarget, MetricScope, RunConflict, RunStore, Traffic

FAULT_FLAGS = {"error_rate": float, "latency_ms": int}
# The gateway's drain hint is 1000 ms plus up to 500 ms of jitter; reconnects land within this.
RECONNECT_WINDOW_S = 2.5


def parse_faults(pairs: list[str]) -> dict[str, str]:
    """`error_rate=0.05`, `latency_ms=80` -> flags for the canary gateway; anything else is bad input."""
    faults: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in FAULT_FLAGS:
            raise UsageError(f"--sandbox-fault {pair!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(FAULT_FLAGS)}")
        try:
            number = FAULT_FLAGS[key](value)
        except ValueError:
            raise UsageError(f"--sandbox-fault {pair!r}: expected a number for {key}") from None
        if key == "error_rate" and not 0 <= float(number) <= 1:
            raise UsageError(f"--sandbox-fault {pair!r}: error_rate must be within 0..1")
        if key == "latency_ms" and int(number) < 0:
            raise UsageError(f"--sandbox-fault {pair!r}: latency_ms must be >= 0")
        faults[key] = value
    return faults


@dataclass
class SandboxRunStore(RunStore):
    """A JSON file per service, written atomically; the lock is an flock the running CLI holds, so a run
    killed with -9 releases it with its process. Operator requests (promote, abort) are a file of their own
    that the running controller takes at its next poll."""

    directory: Path
    service: str
    _lock: IO[str] | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.directory / f"{self.service}.json"

    @property
    def request_path(self) -> Path:
        return self.directory / f"{self.service}.request"

    def load(self) -> dict[str, Any] | None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{self.path}: unreadable rollout state ({exc})") from exc
        return raw if isinstance(raw, dict) else None

    def save(self, document: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        os.replace(tmp, self.path)

    def acquire(self, owner: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / f"{self.service}.lock", "a+")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunConflict(f"a canary of {self.service} is already running ({holder})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(owner)
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.truncate(0)
            self._lock.close()
            self._lock = None

    def holder(self) -> str | None:
        """Who holds the lock now (None when nobody does): for `status`."""
        path = self.directory / f"{self.service}.lock"
        if not path.exists():
            return None
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                return handle.read().strip() or "unknown"
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None

    def request(self, command: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.request_path.with_suffix(".request.tmp")
        tmp.write_text(command)
        os.replace(tmp, self.request_path)

    def take_request(self) -> str | None:
        try:
            command = self.request_path.read_text().strip()
        except FileNotFoundError:
            return None
        self.request_path.unlink(missing_ok=True)
        return command or None


@dataclass
class SandboxTarget(CanaryTarget):
    """The gateway's canary on the sandbox at `home`."""

    home: Path = field(default_factory=Path)
    name: str = "sandbox"
    steers_reconnects: bool = True

    def __post_init__(self) -> None:
        if self.service != "gateway":
            raise UsageError(f"canary: the sandbox has no canary slots for {self.service!r}; expected gateway")
        self.layout = Layout(self.home)

    def _ctx(self) -> Any:
        return supervisor.context(self.layout)

    def router(self) -> HAProxyRouter:
        return supervisor.router(self.layout)

    def check(self) -> None:
        ctx = self._ctx()
        needed = ["haproxy", "prometheus", *ctx.stable_gateways()]
        down = [n for n in needed if not (n in ctx.state.processes and processes.is_running(ctx.state.processes[n]))]
        if not ctx.state.ports or down:
            raise UnreachableError(f"sandbox {self.home}: {', '.join(down) or 'nothing'} not running: "
                                   "`openbell sandbox up` first")

    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self._ctx().state.ports['prometheus']}"

    def scrape_interval_s(self) -> float:
        return float(self._ctx().state.scrape_interval_s)

    def scope(self) -> MetricScope:
        return MetricScope(job="gateway")

    def stable_version(self) -> str:
        return supervisor.stable_version(self.layout)

    def start_canary(self, version: str, faults: dict[str, str]) -> None:
        self.progress(f"starting the canary gateway at {version}" + (f" with faults {faults}" if faults else ""))
        supervisor.start_canary(self.layout, version, replicas=1, faults=faults, progress=self.progress)

    def canary_running(self) -> bool:
        ctx = self._ctx()
        return any(n in ctx.state.processes and processes.is_running(ctx.state.processes[n])
                   for n in ctx.canary_gateways())

    def probe_endpoints(self) -> tuple[list[str], list[str]]:
        ctx = self._ctx()

        def urls(names: list[str]) -> list[str]:
            return [f"http://127.0.0.1:{ctx.state.ports[n]}" for n in names
                    if n in ctx.state.processes and processes.is_running(ctx.state.processes[n])]

        return urls(ctx.canary_gateways()), urls(ctx.stable_gateways())

    def weight(self) -> int:
        return self.router().canary_weight()

    def set_weight(self, percent: int) -> None:
        self.router().set_canary_weight(percent)

    def traffic(self) -> Traffic:
        loads = self.router().backend_load()
        stable, canary = loads.get(STABLE_BACKEND), loads.get(CANARY_BACKEND)
        return Traffic(stable.current_sessions if stable else 0, canary.current_sessions if canary else 0,
                       "haproxy show stat (open sessions per backend)")

    def _drain(self, replica: str, fraction: float) -> int:
        port = self._ctx().state.ports[replica]
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/admin/drain", params={"fraction": f"{fraction:.4f}"},
                                timeout=5.0)
            answer.raise_for_status()
            return int(answer.json().get("closed", 0))
        except (OSError, httpx.HTTPError, ValueError) as exc:
            raise UnreachableError(f"{replica}: /admin/drain failed: {exc}") from exc

    def churn(self, fraction: float) -> int:
        """Drain `fraction` of every stable replica's connections while WebSocket upgrades are steered to
        the canary, so exactly the drained clients move; then WebSockets follow the weight again."""
        if fraction <= 0:
            return 0
        route = self.router()
        weight = route.canary_weight()
        route.steer_websockets(100)
        try:
            closed = sum(self._drain(name, min(1.0, fraction)) for name in self._ctx().stable_gateways())
            deadline = time.monotonic() + RECONNECT_WINDOW_S
            while time.monotonic() < deadline:
                time.sleep(0.25)
        finally:
            route.steer_websockets(weight)
        return closed

    def rollback(self) -> None:
        self.progress("rolling back: weight 0, draining the canary to stable")
        supervisor.stop_canary(self.layout, progress=self.progress)
        self._settle()

    def promote(self, version: str) -> None:
        route = self.router()
        self.progress(f"promoting {version}: all new traffic to the canary while stable is replaced")
        route.set_canary_weight(100)
        supervisor.replace_stable(self.layout, version, progress=self.progress)
        self.progress("stable replaced: draining the canary to the new stable")
        supervisor.stop_canary(self.layout, progress=self.progress)
        self._settle()

    def _settle(self) -> None:
        """Wait (bounded) for drained clients to reconnect, so verify_stable sees the end state."""
        deadline = time.monotonic() + RECONNECT_WINDOW_S + 2.0
        while time.monotonic() < deadline:
            if self.traffic().canary_connections == 0:
                return
            time.sleep(0.25)

    def verify_stable(self) -> list[str]:
        problems = []
        route = self.router()
        if (w := route.canary_weight()) != 0:
            problems.append(f"canary weight is {w}%, expected 0")
        if (ws := route.websocket_weight()) != 0:
            problems.append(f"canary WebSocket weight is {ws}%, expected 0")
        if self.canary_running():
            problems.append("a canary gateway process still runs")
        loads = route.backend_load()
        canary = loads.get(CANARY_BACKEND)
        if canary and canary.current_sessions:
            problems.append(f"{canary.current_sessions} sessions still open on the canary backend")
        stable = loads.get(STABLE_BACKEND)
        expected = len(self._ctx().stable_gateways())
        if stable is None or stable.servers_up < expected:
            problems.append(f"{0 if stable is None else stable.servers_up}/{expected} stable gateways up in HAProxy")
        return problems

    def store(self) -> SandboxRunStore:
        return SandboxRunStore(self.home / "canary", self.service)

    def describe(self) -> dict[str, Any]:
        return {"target": self.name, "service": self.service, "home": str(self.home)}
