"""The market-data bus: Apache Kafka in KRaft mode, run by the Strimzi operator.

Strimzi's Helm chart installs the operator (on the system node group: it is control plane, not data);
a `Kafka` custom resource with two `KafkaNodePool`s describes the cluster itself: `controller` (the
KRaft quorum, metadata only) and `broker` (the data), both on the data pool (on-demand, tainted) and
spread evenly over the zones, brokers rack-aware so the three replicas of a partition land in three
zones. Topics are `KafkaTopic` resources, so their partitions, replicas and retention are declared
here and reviewed like code (auto-creation is off).

Strimzi creates the PodDisruptionBudget of the Kafka pods itself (`template.podDisruptionBudget`):
one pod at a time may be evicted voluntarily, which with RF=3 / min.insync.replicas=2 keeps every
partition writable during a node drain.
"""

from __future__ import annotations

from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra import kube
from infra.cluster import DEFAULT_STORAGE_CLASS
from infra.config import PlatformConfig
from infra.kube import mebibytes, resources, system_placement

NAMESPACE = kube.NAMESPACES["kafka"]
CLUSTER = "openbell"  # the Kafka CR's name: services are <cluster>-kafka-bootstrap, pods <cluster>-<pool>-N
OPERATOR_CHART = "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
PLAIN_PORT = 9092
TLS_PORT = 9093
TOPICS = ("ticks", "enriched", "orders")
HOUR_MS = 3_600_000
# Ticks and their enriched copies are worth nothing an hour later (the gateway pushes the latest
# quote; ClickHouse keeps the history), so an hour bounds the disk at peak: 2.5 M/s x ~200 B x 3600 s
# x RF 3 ~ 5.4 TB per topic, ~12 TB for both, ~1.3 TB per broker of prod's 9 (2 TB volumes).
# Orders are the ledger's outbox: kept a week for replays and audits.
RETENTION_MS = {"ticks": HOUR_MS, "enriched": HOUR_MS, "orders": 7 * 24 * HOUR_MS}
# Roll segments every 15 minutes on the short-lived topics so retention deletes in quarter-hour steps
# instead of keeping up to a whole extra segment (1 GiB per partition by default).
SEGMENT_MS = {"ticks": HOUR_MS // 4, "enriched": HOUR_MS // 4, "orders": 24 * HOUR_MS}
# KRaft controllers hold only the metadata log: a small fixed size whatever the traffic.
CONTROLLER_RESOURCES = {"cpu": "500m", "memory": "2Gi"}
CONTROLLER_STORAGE_GI = 20
# The broker JVM needs a modest heap; the rest of the pod's memory is the page cache Kafka reads from.
MAX_HEAP_MI = 6144
# A broker at prod peak writes ~170 MB/s (500 MB/s in x RF 3 over 9 brokers) and serves fetches from
# the page cache: gp3's baseline 125 MB/s is not enough, so brokers get their own gp3 class at 500 MB/s.
BROKER_STORAGE_CLASS = "openbell-kafka-gp3"
BROKER_GP3 = {"iops": "6000", "throughput": "500"}
METRICS_KEY = "kafka-metrics-config.yml"


def _rule(pattern: str, name: str, type_: str = "GAUGE", **labels: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"pattern": pattern, "name": name, "type": type_}
    if labels:
        rule["labels"] = labels
    return rule


# Prometheus JMX exporter rules: the signals the SREs page and plan capacity on, not every MBean
# (9 brokers x hundreds of partitions would otherwise be tens of thousands of series).
JMX_RULES: list[dict[str, Any]] = [
    # Partition health: the first things to look at when a broker or a zone is lost.
    _rule("kafka.server<type=ReplicaManager, name=(UnderReplicatedPartitions|UnderMinIsrPartitionCount"
          "|AtMinIsrPartitionCount|OfflineReplicaCount|PartitionCount|LeaderCount)><>Value",
          "kafka_server_replicamanager_$1"),
    _rule("kafka.server<type=ReplicaManager, name=(IsrShrinks|IsrExpands)PerSec><>Count",
          "kafka_server_replicamanager_$1_total", "COUNTER"),
    _rule("kafka.controller<type=KafkaController, name=(OfflinePartitionsCount|ActiveControllerCount"
          "|ActiveBrokerCount|FencedBrokerCount|GlobalPartitionCount|GlobalTopicCount"
          "|PreferredReplicaImbalanceCount)><>Value",
          "kafka_controller_kafkacontroller_$1"),
    # Throughput per topic: ticks/s in and fan-out bytes, for the SLOs and capacity planning.
    _rule("kafka.server<type=BrokerTopicMetrics, name=(MessagesIn|BytesIn|BytesOut|FailedProduceRequests"
          "|FailedFetchRequests|TotalProduceRequests)PerSec, topic=(.+)><>Count",
          "kafka_server_brokertopicmetrics_$1_total", "COUNTER", topic="$2"),
    _rule("kafka.server<type=BrokerTopicMetrics, name=(MessagesIn|BytesIn|BytesOut|ReplicationBytesIn"
          "|ReplicationBytesOut)PerSec><>Count",
          "kafka_server_brokertopicmetrics_$1_total", "COUNTER"),
    # Broker-side request latency: the Kafka share of the tick-to-trader latency budget.
    _rule("kafka.network<type=RequestMetrics, name=(TotalTimeMs|RequestQueueTimeMs|LocalTimeMs|RemoteTimeMs"
          "|ResponseQueueTimeMs|ResponseSendTimeMs), request=(Produce|FetchConsumer|FetchFollower)>"
          "<>(50|99|999)thPercentile",
          "kafka_network_requestmetrics_$1", request="$2", quantile="0.$3"),
    # Saturation of the request-handler and network threads (1 = idle).
    _rule("kafka.server<type=KafkaRequestHandlerPool, name=RequestHandlerAvgIdlePercent><>OneMinuteRate",
          "kafka_server_kafkarequesthandlerpool_requesthandleravgidle_ratio"),
    _rule("kafka.network<type=SocketServer, name=NetworkProcessorAvgIdlePercent><>Value",
          "kafka_network_socketserver_networkprocessoravgidle_ratio"),
    _rule("kafka.network<type=RequestChannel, name=(RequestQueueSize|ResponseQueueSize)><>Value",
          "kafka_network_requestchannel_$1"),
    # KRaft quorum: who leads, and how far each voter lags.
    _rule("kafka.server<type=raft-metrics><>(current-leader|current-epoch|current-vote|high-watermark"
          "|log-end-offset|commit-latency-avg|commit-latency-max|election-latency-avg|election-latency-max)"
          ": (.+)",
          "kafka_server_raftmetrics_$1"),
    {**_rule("kafka.server<type=raft-metrics><>(current-state): (.+)", "kafka_server_raftmetrics_current_state",
             state="$2"), "value": 1},
    _rule("kafka.server<type=broker-metadata-metrics><>(last-applied-record-lag-ms|metadata-load-error-count"
          "|metadata-apply-error-count): (.+)",
          "kafka_server_brokermetadatametrics_$1"),
]


def jmx_exporter_config() -> str:
    """The JMX Prometheus exporter's YAML (what Strimzi reads from the metrics ConfigMap)."""
    return yaml.safe_dump({"lowercaseOutputName": True, "lowercaseOutputLabelNames": True, "rules": JMX_RULES},
                          sort_keys=False)


class KafkaCluster(Protocol):
    """What Kafka needs of the EKS cluster: only its Kubernetes provider."""

    @property
    def provider(self) -> pulumi.ProviderResource: ...


def broker_heap(memory: str) -> str:
    """Half the pod's memory, at most MAX_HEAP_MI: Kafka serves reads from the page cache, not the heap."""
    return f"{min(MAX_HEAP_MI, mebibytes(memory) // 2)}m"


def strimzi_pod_template(match_labels: dict[str, str]) -> dict[str, Any]:
    """A Strimzi `template.pod` on the data pool, spread over zones.

    Strimzi's pod template has no nodeSelector field, so kube.data_placement()'s selector becomes the
    equivalent required node affinity; tolerations and topology spread are passed as they are.
    `match_labels` are labels Strimzi itself puts on the pods (strimzi.io/...): template labels would
    override Strimzi's own app.kubernetes.io labels, so none are added.
    """
    placement = kube.data_placement()
    terms = [{"key": key, "operator": "In", "values": [value]} for key, value in placement["nodeSelector"].items()]
    return {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": terms}]}}},
        "tolerations": placement["tolerations"],
        "topologySpreadConstraints": kube.zone_spread(match_labels),
    }


def topic_config(topic: str, cfg: PlatformConfig) -> dict[str, Any]:
    """Per-topic settings: durability from the stack, retention by what the topic is for."""
    return {
        "min.insync.replicas": cfg.kafka.min_insync_replicas,
        "retention.ms": RETENTION_MS[topic],
        "segment.ms": SEGMENT_MS[topic],
        # Every topic is an event stream: compaction would drop the history consumers replay.
        "cleanup.policy": "delete",
        # Keep producers' compression (they batch and compress; recompressing on the broker costs CPU).
        "compression.type": "producer",
        "message.timestamp.type": "CreateTime",
    }


class Kafka(pulumi.ComponentResource):
    """Strimzi and a KRaft Kafka cluster with its topics; `bootstrap` is what clients connect to."""

    bootstrap: str
    namespace: str
    cluster_name: str
    topics: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, cfg: PlatformConfig, cluster: KafkaCluster,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:Kafka", name, None, opts)
        provider = cluster.provider
        kc = cfg.kafka
        self.namespace = NAMESPACE
        self.cluster_name = CLUSTER
        self.bootstrap = f"{CLUSTER}-kafka-bootstrap.{NAMESPACE}.svc:{PLAIN_PORT}"

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": NAMESPACE, "labels": kube.labels("kafka")},
            opts=kube.child(self, provider=provider))

        # On an existing cluster the Strimzi operator is the owner's.
        operator = None if cfg.existing else k8s.helm.v3.Release(
            f"{name}-strimzi",
            k8s.helm.v3.ReleaseArgs(
                name="strimzi",
                chart=OPERATOR_CHART,
                version=kc.strimzi_version,
                namespace=NAMESPACE,
                values={
                    # Watch only its own namespace: the operator needs no cluster-wide rights over Kafka CRs.
                    "watchNamespaces": [],
                    "watchAnyNamespace": False,
                    # Two replicas (leader election) in prod so a drained system node does not pause reconciles.
                    "replicas": 2 if cfg.prod else 1,
                    "leaderElection": {"enable": True},
                    "podDisruptionBudget": {"enabled": cfg.prod, "minAvailable": 1},
                    "resources": resources("200m", "512Mi"),
                    **system_placement(),
                    # Strimzi's own PDBs for the Kafka pods (see template.podDisruptionBudget below).
                    "generatePodDisruptionBudget": True,
                },
            ),
            opts=kube.child(self, provider=provider, depends_on=[ns]))

        metrics = k8s.core.v1.ConfigMap(
            f"{name}-metrics",
            metadata={"name": f"{CLUSTER}-kafka-metrics", "namespace": NAMESPACE,
                      "labels": kube.labels("kafka", "kafka-metrics")},
            data={METRICS_KEY: jmx_exporter_config()},
            opts=kube.child(self, provider=provider, depends_on=[ns]))

        rf, isr = kc.replication_factor, kc.min_insync_replicas
        kafka_cr = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version="kafka.strimzi.io/v1beta2",
            kind="Kafka",
            metadata={
                "name": CLUSTER, "namespace": NAMESPACE, "labels": kube.labels("kafka"),
                # KRaft with node pools (no ZooKeeper): the only mode Strimzi >= 0.46 runs, said explicitly.
                "annotations": {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"},
            },
            spec={
                "kafka": {
                    "version": kc.version,
                    "listeners": [
                        {"name": "plain", "port": PLAIN_PORT, "type": "internal", "tls": False},
                        {"name": "tls", "port": TLS_PORT, "type": "internal", "tls": True},
                    ],
                    "config": {
                        "default.replication.factor": rf,
                        "min.insync.replicas": isr,
                        "offsets.topic.replication.factor": rf,
                        "transaction.state.log.replication.factor": rf,
                        "transaction.state.log.min.isr": isr,
                        # Topics are declared as KafkaTopics; a typo in a client must not create one.
                        "auto.create.topics.enable": False,
                        # Never elect an out-of-sync replica: losing acknowledged orders is worse than a pause.
                        "unclean.leader.election.enable": False,
                        # Consumers that set client.rack fetch from a replica in their own zone: at 2.5 M
                        # ticks/s this removes most cross-zone transfer (and its cost and latency).
                        "replica.selector.class": "org.apache.kafka.common.replica.RackAwareReplicaSelector",
                    },
                    "rack": {"topologyKey": kube.ZONE},
                    "metricsConfig": {
                        "type": "jmxPrometheusExporter",
                        "valueFrom": {"configMapKeyRef": {"name": f"{CLUSTER}-kafka-metrics", "key": METRICS_KEY}},
                    },
                    "template": {
                        # One Kafka pod down at a time for voluntary disruptions (drains, Karpenter).
                        "podDisruptionBudget": {"maxUnavailable": 1},
                    },
                },
                "entityOperator": {
                    "topicOperator": {"resources": resources("100m", "512Mi")},
                    "userOperator": {"resources": resources("100m", "512Mi")},
                    "template": {"pod": strimzi_pod_template({"strimzi.io/name": f"{CLUSTER}-entity-operator"})},
                },
                # Consumer-group lag per topic: the enricher and gateway falling behind shows here first.
                "kafkaExporter": {
                    "topicRegex": "|".join(TOPICS),
                    "groupRegex": ".*",
                    "resources": resources("100m", "256Mi"),
                    "template": {"pod": strimzi_pod_template({"strimzi.io/name": f"{CLUSTER}-kafka-exporter"})},
                },
            },
            opts=kube.child(self, provider=provider, depends_on=kube.present(operator, metrics)))

        storage_class = k8s.storage.v1.StorageClass(
            f"{name}-broker-storage",
            metadata={"name": BROKER_STORAGE_CLASS, "labels": kube.labels("kafka", "kafka-storage")},
            provisioner="ebs.csi.aws.com",
            # XFS: what Kafka's own deployment guidance recommends for log directories.
            parameters={"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "xfs", **BROKER_GP3},
            # Bind where the broker is scheduled (its zone); in prod keep the volume if its PVC is deleted.
            volume_binding_mode="WaitForFirstConsumer",
            reclaim_policy="Retain" if cfg.prod else "Delete",
            allow_volume_expansion=True,
            opts=kube.child(self, provider=provider))

        pool_owner = {"strimzi.io/cluster": CLUSTER}
        controller_labels = {**pool_owner, "strimzi.io/pool-name": "controller"}
        broker_labels = {**pool_owner, "strimzi.io/pool-name": "broker"}
        self.controller_pool = k8s.apiextensions.CustomResource(
            f"{name}-controller-pool",
            api_version="kafka.strimzi.io/v1beta2",
            kind="KafkaNodePool",
            metadata={"name": "controller", "namespace": NAMESPACE,
                      "labels": {**kube.labels("kafka", "kafka-controller"), **pool_owner}},
            spec={
                "replicas": kc.controllers,
                "roles": ["controller"],
                "storage": {"type": "persistent-claim", "size": f"{CONTROLLER_STORAGE_GI}Gi",
                            "class": DEFAULT_STORAGE_CLASS,
                            "deleteClaim": False},
                "resources": resources(CONTROLLER_RESOURCES["cpu"], CONTROLLER_RESOURCES["memory"]),
                "template": {"pod": strimzi_pod_template(controller_labels)},
            },
            opts=kube.child(self, provider=provider, depends_on=kube.present(operator)))
        self.broker_pool = k8s.apiextensions.CustomResource(
            f"{name}-broker-pool",
            api_version="kafka.strimzi.io/v1beta2",
            kind="KafkaNodePool",
            metadata={"name": "broker", "namespace": NAMESPACE,
                      "labels": {**kube.labels("kafka", "kafka-broker"), **pool_owner}},
            spec={
                "replicas": kc.brokers,
                "roles": ["broker"],
                "storage": {"type": "persistent-claim", "size": f"{kc.broker_storage_gi}Gi",
                            "class": BROKER_STORAGE_CLASS, "deleteClaim": False},
                "resources": resources(kc.broker_cpu, kc.broker_memory),
                "jvmOptions": {"-Xms": broker_heap(kc.broker_memory), "-Xmx": broker_heap(kc.broker_memory)},
                "template": {"pod": strimzi_pod_template(broker_labels)},
            },
            opts=kube.child(self, provider=provider, depends_on=kube.present(operator, storage_class)))

        self.topics = {}
        for topic in TOPICS:
            self.topics[topic] = k8s.apiextensions.CustomResource(
                f"{name}-topic-{topic}",
                api_version="kafka.strimzi.io/v1beta2",
                kind="KafkaTopic",
                metadata={"name": topic, "namespace": NAMESPACE,
                          "labels": {**kube.labels("kafka", f"topic-{topic}"), **pool_owner}},
                spec={
                    "partitions": getattr(kc.partitions, topic),
                    "replicas": rf,
                    "config": topic_config(topic, cfg),
                },
                opts=kube.child(self, provider=provider, depends_on=[kafka_cr]))

        # Brokers, controllers and the Kafka exporter all carry strimzi.io/kind=Kafka and expose
        # `tcp-prometheus`; the strimzi.io labels become target labels (pool, pod name) for the dashboards.
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": f"{CLUSTER}-kafka", "namespace": NAMESPACE, "labels": kube.labels("kafka")},
            spec={
                "selector": {"matchLabels": {"strimzi.io/cluster": CLUSTER, "strimzi.io/kind": "Kafka"}},
                "namespaceSelector": {"matchNames": [NAMESPACE]},
                "podMetricsEndpoints": [{
                    "port": "tcp-prometheus",
                    "path": "/metrics",
                    "interval": "30s",
                    "relabelings": [
                        {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_strimzi_io_(.+)",
                         "replacement": "strimzi_io_$1"},
                        {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"},
                    ],
                }],
            },
            opts=kube.child(self, provider=provider, depends_on=[ns]))

        self.kafka = kafka_cr
        self.register_outputs({"bootstrap": self.bootstrap})
