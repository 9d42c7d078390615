"""Where the sandbox keeps its state and finds the programs it runs.

Everything is overridable by environment variable, so a user (or a test) can point the sandbox at another
home, JDK, Kafka distribution or binary without editing code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from openbell.errors import UnreachableError
from openbell.paths import cache_dir, repo_root

KAFKA_VERSION = "4.1.0"
PG_MAJOR = "15"


def default_home() -> Path:
    """`$OPENBELL_HOME`, else `$XDG_STATE_HOME/openbell/sandbox`, else `~/.local/state/openbell/sandbox`."""
    env = os.environ.get("OPENBELL_HOME")
    if env:
        return Path(env).expanduser().resolve()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state).expanduser().resolve() / "openbell" / "sandbox"


@dataclass(frozen=True)
class Layout:
    """The directories of one sandbox."""

    home: Path

    @property
    def state_file(self) -> Path:
        return self.home / "sandbox.json"

    @property
    def lock_file(self) -> Path:
        return self.home / ".lock"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def config(self) -> Path:
        return self.home / "config"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def run(self) -> Path:
        return self.home / "run"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pg_root(self) -> Path:
        """PostgreSQL's directory. As root the server runs as `postgres`, which cannot enter a home under
        /root, so its data then lives under /var/tmp in a directory named for this sandbox."""
        if os.geteuid() != 0:
            return self.data / "postgres"
        tag = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path("/var/tmp/openbell-postgres") / tag

    def ensure(self) -> None:
        for path in (self.home, self.logs, self.config, self.data, self.run):
            path.mkdir(parents=True, exist_ok=True)


def find_program(name: str, env: str, hint: str, candidates: tuple[str, ...] = ()) -> Path:
    """A program from `$<env>`, PATH or known locations; UnreachableError naming how to get it."""
    override = os.environ.get(env)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise UnreachableError(f"{name}: ${env}={override} is not an executable file ({hint})")
    found = shutil.which(name)
    if found:
        return Path(found)
    for candidate in candidates:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise UnreachableError(f"{name}: not found on PATH ({hint})")


def java() -> Path:
    return find_program("java", "OPENBELL_JAVA", "Kafka needs a Java 17+ runtime; set OPENBELL_JAVA or install one")


def kafka_lib() -> Path:
    """The directory of Apache Kafka's jars, resolved from Maven Central by `make setup`."""
    override = os.environ.get("OPENBELL_KAFKA_LIB")
    lib = Path(override) if override else cache_dir() / f"kafka-{KAFKA_VERSION}" / "lib"
    jar = lib / f"kafka_2.13-{KAFKA_VERSION}.jar"
    if not jar.is_file():
        raise UnreachableError(
            f"kafka: Apache Kafka {KAFKA_VERSION} jars not found in {lib} (missing {jar.name}); "
            "run `make setup`, which resolves them from Maven Central"
        )
    return lib


def jmx_agent() -> Path | None:
    """Prometheus' JMX exporter agent jar, fetched beside Kafka's jars (optional: metrics only)."""
    agent_dir = kafka_lib().parent / "agent"
    jars = sorted(agent_dir.glob("jmx_prometheus_javaagent-*.jar")) if agent_dir.is_dir() else []
    return jars[-1] if jars else None


def pg_bin(tool: str) -> Path:
    override = os.environ.get("OPENBELL_PG_BIN")
    bindir = Path(override) if override else Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
    path = bindir / tool
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise UnreachableError(
            f"postgres: {path} not found; install Debian's postgresql-{PG_MAJOR} (make setup) or set OPENBELL_PG_BIN"
        )
    return path


def haproxy() -> Path:
    return find_program("haproxy", "OPENBELL_HAPROXY", "install Debian's haproxy (make setup)",
                        ("/usr/sbin/haproxy",))


def prometheus() -> Path:
    return find_program("prometheus", "OPENBELL_PROMETHEUS", "install Debian's prometheus (make setup)")


def postgres_exporter() -> Path | None:
    try:
        return find_program("prometheus-postgres-exporter", "OPENBELL_POSTGRES_EXPORTER", "optional",
                            ("/usr/bin/prometheus-postgres-exporter",))
    except UnreachableError:
        return None


def gateway_binary() -> Path:
    override = os.environ.get("OPENBELL_GATEWAY_BIN")
    path = Path(override) if override else repo_root() / "build" / "bin" / "openbell-gateway"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise UnreachableError(f"gateway: {path} not found; run `make setup` (it builds services/gateway with Go)")
    return path
