"""Metrics, alerts and traces: kube-prometheus-stack, the SLO rules from slo/, prometheus-adapter, an
OpenTelemetry Collector and Tempo.

The alert rules are not written here: they are generated from the same SLO specs (slo/*.yaml) with
openbell's own engine (`openbell slo rules --format prometheus-operator`), one PrometheusRule per spec
file, so what pages on the cluster is exactly what `openbell slo lint` checked and what the sandbox runs.
Alertmanager routes `severity=page` to the pager and `severity=ticket` to the ticket queue, and every
notification carries the alert's `runbook_url`.

prometheus-adapter serves the custom metrics API (the gateway's HPA scales on `gateway_connections`) and
the resource metrics API (CPU for every HPA, `kubectl top`), so no separate metrics-server is needed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s

from infra import kube
from infra.config import PlatformConfig
from infra.kube import child

NAMESPACE = kube.NAMESPACES["monitoring"]
PROMETHEUS_COMMUNITY = "https://prometheus-community.github.io/helm-charts"
GRAFANA_CHARTS = "https://grafana.github.io/helm-charts"
OPEN_TELEMETRY_CHARTS = "https://open-telemetry.github.io/opentelemetry-helm-charts"
# kube-prometheus-stack names its objects after this, so the in-cluster URLs below are stable.
STACK_NAME = "kps"
PROMETHEUS_SERVICE = f"{STACK_NAME}-prometheus"
PROMETHEUS_PORT = 9090
TEMPO_SERVICE = "tempo"
# prometheus-adapter's chart, pinned (not in the stack config yet): 5.1.0 is the release contemporary with
# kube-prometheus-stack 77.
PROMETHEUS_ADAPTER_VERSION = "5.1.0"
STORAGE_CLASS = "gp3"  # the cluster's encrypted default StorageClass (infra/cluster.py)
# ~1 M active series scraped every 15 s at ~1.5 bytes a sample is ~9 GB a day; twice that for the WAL,
# compaction and growth.
PROMETHEUS_GI_PER_DAY = 20
TEMPO_GI_PER_DAY = 10  # sampled traces of the CLI and services: small next to metrics
# Alertmanager reads the receivers' credentials from files of this Secret (keys below), created outside
# Pulumi (from the organisation's secret store) so no key ever lands in the stack's state.
RECEIVERS_SECRET = "alertmanager-receivers"
SECRETS_DIR = f"/etc/alertmanager/secrets/{RECEIVERS_SECRET}"
TICKET_RECEIVER = "tickets"
TICKET_CHANNEL = "#openbell-tickets"
# Monitoring is stateful (TSDB, WAL, silences): on-demand nodes of the gateway pool, never spot.
MONITORING_PLACEMENT = {kube.POOL_LABEL: "gateway", kube.CAPACITY_TYPE: "on-demand"}
SYSTEM_PLACEMENT = {kube.POOL_LABEL: "system"}


class ClusterLike(Protocol):
    @property
    def provider(self) -> pulumi.ProviderResource: ...


def rule_name(source: str) -> str:
    """PrometheusRule name of an SLO spec file: slo-<file stem>, DNS-1123."""
    stem = re.sub(r"[^a-z0-9-]+", "-", Path(source).stem.lower()).strip("-")
    return f"slo-{stem}"[:63].rstrip("-")


def slo_rules(slo_dir: Path, runbook_base_url: str) -> dict[str, dict[str, Any]]:
    """One prometheus-operator PrometheusRule per SLO spec file under `slo_dir`, by file, generated the way
    `openbell slo rules --format prometheus-operator` does. Loading the folder at once keeps the engine's
    checks across files (unique names, OpenSLO SLIs referenced from another file)."""
    from openbell.slo.loader import load_slos
    from openbell.slo.rules import RuleOptions, as_prometheus_rule, generate

    slos = load_slos([slo_dir])
    by_file: dict[str, list[Any]] = {}
    for slo in slos:
        by_file.setdefault(slo.source, []).append(slo)
    options = RuleOptions(runbook_base_url=runbook_base_url)
    return {source: as_prometheus_rule(generate(group, options), name=rule_name(source), namespace=NAMESPACE)
            for source, group in sorted(by_file.items())}


ALERT_TEMPLATES = """\
{{ define "openbell.title" }}[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}\
{{ end }}] {{ .CommonLabels.alertname }}{{ with .CommonLabels.slo }} ({{ . }}){{ end }}{{ end }}

{{ define "openbell.runbook" }}{{ (index .Alerts 0).Annotations.runbook_url }}{{ end }}

{{ define "openbell.text" }}{{ range .Alerts }}{{ .Annotations.summary }}
{{ .Annotations.description }}
Runbook: {{ .Annotations.runbook_url }}
{{ end }}{{ end }}
"""


def alertmanager_config(cfg: PlatformConfig) -> dict[str, Any]:
    """Routes by severity (the SLO engine's `page` and `ticket`), receivers whose messages carry the runbook."""
    pager = cfg.observability.pager_receiver
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "null",
            "group_by": ["alertname", "slo", "service"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                # The always-firing heartbeat of kube-prometheus-stack: for a dead man's switch, not people.
                {"matchers": ['alertname = "Watchdog"'], "receiver": "null"},
                # The SLO engine's severities, and the chart's own rules' (disks filling, targets down).
                {"matchers": ['severity =~ "page|critical"'], "receiver": pager, "repeat_interval": "1h"},
                {"matchers": ['severity =~ "ticket|warning"'], "receiver": TICKET_RECEIVER, "repeat_interval": "12h"},
            ],
        },
        # A page already covers its SLO: no ticket for the same burn on top of it.
        "inhibit_rules": [{"source_matchers": ['severity = "page"'], "target_matchers": ['severity = "ticket"'],
                           "equal": ["slo", "service"]}],
        "receivers": [
            {"name": "null"},
            {"name": pager, "pagerduty_configs": [{
                "routing_key_file": f"{SECRETS_DIR}/pagerduty-routing-key",
                "severity": "critical",
                "description": '{{ template "openbell.title" . }}',
                "links": [{"href": '{{ template "openbell.runbook" . }}', "text": "Runbook"}],
                "details": {"runbook_url": '{{ template "openbell.runbook" . }}',
                            "alerts": '{{ template "openbell.text" . }}'},
                "send_resolved": True,
            }]},
            {"name": TICKET_RECEIVER, "slack_configs": [{
                "api_url_file": f"{SECRETS_DIR}/slack-webhook-url",
                "channel": TICKET_CHANNEL,
                "title": '{{ template "openbell.title" . }}',
                "title_link": '{{ template "openbell.runbook" . }}',
                "text": '{{ template "openbell.text" . }}',
                "send_resolved": True,
            }]},
        ],
        "templates": ["/etc/alertmanager/config/*.tmpl"],
    }


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def stack_values(cfg: PlatformConfig) -> dict[str, Any]:
    """kube-prometheus-stack: HA in prod, retention and storage from config, every PodMonitor/rule picked up."""
    prod = cfg.prod
    days = cfg.observability.retention_days
    storage_gi = days * PROMETHEUS_GI_PER_DAY
    return {
        "fullnameOverride": STACK_NAME,
        "prometheus": {"prometheusSpec": {
            "replicas": 2 if prod else 1,
            "retention": f"{days}d",
            # Prometheus deletes old blocks before the volume fills, whatever the day's volume was.
            "retentionSize": f"{storage_gi * 85 // 100}GiB",
            "storageSpec": {"volumeClaimTemplate": {"spec": {
                "storageClassName": STORAGE_CLASS, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{storage_gi}Gi"}}}}},
            "resources": _resources("4", "16Gi") if prod else _resources("500m", "2Gi"),
            "nodeSelector": MONITORING_PLACEMENT,
            "podAntiAffinity": "hard" if prod else "soft",
            "podAntiAffinityTopologyKey": kube.ZONE,
            # Select every PodMonitor, ServiceMonitor and PrometheusRule in every namespace (the services',
            # the data tier's, the SLO rules), not only the chart's own.
            "ruleSelectorNilUsesHelmValues": False,
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "podMonitorSelectorNilUsesHelmValues": False,
            "probeSelectorNilUsesHelmValues": False,
            "scrapeConfigSelectorNilUsesHelmValues": False,
            # The OpenTelemetry Collector writes OTLP metrics here.
            "enableRemoteWriteReceiver": True,
            "externalLabels": {"cluster": f"openbell-{cfg.environment}"},
        },
            # Two replicas in prod: a node drain takes one at a time.
            "podDisruptionBudget": {"enabled": prod, "maxUnavailable": 1}},
        "alertmanager": {
            "alertmanagerSpec": {
                "replicas": 3 if prod else 1,  # a gossip cluster: two may restart without losing silences
                "secrets": [RECEIVERS_SECRET],
                "storage": {"volumeClaimTemplate": {"spec": {
                    "storageClassName": STORAGE_CLASS, "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "10Gi"}}}}},
                "resources": _resources("100m", "256Mi"),
                "nodeSelector": MONITORING_PLACEMENT,
                "podAntiAffinity": "hard" if prod else "soft",
                "podAntiAffinityTopologyKey": kube.ZONE,
            },
            "podDisruptionBudget": {"enabled": prod, "maxUnavailable": 1},
            "config": alertmanager_config(cfg),
            "templateFiles": {"openbell.tmpl": ALERT_TEMPLATES},
        },
        "prometheusOperator": {"nodeSelector": SYSTEM_PLACEMENT, "resources": _resources("200m", "512Mi")},
        "kube-state-metrics": {"nodeSelector": SYSTEM_PLACEMENT, "resources": _resources("100m", "256Mi")},
        "prometheus-node-exporter": {"resources": _resources("50m", "64Mi")},
        "grafana": {
            "nodeSelector": MONITORING_PLACEMENT,
            "resources": _resources("250m", "512Mi"),
            "additionalDataSources": [{"name": "Tempo", "type": "tempo", "access": "proxy",
                                       "url": f"http://{TEMPO_SERVICE}.{NAMESPACE}.svc:3200"}]
            if cfg.observability.tempo else [],
        },
    }


def adapter_values(cfg: PlatformConfig, prometheus_url: str) -> dict[str, Any]:
    """prometheus-adapter: `gateway_connections` per pod for the gateway's HPA, and CPU/memory for the rest."""
    base, _, port = prometheus_url.rpartition(":")
    by_pod = {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    by_node_pod = {"overrides": {"node": {"resource": "node"}, "namespace": {"resource": "namespace"},
                                 "pod": {"resource": "pod"}}}
    return {
        "prometheus": {"url": base, "port": int(port)},
        # Every HPA in the cluster depends on these APIs: one replica may restart while the other serves.
        "replicas": 2 if cfg.prod else 1,
        "podDisruptionBudget": {"enabled": cfg.prod, "maxUnavailable": 1},
        "resources": _resources("100m", "256Mi"),
        "nodeSelector": SYSTEM_PLACEMENT,
        "rules": {
            "default": False,  # only what an HPA reads: a rule per metric keeps the adapter's memory small
            "custom": [{
                "seriesQuery": 'gateway_connections{namespace!="",pod!=""}',
                "resources": by_pod,
                "name": {"matches": "^gateway_connections$", "as": "gateway_connections"},
                "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
            }],
            "resource": {
                "cpu": {
                    "containerQuery": ('sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total'
                                       '{container!="",<<.LabelMatchers>>}[3m]))'),
                    "nodeQuery": ('sum by (<<.GroupBy>>) (rate(node_cpu_seconds_total'
                                  '{mode!="idle",mode!="iowait",mode!="steal",<<.LabelMatchers>>}[3m]))'),
                    "resources": by_node_pod, "containerLabel": "container"},
                "memory": {
                    "containerQuery": ('sum by (<<.GroupBy>>) (avg_over_time(container_memory_working_set_bytes'
                                       '{container!="",<<.LabelMatchers>>}[3m]))'),
                    "nodeQuery": ('sum by (<<.GroupBy>>) (avg_over_time(node_memory_MemTotal_bytes'
                                  '{<<.LabelMatchers>>}[3m]) - avg_over_time(node_memory_MemAvailable_bytes'
                                  '{<<.LabelMatchers>>}[3m]))'),
                    "resources": by_node_pod, "containerLabel": "container"},
                "window": "3m",
            },
        },
    }


def collector_values(cfg: PlatformConfig, prometheus_url: str) -> dict[str, Any]:
    """OpenTelemetry Collector (deployment mode): OTLP in; traces to Tempo, metrics to Prometheus."""
    exporters: dict[str, Any] = {
        "prometheusremotewrite": {"endpoint": f"{prometheus_url}/api/v1/write",
                                  "resource_to_telemetry_conversion": {"enabled": True}},
    }
    processors = ["memory_limiter", "batch"]
    # Pipelines not set here keep the chart's defaults (accepted, then dropped by its `debug` exporter):
    # logs are collected from the nodes, not through the collector.
    pipelines: dict[str, Any] = {
        "metrics": {"receivers": ["otlp"], "processors": processors, "exporters": ["prometheusremotewrite"]},
    }
    if cfg.observability.tempo:
        exporters["otlp/tempo"] = {"endpoint": f"{TEMPO_SERVICE}.{NAMESPACE}.svc:4317", "tls": {"insecure": True}}
        pipelines["traces"] = {"receivers": ["otlp"], "processors": processors, "exporters": ["otlp/tempo"]}
    return {
        "mode": "deployment",
        # contrib: the prometheusremotewrite exporter is not in the core distribution. The tag is the
        # chart's appVersion, pinned by the chart version.
        "image": {"repository": "otel/opentelemetry-collector-contrib"},
        "replicaCount": 2 if cfg.prod else 1,
        "resources": _resources("500m", "1Gi") if cfg.prod else _resources("100m", "256Mi"),
        "nodeSelector": MONITORING_PLACEMENT,
        "podDisruptionBudget": {"enabled": cfg.prod, "maxUnavailable": 1},
        "config": {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "${env:MY_POD_IP}:4317"},
                                                 "http": {"endpoint": "${env:MY_POD_IP}:4318"}}}},
            "processors": {"memory_limiter": {"check_interval": "1s", "limit_percentage": 80,
                                              "spike_limit_percentage": 20},
                           "batch": {}},
            "exporters": exporters,
            "service": {"pipelines": pipelines},
        },
    }


def tempo_values(cfg: PlatformConfig) -> dict[str, Any]:
    days = cfg.observability.retention_days
    return {
        "fullnameOverride": TEMPO_SERVICE,
        "tempo": {
            "retention": f"{days * 24}h",
            "resources": _resources("500m", "2Gi") if cfg.prod else _resources("100m", "512Mi"),
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"},
                                                 "http": {"endpoint": "0.0.0.0:4318"}}}},
        },
        "persistence": {"enabled": True, "storageClassName": STORAGE_CLASS, "size": f"{days * TEMPO_GI_PER_DAY}Gi"},
        "nodeSelector": MONITORING_PLACEMENT,
    }


class Observability(pulumi.ComponentResource):
    """kube-prometheus-stack with the SLO rules, prometheus-adapter, the OpenTelemetry Collector and Tempo.

    Attributes: prometheus_url (in-cluster URL of Prometheus, for openbell canary/slo on the cluster),
    stack (the Helm release), rules (PrometheusRule by SLO spec file), adapter, collector, tempo (or None).
    """

    def __init__(self, name: str, cfg: PlatformConfig, cluster: ClusterLike, slo_dir: Path,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:Observability", name, None, opts)
        provider = cluster.provider
        self.prometheus_url: str = f"http://{PROMETHEUS_SERVICE}.{NAMESPACE}.svc:{PROMETHEUS_PORT}"
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata={"name": NAMESPACE, "labels": {
                **kube.labels("monitoring", NAMESPACE),
                # node-exporter reads the host (hostNetwork, hostPID, hostPath).
                "pod-security.kubernetes.io/enforce": "privileged"}},
            opts=child(self, provider=provider))
        in_ns = child(self, provider=provider, depends_on=[self.namespace])
        obs = cfg.observability
        # On an existing cluster the Prometheus Operator (and its Prometheus at prometheus_url), the adapter, the
        # collector and Tempo are the owner's: only the SLO rules are the platform's.
        self.stack = None if cfg.existing else k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack", name="kube-prometheus-stack", chart="kube-prometheus-stack",
            version=obs.prometheus_stack_version, namespace=NAMESPACE,
            repository_opts={"repo": PROMETHEUS_COMMUNITY}, values=stack_values(cfg),
            atomic=True, cleanup_on_fail=True, opts=in_ns)
        after_stack = child(self, provider=provider, depends_on=kube.present(self.namespace, self.stack))
        self.rules: dict[str, k8s.apiextensions.CustomResource] = {}
        for source, rule in slo_rules(slo_dir, obs.runbook_base_url).items():
            metadata = rule["metadata"]
            self.rules[source] = k8s.apiextensions.CustomResource(
                f"{name}-{metadata['name']}", api_version=rule["apiVersion"], kind=rule["kind"],
                metadata={**metadata, "labels": {**kube.labels("slo", metadata["name"]), **metadata["labels"]}},
                spec=rule["spec"], opts=after_stack)
        self.adapter: k8s.helm.v3.Release | None = None
        self.tempo: k8s.helm.v3.Release | None = None
        self.collector: k8s.helm.v3.Release | None = None
        if cfg.existing:
            self.register_outputs({"prometheusUrl": self.prometheus_url})
            return
        self.adapter = k8s.helm.v3.Release(
            f"{name}-prometheus-adapter", name="prometheus-adapter", chart="prometheus-adapter",
            version=PROMETHEUS_ADAPTER_VERSION, namespace=NAMESPACE,
            repository_opts={"repo": PROMETHEUS_COMMUNITY}, values=adapter_values(cfg, self.prometheus_url),
            atomic=True, cleanup_on_fail=True, opts=after_stack)
        if obs.tempo:
            self.tempo = k8s.helm.v3.Release(
                f"{name}-tempo", name="tempo", chart="tempo", version=obs.tempo_version, namespace=NAMESPACE,
                repository_opts={"repo": GRAFANA_CHARTS}, values=tempo_values(cfg),
                atomic=True, cleanup_on_fail=True, opts=in_ns)
        self.collector = k8s.helm.v3.Release(
            f"{name}-otel-collector", name="otel-collector", chart="opentelemetry-collector",
            version=obs.otel_collector_version, namespace=NAMESPACE,
            repository_opts={"repo": OPEN_TELEMETRY_CHARTS}, values=collector_values(cfg, self.prometheus_url),
            atomic=True, cleanup_on_fail=True,
            opts=child(self, provider=provider,
                       depends_on=kube.present(self.namespace, self.stack, self.tempo)))
        self.register_outputs({"prometheusUrl": self.prometheus_url})
