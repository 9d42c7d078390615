"""Where the platform runs, resolved in one place for every command.

- `prometheus_url`: `--prometheus`, else $OPENBELL_PROMETHEUS_URL, else the running sandbox's, else
  127.0.0.1:9090 (what `slo`, `chaos` probes and the safeguard ask).
- `entry`: where virtual traders go: the running sandbox's router, or the URL of a platform's entry point.
- `canary_target`: the router and a canary's lifecycle, on the sandbox or on Kubernetes (targets/base.py).
- `Sandbox`: the local platform as chaos sees it: its components' processes, ports and health, stopping and
  starting them, and signals to them. Chaos actions and probes go through it, never into sandbox/ itself.

"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from openbell.errors import SpecError, UnreachableError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from openbell.sandbox.layout import Layout
    from openbell.sandbox.probes import Health
    from openbell.sandbox.processes import ProcessRecord
    from openbell.targets.base import CanaryTarget

PROMETHEUS_ENV = "OPENBELL_PROMETHEUS_URL"
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"


def prometheus_url(explicit: str | None = None, home: str | Path | None = None) -> str:
    """`explicit`, else $OPENBELL_PROMETHEUS_URL, else the sandbox's running Prometheus, else 127.0.0.1:9090."""
    if explicit:
        return explicit
    env = os.environ.get(PROMETHEUS_ENV)
    if env:
        return env
    from openbell.sandbox.supervisor import running_url

    return running_url("prometheus", sandbox_layout(home)) or DEFAULT_PROMETHEUS


def sandbox_layout(home: str | Path | None = None) -> Layout:
    """The sandbox's directories: `home`, else $OPENBELL_HOME, else the default state directory."""
    from openbell.sandbox.layout import Layout, default_home

    return Layout(Path(home).expanduser().resolve() if home else default_home())


@dataclass(frozen=True)
class Entry:
    """Where the virtual traders go: REST and WebSocket entry points, and what watches the platform."""

    name: str
    base_url: str
    ws_url: str
    feed_url: str | None = None
    prometheus_url: str | None = None

    @property
    def on_this_machine(self) -> bool:
        """True when the platform runs here (the sandbox, or a loopback URL): a load generator then shares its
        cores."""
        host = urlsplit(self.base_url).hostname or ""
        return self.name == "sandbox" or host == "localhost" or host.startswith("127.") or host == "::1"


def entry(target: str, prometheus: str | None = None) -> Entry:
    """`sandbox` (the running one, from its state) or an http(s) URL of the platform's entry point."""
    if target == "sandbox":
        from openbell.sandbox.supervisor import running_endpoints

        ep = running_endpoints()
        if ep is None:
            raise UnreachableError("target sandbox: it is not running; `openbell sandbox up` first")
        return Entry("sandbox", ep["market_url"], ep["websocket_url"], ep["feed_url"],
                     prometheus or ep["prometheus_url"])
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SpecError("--target", target, "expected sandbox or an http(s):// URL of the platform's entry point")
    base = f"{parts.scheme}://{parts.netloc}"
    ws = ("wss://" if parts.scheme == "https" else "ws://") + parts.netloc + "/ws"
    return Entry(target, base, ws, None, prometheus)


def canary_target(service: str, target: str, home: str | Path | None, namespace: str, kube_context: str | None,
                  prometheus: str | None, progress: Callable[[str], None]) -> CanaryTarget:
    """The router and the canary's lifecycle for `service`: the sandbox at `home` (else the default), or the
    cluster of `kube_context` (its `namespace`, and the Prometheus that watches it)."""
    if target == "sandbox":
        from openbell.targets.sandbox import SandboxTarget

        return SandboxTarget(service=service, progress=progress, home=sandbox_layout(home).home)
    if target == "kubernetes":
        from openbell.targets.kubernetes import KubernetesTarget

        return KubernetesTarget(service=service, progress=progress, namespace=namespace, kube_context=kube_context,
                                prometheus=prometheus or "")
    raise UsageError(f"--target {target!r}: expected sandbox or kubernetes")


class Sandbox:
    """The sandbox at `home` (else $OPENBELL_HOME, else the default), read afresh from its state file on each
    question: another process (`sandbox up`, a restart action) may have changed it meanwhile."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.layout = sandbox_layout(home)
        self.home = self.layout.home

    def _ctx(self) -> Any:
        from openbell.sandbox import supervisor

        return supervisor.context(self.layout)

    def started(self) -> Any:
        """The sandbox's context; an error when it was never started."""
        ctx = self._ctx()
        if not ctx.state.ports:
            raise UnreachableError(f"sandbox {self.home}: it was never started; `openbell sandbox up` first")
        return ctx

    def endpoints(self) -> dict[str, str]:
        """Its endpoints (market_url, prometheus_url, kafka_bootstrap, feed_url, postgres_dsn, ...)."""
        from openbell.sandbox import supervisor

        found = supervisor.endpoints(self._ctx())
        if not found:
            raise UnreachableError(f"sandbox {self.home}: it was never started; `openbell sandbox up` first")
        return found

    def scrape_interval_s(self) -> float | None:
        """How often its Prometheus scrapes (None when the sandbox was never started)."""
        from openbell.sandbox import state

        saved = state.load(self.layout.state_file)
        return float(saved.scrape_interval_s) if saved else None

    def port(self, component: str) -> int:
        return int(self.started().port(component))

    def components(self) -> list[str]:
        """Every component a fault or probe may name: the platform's, and the gateway replicas it runs."""
        from openbell.sandbox.components import platform

        ctx = self.started()
        return [c.name for c in platform(ctx)] + [n for n in ctx.state.processes if n.startswith("gateway-")]

    def platform_components(self) -> list[str]:
        """The platform's own components (what `sandbox status` lists), without extra replicas."""
        from openbell.sandbox.components import platform

        return [c.name for c in platform(self._ctx())]

    def known(self, component: str) -> str:
        names = self.components()
        if component not in names:
            raise SpecError("component", component, f"unknown sandbox component; expected one of {', '.join(names)}")
        return component

    def stable_gateways(self) -> list[str]:
        return list(self.started().stable_gateways())

    def process(self, component: str) -> ProcessRecord | None:
        """The component's recorded process while it runs (pid *and* start time match), else None."""
        from openbell.sandbox import processes

        record = self._ctx().state.processes.get(component)
        return record if record is not None and processes.is_running(record) else None

    def running(self) -> list[str]:
        """The components whose recorded processes run now."""
        return [name for name in self._ctx().state.processes if self.process(name) is not None]

    def frozen(self, component: str) -> bool:
        """True when the component's process is stopped by a signal (SIGSTOP)."""
        from openbell import proc

        record = self.process(component)
        stat = proc.stat(record.pid) if record else None
        return stat is not None and stat.stopped

    def signal(self, component: str, sig: int, group: bool = False) -> ProcessRecord | None:
        """Send `sig` to the running component's process (with `group`, to its whole process group when it leads
        one, as the sandbox starts each in its own session); None when it is not running."""
        record = self.process(component)
        if record is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            if group and os.getpgid(record.pid) == record.pid:
                os.killpg(record.pid, sig)
            else:
                os.kill(record.pid, sig)
        return record

    def stop(self, component: str) -> bool:
        """Stop one component the way `sandbox down` would (its stop signal, then SIGKILL after its timeout).
        False when it was not running."""
        import signal

        from openbell.sandbox import processes
        from openbell.sandbox.components import platform

        record = self.process(component)
        if record is None:
            return False
        spec = next((c for c in platform(self.started()) if c.name == component), None)
        processes.stop(record, spec.stop_signal if spec else signal.SIGTERM, spec.stop_timeout_s if spec else 15.0)
        return True

    def up(self, timeout_s: float) -> str:
        """`sandbox up` with the sandbox's own options; waits (bounded) for another up/down holding its lock."""
        from openbell.sandbox import supervisor

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                left = max(10.0, deadline - time.monotonic())
                return str(supervisor.up(self.layout, supervisor.UpOptions(timeout_s=left)).state)
            except UsageError as exc:
                if "another" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def health(self, component: str = "all") -> dict[str, tuple[bool, Health]]:
        """Whether each component (or the one named) runs and answers its real health endpoint."""
        from openbell.sandbox import supervisor
        from openbell.sandbox.components import platform
        from openbell.sandbox.probes import Health

        if component == "all":
            rows = {r.name: (r.running, r.health) for r in supervisor.status(self.layout).components}
            return rows or {"sandbox": (False, Health(False, "never started"))}
        ctx = self._ctx()
        named = {c.name: c for c in platform(ctx)}
        if component not in named:
            raise SpecError("component_healthy", "component",
                            f"unknown component {component!r}; expected all or one of {', '.join(named)}")
        alive = self.process(component) is not None
        return {component: (alive, named[component].probe(ctx) if alive else Health(False, "not running"))}
