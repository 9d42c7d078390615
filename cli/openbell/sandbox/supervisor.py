"""`sandbox up / down / status / logs`: bring the platform up from one state directory, find it again
from any later process, and take it down leaving nothing behind."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from openbell.errors import UnreachableError, UsageError
from openbell.sandbox import ports as port_alloc
from openbell.sandbox import processes, state
from openbell.sandbox.components import Component, Context, platform, port_keys
from openbell.sandbox.layout import Layout
from openbell.sandbox.probes import Health
from openbell.sandbox.state import SandboxState

Progress = Callable[[str], None]


@dataclass(frozen=True)
class UpOptions:
    gateway_replicas: int = 2
    scrape_interval_s: float = 1.0
    feed_rate: float = 500.0
    timeout_s: float = 120.0
    pinned_ports: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentStatus:
    """One row of `sandbox status`."""

    name: str
    pid: int | None
    running: bool
    address: str
    health: Health
    log: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "running": self.running, "address": self.address,
                "healthy": self.health.healthy, "detail": self.health.detail, "version": self.health.version,
                "log": self.log}


@dataclass(frozen=True)
class SandboxStatus:
    home: Path
    components: list[ComponentStatus]
    endpoints: dict[str, str]

    @property
    def state(self) -> str:
        if not any(c.running for c in self.components):
            return "down"
        return "up" if all(c.running and c.health.healthy for c in self.components) else "degraded"

    def to_json(self) -> dict[str, object]:
        return {"home": str(self.home), "state": self.state, "endpoints": self.endpoints,
                "components": [c.to_json() for c in self.components]}


def endpoints(ctx: Context) -> dict[str, str]:
    """Where a user (or a later command) reaches the sandbox's platform."""
    p = ctx.state.ports
    if not p:
        return {}
    return {
        "market_url": f"http://127.0.0.1:{p['haproxy']}",
        "websocket_url": f"ws://127.0.0.1:{p['haproxy']}/ws",
        "prometheus_url": f"http://127.0.0.1:{p['prometheus']}",
        "haproxy_stats_url": f"http://127.0.0.1:{p['haproxy-stats']}/stats",
        "haproxy_socket": str(ctx.layout.run / "haproxy.sock"),
        "kafka_bootstrap": ctx.kafka_bootstrap,
        "postgres_dsn": ctx.pg_dsn(),
        "feed_url": f"http://127.0.0.1:{p['feed']}",
        "enricher_url": f"http://127.0.0.1:{p['enricher']}",
        "ledger_url": f"http://127.0.0.1:{p['ledger']}",
        **{f"{name}_url": f"http://127.0.0.1:{p[name]}" for name in ctx.stable_gateways()},
    }


@contextlib.contextmanager
def locked(lay: Layout) -> Iterator[None]:
    """One `up` or `down` at a time per sandbox (status needs no lock: it only reads)."""
    lay.home.mkdir(parents=True, exist_ok=True)
    with open(lay.lock_file, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"sandbox {lay.home}: another `sandbox up/down` is running on it") from None
        yield


def context(lay: Layout, options: UpOptions | None = None) -> Context:
    saved = state.load(lay.state_file) or SandboxState()
    ctx = Context(lay, saved)
    if options is not None:
        ctx.feed_rate = options.feed_rate
    return ctx


def up(lay: Layout, options: UpOptions, progress: Progress = lambda _: None) -> SandboxStatus:
    """Start every component not already running, wait until all are healthy (or fail naming one)."""
    with locked(lay):
        lay.ensure()
        ctx = context(lay, options)
        running = _running(ctx)
        if running and ctx.state.gateway_replicas != options.gateway_replicas:
            raise UsageError(f"sandbox {lay.home} is up with {ctx.state.gateway_replicas} gateway replicas; "
                             "`openbell sandbox down` first to change --gateway-replicas")
        if not running:
            ctx.state.gateway_replicas = options.gateway_replicas
            ctx.state.scrape_interval_s = options.scrape_interval_s
        components = platform(ctx)
        for component in components:
            component.preflight()
        _assign_ports(ctx, options.pinned_ports, running)
        state.save(lay.state_file, ctx.state)
        deadline = time.monotonic() + options.timeout_s
        for stage in sorted({c.stage for c in components}):
            batch = [c for c in components if c.stage == stage]
            _start(ctx, [c for c in batch if c.name not in running], progress)
            _wait_healthy(ctx, batch, deadline, progress)
            for component in batch:
                if component.name not in running:
                    component.after_ready(ctx)
        if not ctx.state.started_at:
            ctx.state.started_at = time.time()
        state.save(lay.state_file, ctx.state)
        return status(lay)


def _running(ctx: Context) -> set[str]:
    return {name for name, rec in ctx.state.processes.items() if processes.is_running(rec)}


def _assign_ports(ctx: Context, pinned: dict[str, int], running: set[str]) -> None:
    """Keep the ports of running components; give every other key its pinned or a free port."""
    keys = port_keys(ctx)
    unknown = sorted(set(pinned) - set(keys))
    if unknown:
        raise UsageError(f"--port {unknown[0]}=...: unknown port name; expected one of {', '.join(keys)}")
    owners = {key: c.name for c in platform(ctx) for key in c.port_keys()}
    for key in keys:
        owner_running = owners.get(key, key) in running
        if owner_running:
            if key in pinned and pinned[key] != ctx.state.ports.get(key):
                raise UsageError(f"--port {key}={pinned[key]}: {owners.get(key, key)} is already running on "
                                 f"{ctx.state.ports.get(key)}; `sandbox down` first")
            continue
        if key in pinned:
            if not port_alloc.is_free(pinned[key]):
                raise UsageError(f"--port {key}={pinned[key]}: 127.0.0.1:{pinned[key]} is already in use")
            ctx.state.ports[key] = pinned[key]
        elif key in ctx.state.ports and port_alloc.is_free(ctx.state.ports[key]):
            continue  # same port as last time: bookmarks and dashboards keep working
        elif key in ctx.state.ports and running:
            # The running components are configured with this port: a restart must come back on it.
            raise UnreachableError(f"{owners.get(key, key)}: 127.0.0.1:{ctx.state.ports[key]} ({key}) is taken by"
                                   " another process; free it, or `openbell sandbox down` and up again")
        else:
            ctx.state.ports.pop(key, None)
    missing = [key for key in keys if key not in ctx.state.ports]
    taken = set(ctx.state.ports.values())
    for key, port in zip(missing, port_alloc.pick(len(missing), avoid=taken), strict=True):
        ctx.state.ports[key] = port


def _start(ctx: Context, batch: list[Component], progress: Progress) -> None:
    for component in batch:
        for key in component.port_keys():
            if not port_alloc.is_free(ctx.port(key)):
                raise UnreachableError(f"{component.name}: 127.0.0.1:{ctx.port(key)} ({key}) is taken by another"
                                       " process; free it or `openbell sandbox down` and up again")
    # Preparation (initdb, storage format, configs) runs side by side: it is most of a cold start.
    with ThreadPoolExecutor(max_workers=max(1, len(batch))) as pool:
        for future in [pool.submit(c.prepare, ctx) for c in batch]:
            future.result()
    for component in batch:
        progress(f"starting {component.name} on {component.address(ctx)}")
        record = processes.spawn(component.argv(ctx), ctx.layout.log(component.name), component.env(ctx),
                                 ctx.layout.home, cwd=component.cwd(ctx), user=component.user())
        ctx.state.processes[component.name] = record
        state.save(ctx.layout.state_file, ctx.state)


def _wait_healthy(ctx: Context, batch: list[Component], deadline: float, progress: Progress) -> None:
    pending = {c.name: c for c in batch}
    last: dict[str, Health] = {}
    while pending:
        for name, component in list(pending.items()):
            record = ctx.state.processes.get(name)
            if record is None or not processes.is_running(record):
                raise _failed(ctx, component, "exited during start-up")
            health = component.probe(ctx)
            last[name] = health
            if health.healthy:
                progress(f"{name} healthy ({health.detail})")
                del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            name, component = next(iter(pending.items()))
            raise _failed(ctx, component, f"not healthy in time: {last[name].detail}")
        time.sleep(0.2)


def _failed(ctx: Context, component: Component, why: str) -> UnreachableError:
    log = ctx.layout.log(component.name)
    lines = processes.tail(log, 15)
    body = "\n".join("    " + line for line in lines) if lines else "    (log is empty)"
    return UnreachableError(f"sandbox: {component.name} {why} (log {log}); its last lines:\n{body}")


def status(lay: Layout) -> SandboxStatus:
    """Every component: pid, whether it runs, its address, its health from its real endpoint, its version."""
    ctx = context(lay)
    if not ctx.state.ports:
        return SandboxStatus(lay.home, [], {})
    components = platform(ctx)
    extra = [name for name in ctx.state.processes if name not in {c.name for c in components}]

    def one(component: Component) -> ComponentStatus:
        record = ctx.state.processes.get(component.name)
        alive = record is not None and processes.is_running(record)
        health = component.probe(ctx) if alive else Health(False, "not running")
        return ComponentStatus(component.name, record.pid if record else None, alive, component.address(ctx),
                               health, str(lay.log(component.name)))

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(one, components))
    for name in extra:
        record = ctx.state.processes[name]
        alive = processes.is_running(record)
        rows.append(ComponentStatus(name, record.pid, alive, f"127.0.0.1:{ctx.state.ports.get(name, 0)}",
                                    Health(alive, "running" if alive else "not running"), str(lay.log(name))))
    return SandboxStatus(lay.home, rows, endpoints(ctx))


@dataclass(frozen=True)
class DownReport:
    stopped: list[str]
    killed: list[str]
    orphans: list[int]
    purged: bool


def down(lay: Layout, purge: bool = False, progress: Progress = lambda _: None) -> DownReport:
    """Stop everything the sandbox started (reverse stage order, by pid and process group), sweep up
    anything still tagged with this sandbox, and clear stale state. `purge` also deletes its data."""
    if not lay.home.exists():
        return DownReport([], [], [], False)
    with locked(lay):
        ctx = context(lay)
        order = {c.name: c for c in platform(ctx)} if ctx.state.ports else {}
        stopped: list[str] = []
        killed: list[str] = []
        by_stage: dict[int, list[str]] = {}
        for name in ctx.state.processes:
            stage = order[name].stage if name in order else 2
            by_stage.setdefault(stage, []).append(name)
        for stage in sorted(by_stage, reverse=True):
            names = by_stage[stage]

            def stop_one(name: str) -> tuple[str, bool | None]:
                record = ctx.state.processes[name]
                if not processes.is_running(record):
                    return name, None
                component = order.get(name)
                progress(f"stopping {name} (pid {record.pid})")
                sig = component.stop_signal if component else 15
                timeout = component.stop_timeout_s if component else 15.0
                return name, processes.stop(record, sig, timeout)

            with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
                for name, clean in pool.map(stop_one, names):
                    if clean is True:
                        stopped.append(name)
                    elif clean is False:
                        killed.append(name)
        orphans = processes.kill_orphans(lay.home)
        ctx.state.processes.clear()
        ctx.state.started_at = 0.0
        (lay.run / "haproxy.sock").unlink(missing_ok=True)
        if purge:
            shutil.rmtree(lay.pg_root(), ignore_errors=True)
            for sub in (lay.data, lay.logs, lay.config, lay.run):
                shutil.rmtree(sub, ignore_errors=True)
            lay.state_file.unlink(missing_ok=True)
        elif ctx.state.ports:
            state.save(lay.state_file, ctx.state)
        return DownReport(stopped, killed, orphans, purge)


def component_names(lay: Layout) -> list[str]:
    ctx = context(lay)
    names = [c.name for c in platform(ctx)]
    return names + [n for n in ctx.state.processes if n not in names]
