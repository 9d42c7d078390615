"""`sandbox up / down / status / logs`: bring the platform up from one state directory, find it again
from any later process, and take it down leaving nothing behind."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from openbell.errors import SpecError, UnreachableError, UsageError
from openbell.sandbox import ports as port_alloc
from openbell.sandbox import probes, processes, state
from openbell.sandbox.components import Component, Context, Gateway, platform, port_keys, write_gateway_targets
from openbell.sandbox.haproxy_router import CANARY_BACKEND, STABLE_BACKEND, HAProxyRouter
from openbell.sandbox.layout import Layout
from openbell.sandbox.probes import Health
from openbell.sandbox.state import SandboxState

Progress = Callable[[str], None]


@dataclass(frozen=True)
class UpOptions:
    """What `sandbox up` was asked for; None keeps what the sandbox already has (or the default)."""

    gateway_replicas: int | None = None
    scrape_interval_s: float | None = None
    feed_rate: float | None = None
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
def locked(lay: Layout, wait_s: float = 0.0) -> Iterator[None]:
    """One `up` or `down` at a time per sandbox (status needs no lock: it only reads). `wait_s`: how long
    to wait for the holder (a rollback waits for an `up` to finish rather than give up)."""
    lay.home.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    with open(lay.lock_file, "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise UsageError(f"sandbox {lay.home}: another `sandbox up/down` is running on it") from None
                time.sleep(0.2)
        yield


def context(lay: Layout) -> Context:
    return Context(lay, state.load(lay.state_file) or SandboxState())


def _apply_options(ctx: Context, options: UpOptions, running: set[str]) -> None:
    """Options change a stopped sandbox; a running one keeps its own, and a different ask is refused
    rather than silently ignored."""
    asked = {"gateway_replicas": (options.gateway_replicas, "--gateway-replicas"),
             "scrape_interval_s": (options.scrape_interval_s, "--scrape-interval"),
             "feed_rate": (options.feed_rate, "--feed-rate")}
    for attr, (value, flag) in asked.items():
        if value is None or value == getattr(ctx.state, attr):
            continue
        if running:
            raise UsageError(f"{flag}: sandbox {ctx.layout.home} is up with {getattr(ctx.state, attr):g}; "
                             f"`openbell sandbox down` first to change it")
        setattr(ctx.state, attr, value)


def up(lay: Layout, options: UpOptions, progress: Progress = lambda _: None) -> SandboxStatus:
    """Start every component not already running, wait until all are healthy (or fail naming one)."""
    with locked(lay):
        lay.ensure()
        ctx = context(lay)
        running = _running(ctx)
        _apply_options(ctx, options, running)
        components = platform(ctx)
        for component in components:
            component.preflight()
        _assign_ports(ctx, options.pinned_ports, running)
        state.save(lay.state_file, ctx.state)
        deadline = time.monotonic() + options.timeout_s
        seen: dict[str, Health] = {}
        for stage in sorted({c.stage for c in components}):
            batch = [c for c in components if c.stage == stage]
            _start(ctx, [c for c in batch if c.name not in running], progress)
            seen.update(_wait_healthy(ctx, batch, deadline, progress))
            # Idempotent (topics, database): also after a start that failed half way through.
            for component in batch:
                component.after_ready(ctx)
        if not ctx.state.started_at:
            ctx.state.started_at = time.time()
        state.save(lay.state_file, ctx.state)
        # Report the health just seen rather than probing again: a slow probe on a busy machine must not
        # turn a successful start into "degraded".
        rows = [_row(ctx, c, seen[c.name]) for c in components]
        return SandboxStatus(lay.home, rows + _extra_rows(ctx, components), endpoints(ctx))


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
        previous = ctx.state.processes.get(component.name)
        if previous is not None:
            # A crashed leader can leave children holding its resources (PostgreSQL backends holding
            # shared memory): they go before the restart.
            processes.kill_leftovers(previous, ctx.layout.home)
        progress(f"starting {component.name} on {component.address(ctx)}")
        record = processes.spawn(component.argv(ctx), ctx.layout.log(component.name), component.env(ctx),
                                 ctx.layout.home, cwd=component.cwd(ctx), user=component.user(),
                                 niceness=component.niceness)
        ctx.state.processes[component.name] = record
        state.save(ctx.layout.state_file, ctx.state)


def _wait_healthy(ctx: Context, batch: list[Component], deadline: float, progress: Progress
                  ) -> dict[str, Health]:
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
            break
        if time.monotonic() > deadline:
            name, component = next(iter(pending.items()))
            raise _failed(ctx, component, f"not healthy in time: {last[name].detail}")
        time.sleep(0.2)
    return last


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

    def one(component: Component) -> ComponentStatus:
        record = ctx.state.processes.get(component.name)
        alive = record is not None and processes.is_running(record)
        return _row(ctx, component, component.probe(ctx) if alive else Health(False, "not running"))

    probes.import_clients()
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(one, components))
    return SandboxStatus(lay.home, rows + _extra_rows(ctx, components), endpoints(ctx))


def _row(ctx: Context, component: Component, health: Health) -> ComponentStatus:
    record = ctx.state.processes.get(component.name)
    alive = record is not None and processes.is_running(record)
    return ComponentStatus(component.name, record.pid if record else None, alive, component.address(ctx),
                           health, str(ctx.layout.log(component.name)))


def _extra_rows(ctx: Context, components: list[Component]) -> list[ComponentStatus]:
    """Processes the sandbox runs beyond its fixed platform (a rollout's canary replicas)."""
    known = {c.name for c in components}
    rows = []
    for name, record in ctx.state.processes.items():
        if name in known:
            continue
        alive = processes.is_running(record)
        port = ctx.state.ports.get(name, 0)
        health = probes.http_ready(port) if alive and port else Health(False, "not running")
        rows.append(ComponentStatus(name, record.pid, alive, f"127.0.0.1:{port}", health, str(ctx.layout.log(name))))
    return rows


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
        try:
            ctx = context(lay)
        except SpecError:
            # Unreadable state: nothing can be stopped by pid, but everything this sandbox started is
            # tagged and can still be swept; the bad file goes aside so the next `up` starts clean.
            orphans = processes.kill_orphans(lay.home)
            lay.state_file.rename(lay.state_file.with_suffix(".corrupt"))
            return DownReport([], [], orphans, False)
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


def router(lay: Layout) -> HAProxyRouter:
    """The running sandbox's traffic router (HAProxy's admin socket)."""
    return HAProxyRouter(lay.run / "haproxy.sock", lay.config / "haproxy-weights.map")


def start_canary(lay: Layout, version: str, replicas: int = 1, faults: dict[str, str] | None = None,
                 timeout_s: float = 60.0, progress: Progress = lambda _: None) -> list[ComponentStatus]:
    """Start `replicas` gateway processes at `version` in the canary slots, wait until they are ready,
    enable them in HAProxy's canary backend (at weight 0 until the router is told otherwise) and add them
    to Prometheus' gateway targets. `faults` (e.g. {"error_rate": "0.05"}) pass to the gateway's flags."""
    with locked(lay):
        ctx = context(lay)
        if "haproxy" not in _running(ctx):
            raise UnreachableError(f"sandbox {lay.home} is not up: `openbell sandbox up` first")
        if not 1 <= replicas <= ctx.state.canary_slots:
            raise UsageError(f"canary replicas: expected 1..{ctx.state.canary_slots}, got {replicas}")
        names = ctx.canary_gateways()[:replicas]
        components: list[Component] = [Gateway(replica=name, version=version, faults=dict(faults or {}))
                                       for name in names]
        for component in components:
            component.preflight()
        running = _running(ctx)
        _start(ctx, [c for c in components if c.name not in running], progress)
        seen = _wait_healthy(ctx, components, time.monotonic() + timeout_s, progress)
        route = router(lay)
        for name in names:
            route.set_server(CANARY_BACKEND, name, enabled=True)
        write_gateway_targets(ctx, [(name, version) for name in names])
        state.save(lay.state_file, ctx.state)
        return [_row(ctx, c, seen[c.name]) for c in components]


def stop_canary(lay: Layout, progress: Progress = lambda _: None) -> list[str]:
    """Canary weight to 0, its servers disabled, its processes drained (SIGTERM: clients get a reconnect
    hint and come back through HAProxy to stable) and stopped, its Prometheus targets removed."""
    # Weight 0 first, before waiting for the sandbox lock: no new trader may land on the canary meanwhile.
    router(lay).set_canary_weight(0)
    with locked(lay, wait_s=120.0):
        ctx = context(lay)
        route = router(lay)
        route.set_canary_weight(0)
        stopped = []
        for name in ctx.canary_gateways():
            record = ctx.state.processes.get(name)
            route.set_server(CANARY_BACKEND, name, enabled=False)
            if record is None:
                continue
            progress(f"stopping {name} (pid {record.pid})")
            processes.stop(record, signal.SIGTERM, timeout_s=20)
            del ctx.state.processes[name]
            stopped.append(name)
        write_gateway_targets(ctx)
        state.save(lay.state_file, ctx.state)
        return stopped


def replace_stable(lay: Layout, version: str, timeout_s: float = 60.0,
                   progress: Progress = lambda _: None) -> list[str]:
    """Restart the stable gateways at `version`, one at a time: each is taken out of HAProxy, drained
    (SIGTERM: its clients get a reconnect hint and come back through HAProxy to the others or the
    canary), restarted, and put back once ready. The new version is recorded, so a later `up` keeps it."""
    with locked(lay, wait_s=120.0):
        ctx = context(lay)
        if "haproxy" not in _running(ctx):
            raise UnreachableError(f"sandbox {lay.home} is not up: `openbell sandbox up` first")
        route = router(lay)
        replaced = []
        ctx.state.stable_version = version
        state.save(lay.state_file, ctx.state)
        for name in ctx.stable_gateways():
            component = Gateway(replica=name, version=version)
            component.preflight()
            route.set_server(STABLE_BACKEND, name, enabled=False)
            record = ctx.state.processes.get(name)
            if record is not None:
                progress(f"draining {name} (pid {record.pid})")
                processes.stop(record, signal.SIGTERM, timeout_s=20)
                del ctx.state.processes[name]
            _start(ctx, [component], progress)
            _wait_healthy(ctx, [component], time.monotonic() + timeout_s, progress)
            route.set_server(STABLE_BACKEND, name, enabled=True)
            replaced.append(name)
        state.save(lay.state_file, ctx.state)
        return replaced


def stable_version(lay: Layout) -> str:
    return context(lay).state.stable_version


def _running_context(component: str, lay: Layout | None) -> Context | None:
    """The default (or given) sandbox's context while `component` of it runs, else None: read from the
    state file and /proc, without probing anything (the sandbox is every command's fallback target)."""
    from openbell.sandbox.layout import default_home

    try:
        ctx = context(lay or Layout(default_home()))
    except SpecError:
        return None
    record = ctx.state.processes.get(component)
    if record is None or component not in ctx.state.ports or not processes.is_running(record):
        return None
    return ctx


def running_url(component: str, lay: Layout | None = None) -> str | None:
    """http://127.0.0.1:PORT of a component of the sandbox while it runs, else None."""
    ctx = _running_context(component, lay)
    return f"http://127.0.0.1:{ctx.state.ports[component]}" if ctx else None


SETTLE_S = 45.0


def up_and_settled(lay: Layout, progress: Progress = lambda _: None, settle_s: float = SETTLE_S) -> SandboxStatus:
    """`up`, every component healthy (else UnreachableError naming those that are not), and at least
    `settle_s` old: a younger platform is still settling (consumers catching up, its SLIs' first scrapes), and
    what is measured or gated on it next must not be its start-up."""
    started = time.monotonic()
    status = up(lay, UpOptions(), progress)
    if status.state != "up":
        bad = [c.name for c in status.components if not (c.running and c.health.healthy)]
        raise UnreachableError(f"sandbox at {lay.home}: not healthy ({', '.join(bad)}); `openbell sandbox status`")
    progress(f"up and healthy in {time.monotonic() - started:.1f}s")
    saved = state.load(lay.state_file)
    age = time.time() - saved.started_at if saved and saved.started_at else settle_s
    if age < settle_s:
        progress(f"settling for {settle_s - age:.0f}s (the platform is {age:.0f}s old; its SLIs need a few scrapes)")
        time.sleep(settle_s - age)
    return status


def running_endpoints(lay: Layout | None = None) -> dict[str, str] | None:
    """The sandbox's endpoints while its entry point (HAProxy) runs, else None."""
    ctx = _running_context("haproxy", lay)
    return endpoints(ctx) if ctx else None
