"""Health probes: each asks a component's real endpoint whether it serves, and which version it is."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import httpx


def import_clients() -> None:
    """Import every client library a probe uses, in the calling thread, before probes run in a thread pool.

    httpx imports httpcore (and with it ssl and certifi) on its first client, the Kafka and PostgreSQL probes
    import their clients on first use: the same import chains entered from several threads at once can end in
    CPython's import-lock `_DeadlockError` (seen once in CI, in `sandbox status`)."""
    import confluent_kafka.admin  # noqa: F401
    import httpcore  # noqa: F401
    import psycopg  # noqa: F401


@dataclass(frozen=True)
class Health:
    """A probe's answer: healthy or not, why, and the version the component reports."""

    healthy: bool
    detail: str = ""
    version: str = ""


def http_ready(port: int, path: str = "/readyz", version_path: str | None = "/healthz",
               timeout_s: float = 1.0) -> Health:
    """GET 127.0.0.1:port/readyz: 200 is healthy; the body's reason otherwise. Version from /healthz."""
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=timeout_s) as client:
            response = client.get(base + path)
            version = ""
            if version_path is not None and response.status_code == 200:
                try:
                    version = str(client.get(base + version_path).json().get("version", ""))
                except (httpx.HTTPError, ValueError):
                    version = ""
    except httpx.HTTPError as exc:
        return Health(False, f"{path}: {type(exc).__name__}")
    if response.status_code != 200:
        reason = response.text.strip().replace("\n", " ")[:120]
        return Health(False, f"{path} {response.status_code} {reason}")
    return Health(True, "ready", version)


def prometheus(port: int, timeout_s: float = 1.0) -> Health:
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=timeout_s) as client:
            ready = client.get(base + "/-/ready")
            if ready.status_code != 200:
                return Health(False, f"/-/ready {ready.status_code}")
            info = client.get(base + "/api/v1/status/buildinfo").json()
    except (httpx.HTTPError, ValueError) as exc:
        return Health(False, f"/-/ready: {type(exc).__name__}")
    return Health(True, "ready", str(info.get("data", {}).get("version", "")))


def kafka(port: int, version: str, timeout_s: float = 2.0) -> Health:
    """Ask the broker for cluster metadata (the request every client makes first)."""
    from confluent_kafka.admin import AdminClient

    try:
        # log_level 0: a broker that is still starting is an answer here, not noise on the terminal.
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0, "socket.timeout.ms": 1000})
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception as exc:
        return Health(False, f"metadata: {exc}")
    if not metadata.brokers:
        return Health(False, "metadata: no brokers")
    return Health(True, f"{len(metadata.topics)} topics", version)


def postgres(dsn: str, timeout_s: float = 2.0) -> Health:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s))) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        return Health(False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return Health(True, "accepting connections", str(row[0]) if row else "")


def haproxy_command(socket_path: Path, command: str, timeout_s: float = 2.0) -> str:
    """One command on HAProxy's admin socket; its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(socket_path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def haproxy(socket_path: Path, port: int) -> Health:
    try:
        info = haproxy_command(socket_path, "show info")
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            pass
    except OSError as exc:
        return Health(False, f"admin socket/frontend: {exc}")
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
    return Health(True, f"{fields.get('CurrConns', '?')} connections", fields.get("Version", ""))


def metrics_endpoint(port: int, timeout_s: float = 1.0) -> Health:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Health(False, f"/metrics: {type(exc).__name__}")
    return Health(response.status_code == 200, f"/metrics {response.status_code}")
