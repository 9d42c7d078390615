"""The sandbox's components: how each is prepared, started, probed and stopped.

Stages start in order; components within a stage start together. Stage 1 is the platform's stateful
core and its observers (PostgreSQL, Kafka, HAProxy, Prometheus), stage 2 the services that need Kafka
and PostgreSQL to answer, stage 3 the market feed: it starts once the enricher is in its consumer group, so
a fresh platform does not begin with a backlog of ticks made while the enricher was still loading (its
new group starts at the earliest offset and would begin seconds behind: a consumer-lag burn at birth).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from openbell import paths
from openbell.errors import UnreachableError
from openbell.sandbox import configs, layout, probes
from openbell.sandbox.layout import Layout
from openbell.sandbox.probes import Health
from openbell.sandbox.state import SandboxState

TOPICS = {"ticks": 6, "enriched": 6, "orders": 3}
"""Partitions per topic (replication factor 1: one broker)."""

PG_USER = "openbell"
LEDGER_DB = "ledger"

# The tick path (feed -> Kafka -> enricher -> Kafka -> proxy -> gateways -> HAProxy) runs ahead of everything
# else on the machine: in production it has nodes of its own, here it shares two cores with the load
# generator (niced the other way, see load/runner.py), Prometheus, the CLI and whatever the user is doing. A
# tick waiting for a core is push latency the platform did not cause; a busy machine must not page it.
# Raising priority needs root (or CAP_SYS_NICE): without it the sandbox runs at the usual priority.
TICK_PATH_NICENESS = -10


@dataclass
class Context:
    """What a component needs to render its config and command line."""

    layout: Layout
    state: SandboxState

    def port(self, key: str) -> int:
        return self.state.ports[key]

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.port('kafka')}"

    @property
    def kafka_edge_bootstrap(self) -> str:
        """Where the gateways reach Kafka: through the fault proxy (sandbox/netfault.py)."""
        return f"127.0.0.1:{self.port('kafka-proxy')}"

    def pg_dsn(self, database: str = LEDGER_DB) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port('postgres')}/{database}"

    def stable_gateways(self) -> list[str]:
        return [f"gateway-{i}" for i in range(1, self.state.gateway_replicas + 1)]

    def canary_gateways(self) -> list[str]:
        return [f"gateway-canary-{i}" for i in range(1, self.state.canary_slots + 1)]


class Component(ABC):
    """One process of the sandbox. Subclasses say how to prepare, start and probe it."""

    name: str = ""
    stage: int = 1
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 15.0
    niceness: int = 0  # the scheduling priority it runs at (TICK_PATH_NICENESS for the tick path)

    def port_keys(self) -> list[str]:
        return [self.name]

    def address(self, ctx: Context) -> str:
        return f"127.0.0.1:{ctx.port(self.port_keys()[0])}"

    def user(self) -> str | None:
        return None

    def preflight(self) -> None:
        """Raise UnreachableError when a program this component needs is missing (before anything starts)."""
        return None  # optional hook

    def prepare(self, ctx: Context) -> None:
        """Write configs, initialise data directories."""
        return None  # optional hook

    @abstractmethod
    def argv(self, ctx: Context) -> list[str]:
        """The command line that runs it (in the foreground: the sandbox daemonises it)."""

    def env(self, ctx: Context) -> dict[str, str]:
        return {}

    def cwd(self, ctx: Context) -> Path:
        return ctx.layout.home

    @abstractmethod
    def probe(self, ctx: Context) -> Health:
        """Its health, asked of its real endpoint."""

    def after_ready(self, ctx: Context) -> None:
        """Runs once the component answers its probe (create topics, databases)."""
        return None  # optional hook


class Kafka(Component):
    name = "kafka"
    stop_timeout_s = 30.0
    niceness = TICK_PATH_NICENESS

    def port_keys(self) -> list[str]:
        return ["kafka", "kafka-controller", "kafka-metrics", "kafka-edge"]

    def preflight(self) -> None:
        layout.java()
        layout.kafka_lib()

    def _dir(self, ctx: Context) -> Path:
        return ctx.layout.data / "kafka"

    def prepare(self, ctx: Context) -> None:
        cfg = ctx.layout.config
        (cfg / "kafka.properties").write_text(
            configs.kafka_properties(ctx.port("kafka"), ctx.port("kafka-controller"), self._dir(ctx),
                                     partitions=TOPICS["ticks"], edge_port=ctx.port("kafka-edge"),
                                     edge_advertised_port=ctx.port("kafka-proxy")))
        (cfg / "kafka-log4j2.xml").write_text(configs.LOG4J2_SERVER)
        (cfg / "kafka-tools-log4j2.xml").write_text(configs.LOG4J2_TOOLS)
        (cfg / "kafka-jmx.yaml").write_text(configs.JMX_EXPORTER)
        if (self._dir(ctx) / "meta.properties").exists():
            return
        classpath = f"{layout.kafka_lib()}/*"
        tool = [str(layout.java()), "-cp", classpath,
                f"-Dlog4j2.configurationFile={cfg / 'kafka-tools-log4j2.xml'}", "kafka.tools.StorageTool"]
        if not ctx.state.kafka_cluster_id:
            ctx.state.kafka_cluster_id = _run([*tool, "random-uuid"], "kafka: storage random-uuid").strip()
        fmt = [*tool, "format", "-t", ctx.state.kafka_cluster_id, "-c", str(cfg / "kafka.properties"), "--standalone"]
        _run(fmt, "kafka: storage format")

    def argv(self, ctx: Context) -> list[str]:
        cfg = ctx.layout.config
        # C2 as well as C1: at the bell's rates the broker is the platform's largest process, and C2's code
        # takes a fifth off its CPU (0.46 -> 0.37 of a core at 600 ticks/s, measured side by side); its
        # compiles cost a burst of CPU in the first minute, which the gameday's settling covers.
        argv = [str(layout.java()), "-Xms64m", "-Xmx256m", "-XX:+UseSerialGC",
                "-XX:ReservedCodeCacheSize=64m", "-Xss512k", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={cfg / 'kafka-log4j2.xml'}"]
        agent = layout.jmx_agent()
        if agent is not None:
            argv.append(f"-javaagent:{agent}=127.0.0.1:{ctx.port('kafka-metrics')}:{cfg / 'kafka-jmx.yaml'}")
        return [*argv, "-cp", f"{layout.kafka_lib()}/*", "kafka.Kafka", str(cfg / "kafka.properties")]

    def probe(self, ctx: Context) -> Health:
        return probes.kafka(ctx.port("kafka"), _logged_kafka_version(ctx.layout.log(self.name)))

    def after_ready(self, ctx: Context) -> None:
        create_topics(ctx.kafka_bootstrap)


def _logged_kafka_version(log: Path) -> str:
    """The version the running broker printed at start-up ("Kafka version: 4.1.0"), from its log."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4 * 1024 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    found = re.findall(r"Kafka version: (\S+)", text)
    return found[-1] if found else ""


def create_topics(bootstrap: str, timeout_s: float = 20.0) -> None:
    """Create the platform's topics, leaving existing ones as they are."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(name, num_partitions=count, replication_factor=1,
                 config={"retention.ms": str(6 * 3600 * 1000)} if name != "orders" else {})
        for name, count in TOPICS.items() if name not in existing
    ]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise UnreachableError(f"kafka: could not create topic {name}: {exc}") from exc


class Postgres(Component):
    name = "postgres"
    # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
    stop_signal = signal.SIGINT
    stop_timeout_s = 30.0

    def user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def preflight(self) -> None:
        layout.pg_bin("postgres")
        layout.pg_bin("initdb")

    def prepare(self, ctx: Context) -> None:
        root = ctx.layout.pg_root()
        data = root / "data"
        root.mkdir(parents=True, exist_ok=True)
        if self.user():
            shutil.chown(root.parent, "root")
            root.parent.chmod(0o755)
            shutil.chown(root, "postgres", "postgres")
            root.chmod(0o700)
        if (data / "PG_VERSION").exists():
            return
        _run([str(layout.pg_bin("initdb")), "-D", str(data), "-A", "trust", "-U", PG_USER, "-E", "UTF8",
              "--no-sync", "--no-instructions"], "postgres: initdb", user=self.user())

    def argv(self, ctx: Context) -> list[str]:
        root = ctx.layout.pg_root()
        return [str(layout.pg_bin("postgres")), "-D", str(root / "data"), "-p", str(ctx.port("postgres")),
                "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                "-c", "shared_buffers=128MB", "-c", "logging_collector=off", "-c", "fsync=on",
                "-c", "synchronous_commit=on"]

    def cwd(self, ctx: Context) -> Path:
        return ctx.layout.pg_root()

    def probe(self, ctx: Context) -> Health:
        return probes.postgres(ctx.pg_dsn("postgres"))

    def after_ready(self, ctx: Context) -> None:
        import psycopg

        with psycopg.connect(ctx.pg_dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (LEDGER_DB,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{LEDGER_DB}"')


class PostgresExporter(Component):
    name = "postgres-exporter"
    stage = 2

    def preflight(self) -> None:
        if layout.postgres_exporter() is None:
            raise UnreachableError("postgres-exporter: not found; install Debian's prometheus-postgres-exporter"
                                   " (make setup)")

    def argv(self, ctx: Context) -> list[str]:
        exporter = layout.postgres_exporter()
        assert exporter is not None
        return [str(exporter), f"--web.listen-address=127.0.0.1:{ctx.port(self.name)}"]

    def env(self, ctx: Context) -> dict[str, str]:
        return {"DATA_SOURCE_NAME": ctx.pg_dsn("postgres") + "?sslmode=disable"}

    def probe(self, ctx: Context) -> Health:
        return probes.metrics_endpoint(ctx.port(self.name))


class KafkaProxy(Component):
    """The network between the gateways and Kafka: a TCP proxy whose latency or partition a chaos
    experiment sets at runtime (sandbox/netfault.py). It starts with Kafka's stage, before the gateways."""

    name = "kafka-proxy"
    niceness = TICK_PATH_NICENESS

    def port_keys(self) -> list[str]:
        return ["kafka-proxy", "kafka-proxy-admin"]

    def preflight(self) -> None:
        if not _importable("aiohttp"):
            raise UnreachableError("kafka-proxy: Python module aiohttp missing; run `make setup`")

    def argv(self, ctx: Context) -> list[str]:
        return [sys.executable, "-m", "openbell.sandbox.netfault", "--listen", self.address(ctx),
                "--upstream", f"127.0.0.1:{ctx.port('kafka-edge')}",
                "--admin", f"127.0.0.1:{ctx.port('kafka-proxy-admin')}"]

    def probe(self, ctx: Context) -> Health:
        return probes.http_ready(ctx.port("kafka-proxy-admin"), path="/healthz", version_path=None)


class PythonService(Component):
    """One of the platform's Python services: `python -m services.<name>` with the common flags."""

    stage = 2
    modules: tuple[str, ...] = ("aiohttp", "confluent_kafka", "prometheus_client")

    def preflight(self) -> None:
        for module in self.modules:
            if not _importable(module):
                raise UnreachableError(f"{self.name}: Python module {module} missing; run `make setup`")

    def args(self, ctx: Context) -> list[str]:
        """The service's own flags."""
        return []

    def argv(self, ctx: Context) -> list[str]:
        return [sys.executable, "-m", f"services.{self.name}", "--listen", self.address(ctx),
                "--kafka", ctx.kafka_bootstrap, "--version", "stable", *self.args(ctx)]

    def env(self, ctx: Context) -> dict[str, str]:
        return {"PYTHONUNBUFFERED": "1"}

    def probe(self, ctx: Context) -> Health:
        return probes.http_ready(ctx.port(self.name))


class Feed(PythonService):
    name = "feed"
    stage = 3
    niceness = TICK_PATH_NICENESS

    def args(self, ctx: Context) -> list[str]:
        return ["--rate", f"{ctx.state.feed_rate:g}"]


class Enricher(PythonService):
    name = "enricher"
    niceness = TICK_PATH_NICENESS
    modules = (*PythonService.modules, "chdb")
    # Its own shutdown bounds: consumer close and the last ClickHouse insert.
    stop_timeout_s = 40.0

    def args(self, ctx: Context) -> list[str]:
        return ["--clickhouse-path", str(ctx.layout.data / "clickhouse")]


class Ledger(PythonService):
    name = "ledger"
    modules = (*PythonService.modules, "psycopg", "psycopg_pool")
    # In-flight requests, a last outbox relay pass and the pool close, each bounded by the ledger.
    stop_timeout_s = 35.0

    def args(self, ctx: Context) -> list[str]:
        return ["--dsn", ctx.pg_dsn()]


@dataclass
class Gateway(Component):
    """A gateway replica: stable ones start with the sandbox; canary slots are started by a rollout."""

    replica: str = ""
    version: str = "stable"
    faults: dict[str, str] = field(default_factory=dict)

    niceness = TICK_PATH_NICENESS

    def __post_init__(self) -> None:
        self.name = self.replica
        self.stage = 2

    def preflight(self) -> None:
        layout.gateway_binary()

    def argv(self, ctx: Context) -> list[str]:
        argv = [str(layout.gateway_binary()), "--listen", self.address(ctx), "--kafka", ctx.kafka_edge_bootstrap,
                "--topic", "enriched", "--version", self.version, "--replica", self.replica]
        for flag, value in sorted(self.faults.items()):
            argv += [f"--fault-{flag.replace('_', '-')}", value]
        return argv

    def probe(self, ctx: Context) -> Health:
        return probes.http_ready(ctx.port(self.name))


class HAProxy(Component):
    name = "haproxy"
    niceness = TICK_PATH_NICENESS

    def port_keys(self) -> list[str]:
        return ["haproxy", "haproxy-stats"]

    def preflight(self) -> None:
        layout.haproxy()

    def socket_path(self, ctx: Context) -> Path:
        return ctx.layout.run / "haproxy.sock"

    def weights_map(self, ctx: Context) -> Path:
        return ctx.layout.config / "haproxy-weights.map"

    def prepare(self, ctx: Context) -> None:
        stable = [configs.Backend(name, ctx.port(name)) for name in ctx.stable_gateways()]
        # Canary slots stay disabled until a rollout starts a gateway in them (enabled at runtime).
        canary = [configs.Backend(name, ctx.port(name), disabled=name not in ctx.state.processes)
                  for name in ctx.canary_gateways()]
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = hard if hard != resource.RLIM_INFINITY else 65536
        # Each proxied connection holds two descriptors; keep headroom for listeners, checks and the socket.
        maxconn = max(1000, min(50000, (limit - 500) // 2))
        (ctx.layout.config / "haproxy.cfg").write_text(configs.haproxy_cfg(
            ctx.port("haproxy"), ctx.port("haproxy-stats"), self.socket_path(ctx), self.weights_map(ctx),
            stable, canary, ctx.port("ledger"), ctx.port("enricher"), maxconn))
        # A (re)started HAProxy sends nothing to the canary backend unless a canary runs: an empty backend
        # would answer 503 to its share of traders.
        canary_running = any(name in ctx.state.processes for name in ctx.canary_gateways())
        if not (canary_running and self.weights_map(ctx).exists()):
            self.weights_map(ctx).write_text(configs.haproxy_weights(0))
        self.socket_path(ctx).unlink(missing_ok=True)

    def argv(self, ctx: Context) -> list[str]:
        # -W master-worker, -db in the foreground: the recorded pid is the master, workers are its group.
        return [str(layout.haproxy()), "-W", "-db", "-f", str(ctx.layout.config / "haproxy.cfg")]

    def probe(self, ctx: Context) -> Health:
        return probes.haproxy(self.socket_path(ctx), ctx.port("haproxy"))


class Prometheus(Component):
    name = "prometheus"

    def preflight(self) -> None:
        layout.prometheus()

    def prepare(self, ctx: Context) -> None:
        from openbell.slo.loader import load_slos
        from openbell.slo.rules import RuleOptions, generate
        from openbell.slo.rules_yaml import dump

        cfg = ctx.layout.config
        rules = cfg / "slo-rules.yaml"
        slo_dir = paths.repo_root() / "slo"
        runbooks = "file://" + str(paths.repo_root() / "runbooks") + "/"
        rules.write_text(dump(generate(load_slos([slo_dir]), RuleOptions(runbook_base_url=runbooks))))
        targets = cfg / "targets"
        targets.mkdir(exist_ok=True)
        write_gateway_targets(ctx)
        static = {
            "feed": [f"127.0.0.1:{ctx.port('feed')}"],
            "enricher": [f"127.0.0.1:{ctx.port('enricher')}"],
            "ledger": [f"127.0.0.1:{ctx.port('ledger')}"],
            "haproxy": [f"127.0.0.1:{ctx.port('haproxy-stats')}"],
            "kafka": [f"127.0.0.1:{ctx.port('kafka-metrics')}"],
            "postgres": [f"127.0.0.1:{ctx.port('postgres-exporter')}"],
            "prometheus": [f"127.0.0.1:{ctx.port('prometheus')}"],
        }
        if layout.jmx_agent() is None:
            del static["kafka"]
        (cfg / "prometheus.yml").write_text(configs.prometheus_yml(
            ctx.state.scrape_interval_s, [rules], static, {"gateway": targets / "gateway.json"}))

    def argv(self, ctx: Context) -> list[str]:
        return [str(layout.prometheus()), f"--config.file={ctx.layout.config / 'prometheus.yml'}",
                f"--storage.tsdb.path={ctx.layout.data / 'prometheus'}", "--storage.tsdb.retention.time=3d",
                f"--web.listen-address=127.0.0.1:{ctx.port('prometheus')}", "--web.enable-lifecycle",
                "--log.level=warn"]

    def probe(self, ctx: Context) -> Health:
        return probes.prometheus(ctx.port("prometheus"))


def write_gateway_targets(ctx: Context, running: list[tuple[str, str]] | None = None) -> None:
    """The gateway job's targets: every stable replica, plus canary replicas given as (name, version)."""
    entries: list[tuple[str, dict[str, str]]] = [
        (f"127.0.0.1:{ctx.port(name)}", {"replica": name, "role": "stable"}) for name in ctx.stable_gateways()
    ]
    entries += [(f"127.0.0.1:{ctx.port(name)}", {"replica": name, "role": "canary"}) for name, _ in running or []]
    path = ctx.layout.config / "targets" / "gateway.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(configs.file_sd(entries))
    os.replace(tmp, path)


def platform(ctx: Context) -> list[Component]:
    """Every component of a sandbox with these options, in start order."""
    return [
        Postgres(),
        Kafka(),
        KafkaProxy(),
        HAProxy(),
        Prometheus(),
        PostgresExporter(),
        Feed(),
        Enricher(),
        Ledger(),
        *(Gateway(replica=name, version=ctx.state.stable_version) for name in ctx.stable_gateways()),
    ]


def port_keys(ctx: Context) -> list[str]:
    keys = [key for component in platform(ctx) for key in component.port_keys()]
    return keys + ctx.canary_gateways()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _run(argv: list[str], what: str, user: str | None = None, timeout_s: float = 120.0) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, user=user, group=user,
                              extra_groups=[] if user else None, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnreachableError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UnreachableError(f"{what} failed (exit {done.returncode}): {' | '.join(last)}")
    return done.stdout
