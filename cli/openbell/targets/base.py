"""What the canary controller needs from a place the platform runs: a router and the canary's workload.

Two implementations: `sandbox` (HAProxy's admin socket, gateway processes) and `kubernetes` (Gateway API
HTTPRoute weights, a Deployment openbell manages). The controller only ever talks to this interface, so
the state machine, the gates and the judge are the same wherever the rollout runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openbell.errors import UsageError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Traffic:
    """The canary's real share of traffic, right now (not the weight): open connections per role."""

    stable_connections: int
    canary_connections: int
    source: str  # where the figures come from, e.g. "haproxy show stat"

    @property
    def canary_share(self) -> float | None:
        total = self.stable_connections + self.canary_connections
        return None if total == 0 else self.canary_connections / total

    def to_dict(self) -> dict[str, Any]:
        return {"stable_connections": self.stable_connections, "canary_connections": self.canary_connections,
                "canary_share": self.canary_share, "source": self.source}


@dataclass(frozen=True)
class MetricScope:
    """How the target's metrics tell the two versions apart in Prometheus.

    `job` selects the service's series; `role_label` carries "stable" or "canary" on each series (the
    sandbox writes it as a file_sd target label, Kubernetes relabels it from the pod's `role` label)."""

    job: str
    role_label: str = "role"
    stable: str = "stable"
    canary: str = "canary"

    def matcher(self, role: str) -> str:
        return f'{self.role_label}="{role}"'


@dataclass
class CanaryTarget(ABC):
    """A router plus the canary's lifecycle for one service on one target. Every method is idempotent:
    after a crash the controller may call any of them again with the same arguments."""

    service: str
    progress: Progress = field(default=lambda _: None, repr=False)
    # Called by a target inside its long waits (a Deployment rolling out), so the controller can keep its
    # rollout lock alive meanwhile (a Lease on Kubernetes expires without renewal).
    heartbeat: Callable[[], None] = field(default=lambda: None, repr=False)

    name: str = "abstract"
    # Whether churn() sends the drained clients to the canary (True) or lets them reconnect at the weight.
    steers_reconnects: bool = False

    @abstractmethod
    def prometheus_url(self) -> str:
        """Where the service's per-version series are queried."""

    @abstractmethod
    def scope(self) -> MetricScope:
        """The label that tells canary series from stable ones."""

    @abstractmethod
    def check(self) -> None:
        """Raise UnreachableError (exit 3) when the target or the service cannot be reached."""

    @abstractmethod
    def stable_version(self) -> str:
        """The version the stable workload runs now."""

    @abstractmethod
    def start_canary(self, version: str, faults: dict[str, str]) -> None:
        """Deploy the canary at `version` behind the router at weight 0 and wait until it is ready.
        `faults` are sandbox fault flags (e.g. error_rate=0.05); a target without fault injection
        refuses them with a UsageError."""

    @abstractmethod
    def canary_running(self) -> bool:
        """Whether any canary workload exists (running or starting)."""

    @abstractmethod
    def weight(self) -> int:
        """The canary's share of new connections and requests, percent, as the router has it now."""

    @abstractmethod
    def set_weight(self, percent: int) -> None:
        """Route `percent` of new connections and requests to the canary; open connections stay put."""

    @abstractmethod
    def traffic(self) -> Traffic:
        """Open connections per role, from the router or the service's own figures."""

    @abstractmethod
    def churn(self, fraction: float) -> int:
        """Close `fraction` (0..1) of the stable workload's WebSocket connections with a reconnect hint, so
        their clients come back through the router at the current weight. Returns connections closed."""

    def probe_endpoints(self) -> tuple[list[str], list[str]]:
        """Base URLs of each canary and each stable instance, for synthetic probe traffic sent straight to them
        (canary/probe.py). A target that cannot reach its instances from here refuses (exit 2)."""
        raise UsageError(f"--probe-rate: the {self.name} target cannot reach its instances from this machine; "
                         "run a load tester inside the cluster instead")

    @abstractmethod
    def rollback(self) -> None:
        """Weight 0, canary connections drained gracefully back to stable, the canary removed."""

    @abstractmethod
    def promote(self, version: str) -> None:
        """Replace the stable workload with `version` without dropping connections (drain with a reconnect
        hint), then weight 0 and the canary removed: every client ends on the new stable."""

    @abstractmethod
    def verify_stable(self) -> list[str]:
        """Problems with the end state (empty when all traffic is on stable, weight 0, no canary left)."""

    @abstractmethod
    def store(self) -> RunStore:
        """Where this service's rollout state and lock live on this target."""

    def describe(self) -> dict[str, Any]:
        """Where the rollout runs, for the run's record."""
        return {"target": self.name, "service": self.service}


class RunConflict(UsageError):
    """Another live run holds the service's rollout lock (exit 2 if it ever reaches the user)."""


class RunStore(ABC):
    """Where a rollout's state lives between transitions (a file in the sandbox's state dir, a ConfigMap on
    Kubernetes), plus the lock that refuses a second concurrent run on the same service."""

    @abstractmethod
    def load(self) -> dict[str, Any] | None:
        """The last saved document, None when no rollout was ever recorded for the service."""

    @abstractmethod
    def save(self, document: dict[str, Any]) -> None:
        """Persist the whole document atomically (after every transition)."""

    @abstractmethod
    def acquire(self, owner: str) -> None:
        """Take the service's rollout lock for `owner` (e.g. "host:pid"); raise RunConflict naming the
        holder when a live run has it. A holder that died (kill -9, lost node) never blocks forever."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock back (idempotent)."""

    def renew(self) -> None:
        """Keep a held lock alive (called every poll); a lock tied to the holder's process needs nothing."""
        return None

    def request(self, command: str) -> None:
        """Leave `command` (promote or abort) for the live run to take at its next poll."""
        document = self.load() or {}
        document["request"] = command
        self.save(document)

    def take_request(self) -> str | None:
        """The pending operator request, removed as it is taken (None when there is none)."""
        document = self.load() or {}
        command = document.pop("request", None)
        if command is not None:
            self.save(document)
        return None if command is None else str(command)
