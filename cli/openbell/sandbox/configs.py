"""Configuration files the sandbox writes for the programs it runs (pure: values in, text out)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def kafka_properties(port: int, controller_port: int, log_dir: Path, partitions: int = 6,
                     edge_port: int | None = None, edge_advertised_port: int | None = None) -> str:
    """A single-node KRaft broker+controller, tuned to start fast and restart fast on a small machine.

    With `edge_port`, a second listener (EDGE) for the gateways, advertised at `edge_advertised_port`: the
    fault proxy's port, so every byte between a gateway and the broker crosses the proxy."""
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    advertised = f"PLAINTEXT://127.0.0.1:{port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if edge_port is not None:
        listeners += f",EDGE://127.0.0.1:{edge_port}"
        advertised += f",EDGE://127.0.0.1:{edge_advertised_port or edge_port}"
        protocols += ",EDGE:PLAINTEXT"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"listeners={listeners}",
        f"advertised.listeners={advertised}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"listener.security.protocol.map={protocols}",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
        f"log.dirs={log_dir}",
        f"num.partitions={partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=6",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # One network thread and two request handlers are plenty for a dozen clients on two cores; the
        # defaults (3 and 8) only add threads waking to contend for them.
        "num.network.threads=1",
        "num.io.threads=2",
        # Topics are created by the sandbox with their partition counts; a typo must not create one.
        "auto.create.topics.enable=false",
        # A restarted broker is fenced and back in seconds, not the default 9 s + 2 s heartbeat.
        "broker.session.timeout.ms=3000",
        "broker.heartbeat.interval.ms=500",
        "log.cleaner.dedupe.buffer.size=8388608",
        "log.retention.hours=6",
        "log.segment.bytes=67108864",
        "",
    ])


LOG4J2_SERVER = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="OUT" target="SYSTEM_OUT"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="OUT"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""

# Tools print their answer (a cluster id) on stdout: their own logging must go to stderr.
LOG4J2_TOOLS = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="ERR" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="ERR"/></Root></Loggers>
</Configuration>
"""

# The broker figures the platform's runbooks and chaos probes read; everything else stays out of the scrape.
JMX_EXPORTER = """lowercaseOutputName: true
lowercaseOutputLabelNames: true
includeObjectNames:
  - "kafka.server:type=ReplicaManager,*"
  - "kafka.server:type=BrokerTopicMetrics,*"
  - "kafka.controller:type=KafkaController,*"
  - "kafka.network:type=RequestMetrics,name=TotalTimeMs,request=Produce"
  - "kafka.network:type=RequestMetrics,name=TotalTimeMs,request=FetchConsumer"
rules:
  - pattern: >-
      kafka.server<type=ReplicaManager,
      name=(UnderReplicatedPartitions|OfflineReplicaCount|PartitionCount|UnderMinIsrPartitionCount)><>Value
    name: kafka_server_replicamanager_$1
    type: GAUGE
  - pattern: 'kafka.controller<type=KafkaController, name=(OfflinePartitionsCount|ActiveControllerCount)><>Value'
    name: kafka_controller_$1
    type: GAUGE
  - pattern: >-
      kafka.server<type=BrokerTopicMetrics,
      name=(MessagesInPerSec|BytesInPerSec|BytesOutPerSec), topic=(.+)><>Count
    name: kafka_server_brokertopicmetrics_$1_total
    labels: {topic: "$2"}
    type: COUNTER
  - pattern: 'kafka.network<type=RequestMetrics, name=TotalTimeMs, request=(\\w+)><>(50thPercentile|99thPercentile)'
    name: kafka_network_request_total_time_ms
    labels: {request: "$1", quantile: "$2"}
    type: GAUGE
"""


@dataclass(frozen=True)
class Backend:
    """One HAProxy server line: name, port, and whether it starts disabled (an empty canary slot)."""

    name: str
    port: int
    disabled: bool = False


def haproxy_cfg(
    port: int,
    stats_port: int,
    socket_path: Path,
    weights_map: Path,
    stable: Sequence[Backend],
    canary: Sequence[Backend],
    ledger_port: int,
    enricher_port: int,
    maxconn: int,
) -> str:
    """The platform's edge: WebSocket and quotes to the gateways (stable/canary split by a runtime map),
    orders to the ledger, analytics to the enricher; Prometheus exporter and stats on their own port."""

    lines = [
        "global",
        f"  stats socket {socket_path} mode 600 level admin expose-fd listeners",
        f"  maxconn {maxconn}",
        "  log stdout format raw local0 notice",
        "",
        "defaults",
        "  mode http",
        "  log global",
        "  option dontlognull",
        "  timeout connect 2s",
        "  timeout client 30s",
        "  timeout server 30s",
        "  timeout http-request 10s",
        # An upgraded WebSocket is a tunnel: it lives as long as the trader stays connected.
        "  timeout tunnel 2h",
        "  timeout client-fin 5s",
        "  retries 3",
        "  option redispatch 1",
        "  retry-on conn-failure empty-response",
        "  default-server inter 500ms fall 2 rise 2",
        "",
        "frontend stats",
        f"  bind 127.0.0.1:{stats_port}",
        "  http-request use-service prometheus-exporter if { path /metrics }",
        "  stats enable",
        "  stats uri /stats",
        "  stats refresh 5s",
        "",
        "frontend market",
        f"  bind 127.0.0.1:{port}",
        "  option forwardfor",
        # The canary's share of *new* connections and requests: rand(100) < canary percent. Changed at
        # runtime with `set map`, so open WebSockets are never touched by a weight change.
        f"  http-request set-var(txn.canary_pct) str(canary),map({weights_map},0)",
        # WebSocket upgrades have a share of their own, so a rollout can steer the clients it drains (and
        # only them, for a second or two) to the canary without moving any REST request.
        f"  http-request set-var(txn.canary_pct) str(canary_ws),map({weights_map},0) if {{ path /ws }}",
        "  acl is_ledger path_beg /v1/orders /v1/positions",
        "  acl is_analytics path_beg /v1/analytics",
        "  use_backend ledger if is_ledger",
        "  use_backend enricher if is_analytics",
        "  acl to_canary rand(100),sub(txn.canary_pct) lt 0",
        "  use_backend gateway-canary if to_canary",
        "  default_backend gateway-stable",
        "",
        *gateway_backend("gateway-stable", stable),
        *gateway_backend("gateway-canary", canary),
        # Ledger and enricher are checked for life, not readiness: when PostgreSQL is down the ledger must
        # still answer (503), or its own metrics - the SLIs - would never see the outage.
        "backend ledger",
        "  option httpchk GET /healthz",
        f"  server ledger 127.0.0.1:{ledger_port} check",
        "",
        "backend enricher",
        "  option httpchk GET /healthz",
        f"  server enricher 127.0.0.1:{enricher_port} check",
        "",
    ]
    return "\n".join(lines)


def gateway_backend(name: str, servers: Sequence[Backend]) -> list[str]:
    """A gateway backend: least connections (WebSockets are long-lived), readiness-checked so a draining
    replica gets no new traders, and a handshake it refuses (503) is retried on another replica."""
    return [
        f"backend {name}",
        "  balance leastconn",
        "  option httpchk GET /readyz",
        "  http-check expect status 200",
        "  retry-on conn-failure empty-response 503",
        *(f"  server {b.name} 127.0.0.1:{b.port} check{' disabled' if b.disabled else ''}" for b in servers),
        "",
    ]


def haproxy_weights(canary_percent: int) -> str:
    """The weights map: `canary` for requests, `canary_ws` for WebSocket upgrades (the same, except while a
    rollout steers reconnecting clients of drained connections to the canary)."""
    return f"canary {canary_percent}\ncanary_ws {canary_percent}\n"


def prometheus_yml(
    scrape_interval_s: float,
    rule_files: Sequence[Path],
    static_jobs: Mapping[str, Sequence[str]],
    file_sd_jobs: Mapping[str, Path],
) -> str:
    """Prometheus config: one job per component (the `job` label the SLO specs select on)."""
    interval = _prom_duration(scrape_interval_s)
    config: dict[str, object] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            *(
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in static_jobs.items()
            ),
            *(
                {"job_name": job, "file_sd_configs": [{"files": [str(path)], "refresh_interval": "5s"}]}
                for job, path in file_sd_jobs.items()
            ),
        ],
    }
    # JSON is YAML: no YAML emitter quirks, and the file stays diffable.
    return json.dumps(config, indent=2) + "\n"


def file_sd(targets: Sequence[tuple[str, Mapping[str, str]]]) -> str:
    """A Prometheus file_sd document: one group per target with its labels."""
    return json.dumps([{"targets": [t], "labels": dict(labels)} for t, labels in targets], indent=2) + "\n"


def _prom_duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
