"""The data tier (Kafka, PostgreSQL, ClickHouse) declared under pulumi's mocks, for the dev and prod stacks.

Each stack's components are built the real way (Network -> Cluster -> the three data components) and the
recorded graph is checked: sizes and durability from the stack config, zone spread and anti-affinity,
every data pod on the data pool, the backup bucket's encryption and IAM scope, PDBs that select the pods.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import kube, offline
from infra.config import PlatformConfig, load_stack_file

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "prod")
DATA_NAMESPACES = {"kafka", "postgres", "clickhouse"}
OPERATOR_NAMESPACES = {"kafka", "cnpg-system", "cert-manager", "clickhouse"}
# Every custom resource kind the data tier declares; a new kind must be added here (and, if it makes
# pods, to pod_templates() below) so no pod-bearing resource escapes the placement checks.
KNOWN_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic", "PodMonitor", "ObjectStore", "Cluster", "ScheduledBackup",
               "ClickHouseKeeperInstallation", "ClickHouseInstallation"}
HOUR_MS = 3_600_000
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # pulumi's marker of a secret value in recorded inputs

captured: dict[str, Any] = {}


def program(cfg: PlatformConfig) -> None:
    from infra.clickhouse import ClickHouse
    from infra.cluster import Cluster
    from infra.kafka import Kafka
    from infra.network import Network
    from infra.postgres import Postgres

    network = Network("network", cfg)
    cluster = Cluster("cluster", cfg, network)
    captured["kafka"] = Kafka("kafka", cfg, cluster)
    captured["postgres"] = Postgres("postgres", cfg, cluster)
    captured["clickhouse"] = ClickHouse("clickhouse", cfg, cluster)


@cache
def plan(stack: str) -> offline.Plan:
    return offline.run(load_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml"), stack, program)


def ours(p: offline.Plan) -> list[offline.Recorded]:
    return [r for r in p.resources if r.name.split("-", 1)[0] in {"kafka", "postgres", "clickhouse"}
            and not r.type.startswith("openbell:")]


def kind(p: offline.Plan, kind_: str) -> list[offline.Recorded]:
    return [r for r in ours(p) if r.kind == kind_]


def one(p: offline.Plan, kind_: str) -> dict[str, Any]:
    found = kind(p, kind_)
    assert len(found) == 1, [r.name for r in found]
    return found[0].inputs


def reveal(value: Any) -> Any:
    """The plain value of an input pulumi recorded as a secret."""
    if isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
        return value["value"]
    return value


def subset(small: dict[str, str], big: dict[str, str]) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def zone_constraint(tsc: list[dict[str, Any]]) -> dict[str, Any]:
    zones = [c for c in tsc if c["topologyKey"] == kube.ZONE]
    assert len(zones) == 1, tsc
    return zones[0]


def required_node_terms(affinity: dict[str, Any]) -> dict[str, list[str]]:
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert len(terms) == 1
    return {e["key"]: e["values"] for e in terms[0]["matchExpressions"] if e["operator"] == "In"}


DATA_TOLERATION = kube.data_placement()["tolerations"][0]
DATA_SELECTOR = kube.data_placement()["nodeSelector"]


def on_data_pool(pod: dict[str, Any]) -> bool:
    """A pod spec (or Strimzi pod template, or CNPG affinity block) that only lands on the data pool."""
    if DATA_TOLERATION not in pod.get("tolerations", []):
        return False
    if "nodeSelector" in pod:
        return subset(DATA_SELECTOR, pod["nodeSelector"])
    selected = required_node_terms(pod.get("affinity", {}))
    return all(selected.get(k) == [v] for k, v in DATA_SELECTOR.items())


def pod_templates(p: offline.Plan) -> dict[str, dict[str, Any]]:
    """Every place the data tier describes pods, by a readable name."""
    out: dict[str, dict[str, Any]] = {}
    for r in ours(p):
        spec = r.inputs.get("spec", {})
        if r.kind == "KafkaNodePool":
            out[f"pool/{r.inputs['metadata']['name']}"] = spec["template"]["pod"]
        elif r.kind == "Kafka":
            assert "cruiseControl" not in spec, "cruise control pods need the data placement too"
            out["entity-operator"] = spec["entityOperator"]["template"]["pod"]
            out["kafka-exporter"] = spec["kafkaExporter"]["template"]["pod"]
        elif r.kind == "Cluster":
            out["postgres"] = spec["affinity"]
        elif r.kind in {"ClickHouseInstallation", "ClickHouseKeeperInstallation"}:
            for template in spec["templates"]["podTemplates"]:
                out[f"{r.kind}/{template['name']}"] = template["spec"]
    return out


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- the whole tier ------------------------------------------------------------------------------------------


def test_every_data_pod_is_on_the_data_pool(stack: str) -> None:
    p = plan(stack)
    builtin = {"core", "policy", "storage.k8s.io", "helm.sh"}
    custom = {r.kind for r in ours(p) if r.type.startswith("kubernetes:") and r.type.split(":")[1].split("/")[0]
              not in builtin}
    assert custom <= KNOWN_KINDS, custom - KNOWN_KINDS
    templates = pod_templates(p)
    assert set(templates) >= {"pool/controller", "pool/broker", "entity-operator", "kafka-exporter", "postgres",
                              "ClickHouseInstallation/server", "ClickHouseKeeperInstallation/keeper"}
    for where, pod in templates.items():
        assert on_data_pool(pod), f"{where} is not pinned to the on-demand data pool: {pod}"


def test_operators_run_on_the_system_pool_not_the_data_pool(stack: str) -> None:
    releases = kind(plan(stack), "Release")
    assert {r.inputs["chart"].rsplit("/", 1)[-1] for r in releases} == {
        "strimzi-kafka-operator", "cloudnative-pg", "plugin-barman-cloud", "cert-manager",
        "altinity-clickhouse-operator"}
    for r in releases:
        values = r.inputs["values"]
        assert values["nodeSelector"] == {kube.POOL_LABEL: "system"}, r.name
        assert "tolerations" not in values, r.name
        assert r.inputs["namespace"] in OPERATOR_NAMESPACES
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", r.inputs["version"]), f"{r.name}: chart version not pinned"


def test_kubernetes_objects_are_named_namespaced_and_on_the_cluster_provider(stack: str) -> None:
    p = plan(stack)
    for r in ours(p):
        if not r.type.startswith("kubernetes:"):
            continue
        assert r.provider and "cluster-k8s" in r.provider, f"{r.name} is not on the cluster's provider"
        if r.kind == "Release":
            continue
        meta = r.inputs["metadata"]
        assert meta.get("name"), r.name
        if r.kind not in {"Namespace", "StorageClass"}:
            assert meta.get("namespace") in DATA_NAMESPACES, r.name
    names = [r.name for r in ours(p)]
    assert len(names) == len(set(names)), "pulumi names of the data tier must be unique"


def test_containers_have_requests_and_a_memory_limit(stack: str) -> None:
    p = plan(stack)
    blocks: list[tuple[str, dict[str, Any]]] = []
    for r in ours(p):
        spec = r.inputs.get("spec", {})
        if r.kind == "KafkaNodePool":
            blocks.append((r.name, spec["resources"]))
        elif r.kind == "Kafka":
            blocks += [(f"{r.name}/topic-operator", spec["entityOperator"]["topicOperator"]["resources"]),
                       (f"{r.name}/user-operator", spec["entityOperator"]["userOperator"]["resources"]),
                       (f"{r.name}/exporter", spec["kafkaExporter"]["resources"])]
        elif r.kind == "Cluster":
            blocks.append((r.name, spec["resources"]))
        elif r.kind == "ObjectStore":
            blocks.append((r.name, spec["instanceSidecarConfiguration"]["resources"]))
        elif r.kind in {"ClickHouseInstallation", "ClickHouseKeeperInstallation"}:
            for template in spec["templates"]["podTemplates"]:
                for container in template["spec"]["containers"]:
                    blocks.append((f"{r.name}/{container['name']}", container["resources"]))
                    assert re.fullmatch(r"clickhouse/clickhouse-(server|keeper):\d+\.\d+(\.\d+)*", container["image"])
        elif r.kind == "Release":
            blocks.append((r.name, r.inputs["values"].get("resources") or r.inputs["values"]["operator"]["resources"]))
    assert len(blocks) >= 12
    for where, res in blocks:
        assert {"cpu", "memory"} <= set(res["requests"]), where
        assert "memory" in res["limits"], where


# --- Kafka ---------------------------------------------------------------------------------------------------


def pools(p: offline.Plan) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in kind(p, "KafkaNodePool")}


def test_kafka_node_pools_match_the_stack(stack: str) -> None:
    p = plan(stack)
    kc = p.config.kafka
    by_name = pools(p)
    assert set(by_name) == {"controller", "broker"}
    controller, broker = by_name["controller"]["spec"], by_name["broker"]["spec"]
    assert controller["roles"] == ["controller"] and controller["replicas"] == kc.controllers
    assert broker["roles"] == ["broker"] and broker["replicas"] == kc.brokers
    for pool in by_name.values():
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "openbell"
        assert pool["spec"]["storage"]["type"] == "persistent-claim"
        assert pool["spec"]["storage"]["deleteClaim"] is False
    assert broker["storage"]["size"] == f"{kc.broker_storage_gi}Gi"
    assert broker["resources"]["requests"] == {"cpu": kc.broker_cpu, "memory": kc.broker_memory}
    assert broker["resources"]["limits"]["memory"] == kc.broker_memory
    storage_class = one(p, "StorageClass")
    assert storage_class["metadata"]["name"] == broker["storage"]["class"]
    assert storage_class["parameters"]["type"] == "gp3" and storage_class["parameters"]["encrypted"] == "true"
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    heap = broker["jvmOptions"]["-Xmx"]
    assert broker["jvmOptions"]["-Xms"] == heap and int(heap[:-1]) <= 6144
    if stack == "prod":
        assert (controller["replicas"], broker["replicas"]) == (3, 9)


def test_kafka_cluster_is_kraft_durable_and_rack_aware(stack: str) -> None:
    p = plan(stack)
    kc = p.config.kafka
    kafka = one(p, "Kafka")
    assert kafka["metadata"]["name"] == "openbell"
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    spec = kafka["spec"]["kafka"]
    assert spec["version"] == kc.version
    assert "replicas" not in spec and "storage" not in spec and "zookeeper" not in kafka["spec"]
    assert {(listener["port"], listener["tls"]) for listener in spec["listeners"]} == {(9092, False), (9093, True)}
    assert all(listener["type"] == "internal" for listener in spec["listeners"])
    config = spec["config"]
    assert config["default.replication.factor"] == config["offsets.topic.replication.factor"] == \
        config["transaction.state.log.replication.factor"] == kc.replication_factor
    assert config["min.insync.replicas"] == config["transaction.state.log.min.isr"] == kc.min_insync_replicas
    assert config["auto.create.topics.enable"] is False
    assert config["unclean.leader.election.enable"] is False
    assert spec["rack"] == {"topologyKey": kube.ZONE}
    assert spec["template"]["podDisruptionBudget"] == {"maxUnavailable": 1}
    assert set(kafka["spec"]["entityOperator"]) >= {"topicOperator", "userOperator"}
    if stack == "prod":
        assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert captured["kafka"].bootstrap == "openbell-kafka-bootstrap.kafka.svc:9092"


def test_kafka_pools_spread_evenly_over_zones(stack: str) -> None:
    for name, pool in pools(plan(stack)).items():
        pod = pool["spec"]["template"]["pod"]
        zone = zone_constraint(pod["topologySpreadConstraints"])
        assert zone["whenUnsatisfiable"] == "DoNotSchedule" and zone["maxSkew"] == 1
        # The selector must match the pool's pods: Strimzi labels them with the cluster and pool name.
        assert zone["labelSelector"]["matchLabels"] == {"strimzi.io/cluster": "openbell",
                                                        "strimzi.io/pool-name": name}
        assert "metadata" not in pod, "template labels would override Strimzi's own pod labels"


def test_kafka_topics(stack: str) -> None:
    p = plan(stack)
    kc = p.config.kafka
    topics = {r.inputs["metadata"]["name"]: r.inputs for r in kind(p, "KafkaTopic")}
    assert set(topics) == {"ticks", "enriched", "orders"}
    for name, topic in topics.items():
        assert topic["metadata"]["namespace"] == "kafka"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "openbell"
        assert topic["spec"]["partitions"] == getattr(kc.partitions, name)
        assert topic["spec"]["replicas"] == kc.replication_factor
        assert topic["spec"]["config"]["min.insync.replicas"] == kc.min_insync_replicas
        assert topic["spec"]["config"]["cleanup.policy"] == "delete"
    assert topics["ticks"]["spec"]["config"]["retention.ms"] == HOUR_MS
    assert topics["enriched"]["spec"]["config"]["retention.ms"] == HOUR_MS
    assert topics["orders"]["spec"]["config"]["retention.ms"] == 7 * 24 * HOUR_MS
    if stack == "prod":
        assert (topics["ticks"]["spec"]["partitions"], topics["orders"]["spec"]["partitions"]) == (144, 24)


def test_kafka_metrics_are_exported_and_scraped(stack: str) -> None:
    p = plan(stack)
    ref = one(p, "Kafka")["spec"]["kafka"]["metricsConfig"]
    assert ref["type"] == "jmxPrometheusExporter"
    key = ref["valueFrom"]["configMapKeyRef"]
    config_map = one(p, "ConfigMap")
    assert config_map["metadata"]["name"] == key["name"] and config_map["metadata"]["namespace"] == "kafka"
    exporter = yaml.safe_load(config_map["data"][key["key"]])
    assert exporter["lowercaseOutputName"] is True
    names = {rule["name"] for rule in exporter["rules"]}
    assert "kafka_server_replicamanager_$1" in names and "kafka_network_requestmetrics_$1" in names
    for rule in exporter["rules"]:
        re.compile(rule["pattern"])
    monitors = {r.inputs["metadata"]["namespace"]: r.inputs for r in kind(p, "PodMonitor")}
    kafka_monitor = monitors["kafka"]["spec"]
    assert kafka_monitor["selector"]["matchLabels"] == {"strimzi.io/cluster": "openbell", "strimzi.io/kind": "Kafka"}
    assert kafka_monitor["podMetricsEndpoints"][0]["port"] == "tcp-prometheus"


def test_strimzi_operator_release(stack: str) -> None:
    p = plan(stack)
    release = p.named("kafka-strimzi").inputs
    assert release["chart"] == "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
    assert release["version"] == p.config.kafka.strimzi_version
    assert release["namespace"] == "kafka"
    assert release["values"]["watchAnyNamespace"] is False and release["values"]["watchNamespaces"] == []


# --- PostgreSQL ----------------------------------------------------------------------------------------------


def test_postgres_cluster_matches_the_stack(stack: str) -> None:
    p = plan(stack)
    pc = p.config.postgres
    pg = one(p, "Cluster")
    assert pg["metadata"] == {**pg["metadata"], "name": "openbell", "namespace": "postgres"}
    spec = pg["spec"]
    assert spec["instances"] == pc.instances
    assert re.fullmatch(rf"ghcr\.io/cloudnative-pg/postgresql:{pc.postgres_version}\.\d+-standard-bookworm",
                        spec["imageName"])
    assert spec["storage"] == {"size": f"{pc.storage_gi}Gi", "storageClass": "gp3"}
    assert spec["resources"]["requests"] == {"cpu": pc.cpu, "memory": pc.memory}
    assert spec["bootstrap"]["initdb"]["database"] == "ledger" and spec["bootstrap"]["initdb"]["owner"] == "ledger"
    assert spec["enablePDB"] is True
    assert spec["monitoring"]["enablePodMonitor"] is True
    params = spec["postgresql"]["parameters"]
    assert all(isinstance(v, str) for v in params.values())
    assert params["synchronous_commit"] == "on"
    assert captured["postgres"].host == "openbell-rw.postgres.svc"
    if stack == "prod":
        assert spec["instances"] == 3


def test_postgres_replication_and_anti_affinity(stack: str) -> None:
    spec = one(plan(stack), "Cluster")["spec"]
    affinity = spec["affinity"]
    assert affinity["enablePodAntiAffinity"] is True and affinity["topologyKey"] == kube.ZONE
    assert zone_constraint(spec["topologySpreadConstraints"])["labelSelector"]["matchLabels"] == {
        "cnpg.io/cluster": "openbell"}
    if stack == "prod":
        assert affinity["podAntiAffinityType"] == "required"
        assert spec["postgresql"]["synchronous"] == {"method": "any", "number": 1, "dataDurability": "required"}
    else:
        assert affinity["podAntiAffinityType"] == "preferred"
        assert "synchronous" not in spec["postgresql"]


def test_postgres_backups_go_to_the_object_store(stack: str) -> None:
    p = plan(stack)
    store = one(p, "ObjectStore")
    spec = one(p, "Cluster")["spec"]
    assert spec["plugins"] == [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                "parameters": {"barmanObjectName": store["metadata"]["name"]}}]
    bucket = p.named("postgres-backups")
    config = store["spec"]["configuration"]
    assert config["destinationPath"] == f"s3://{bucket.name}/"  # the mocks name a bucket after its resource
    assert config["s3Credentials"] == {"inheritFromIAMRole": True}
    assert store["spec"]["retentionPolicy"] == f"{p.config.postgres.backup_retention_days}d"
    backup = one(p, "ScheduledBackup")["spec"]
    assert backup["method"] == "plugin" and backup["cluster"] == {"name": "openbell"}
    assert backup["pluginConfiguration"] == {"name": "barman-cloud.cloudnative-pg.io"}
    assert len(backup["schedule"].split()) == 6  # CloudNativePG's cron has seconds
    plugin = p.named("postgres-barman-cloud").inputs
    assert plugin["chart"] == "plugin-barman-cloud" and plugin["namespace"] == "cnpg-system"
    assert p.named("postgres-cnpg").inputs["version"] == p.config.postgres.cnpg_version


def kms_key_arn(p: offline.Plan) -> str:
    """The cluster's KMS key, as the mocks name its ARN."""
    (key,) = [r for r in p.of_type("aws:kms/key:Key") if r.name.startswith("cluster")]
    return f"arn:aws:kms:us-east-1:123456789012:{key.name}"


def test_backup_bucket_is_encrypted_private_and_expiring(stack: str) -> None:
    p = plan(stack)
    bucket_id = "postgres-backups-id"
    by_type = {r.type.split(":")[-1]: r.inputs for r in ours(p) if r.type.startswith("aws:s3/")}
    sse = by_type["BucketServerSideEncryptionConfiguration"]
    assert sse["bucket"] == bucket_id
    default = sse["rules"][0]["applyServerSideEncryptionByDefault"]
    assert default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": kms_key_arn(p)}
    block = by_type["BucketPublicAccessBlock"]
    assert block["bucket"] == bucket_id
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    assert by_type["BucketVersioning"]["versioningConfiguration"]["status"] == "Enabled"
    assert by_type["BucketOwnershipControls"]["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    days = p.config.postgres.backup_retention_days
    rule = by_type["BucketLifecycleConfiguration"]["rules"][0]
    assert rule["status"] == "Enabled" and rule["expiration"]["days"] > days
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == days
    tls = json.loads(by_type["BucketPolicy"]["policy"])["Statement"][0]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert by_type["Bucket"]["forceDestroy"] is False


def test_backup_role_is_scoped_to_the_bucket_and_key(stack: str) -> None:
    p = plan(stack)
    bucket_arn = "arn:aws:s3:us-east-1:123456789012:postgres-backups"
    policy = json.loads(p.named("postgres-backup-policy").inputs["policy"])
    resources = {res for statement in policy["Statement"] for res in statement["Resource"]}
    assert resources == {bucket_arn, f"{bucket_arn}/*", kms_key_arn(p)}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])
    assert not any(a.endswith("*") for a in actions)
    assert actions <= {"s3:ListBucket", "s3:GetBucketLocation", "s3:PutObject", "s3:GetObject", "s3:DeleteObject",
                       "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"}
    association = p.named("postgres-backup-pod-identity").inputs
    assert (association["namespace"], association["serviceAccount"]) == ("postgres", "openbell")
    assert association["roleArn"].endswith("/postgres-backup-role")


# --- ClickHouse ----------------------------------------------------------------------------------------------


def test_clickhouse_layout_and_keeper(stack: str) -> None:
    p = plan(stack)
    cc = p.config.clickhouse
    chi = one(p, "ClickHouseInstallation")["spec"]
    chk = one(p, "ClickHouseKeeperInstallation")
    (cluster,) = chi["configuration"]["clusters"]
    assert cluster["layout"] == {"shardsCount": cc.shards, "replicasCount": cc.replicas}
    (keeper_cluster,) = chk["spec"]["configuration"]["clusters"]
    assert keeper_cluster["layout"] == {"replicasCount": cc.keeper_replicas}
    assert chi["configuration"]["zookeeper"]["nodes"] == [{"host": f"keeper-{chk['metadata']['name']}",
                                                            "port": 2181}]
    (server,) = chi["templates"]["podTemplates"]
    assert server["spec"]["containers"][0]["image"] == f"clickhouse/clickhouse-server:{cc.clickhouse_version}"
    assert server["podDistribution"] == [{"type": "ShardAntiAffinity", "topologyKey": kube.ZONE}]
    assert zone_constraint(server["spec"]["topologySpreadConstraints"])["whenUnsatisfiable"] == "DoNotSchedule"
    (volume,) = chi["templates"]["volumeClaimTemplates"]
    assert volume["spec"]["storageClassName"] == "gp3"
    assert volume["spec"]["resources"]["requests"]["storage"] == f"{cc.storage_gi}Gi"
    assert all(s["spec"]["type"] == "ClusterIP" for s in chi["templates"]["serviceTemplates"])
    keeper_pod = chk["spec"]["templates"]["podTemplates"][0]["spec"]
    if stack == "prod":
        assert (cc.shards, cc.replicas, cc.keeper_replicas) == (2, 3, 3)
        anti = keeper_pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert [term["topologyKey"] for term in anti] == [kube.ZONE]
    assert captured["clickhouse"].host == "clickhouse-openbell.clickhouse.svc"


def test_clickhouse_pdbs_select_their_pods_and_replace_the_operators(stack: str) -> None:
    p = plan(stack)
    pod_labels = {
        r.kind: template["metadata"]["labels"]
        for r in kind(p, "ClickHouseInstallation") + kind(p, "ClickHouseKeeperInstallation")
        for template in r.inputs["spec"]["templates"]["podTemplates"]
    }
    pdbs = kind(p, "PodDisruptionBudget")
    assert len(pdbs) == 2
    matched = set()
    for pdb in pdbs:
        spec = pdb.inputs["spec"]
        assert spec["maxUnavailable"] == 1 and "minAvailable" not in spec
        assert pdb.inputs["metadata"]["namespace"] == "clickhouse"
        selector = spec["selector"]["matchLabels"]
        hits = [k for k, labels in pod_labels.items() if subset(selector, labels)]
        assert len(hits) == 1, f"{pdb.name} must select exactly one pod set, got {hits}"
        matched.add(hits[0])
    assert matched == {"ClickHouseInstallation", "ClickHouseKeeperInstallation"}
    # Two PDBs over one pod make it unevictable: the operator's own PDBs are off.
    for r in kind(p, "ClickHouseInstallation") + kind(p, "ClickHouseKeeperInstallation"):
        assert all(c["pdbManaged"] == "no" for c in r.inputs["spec"]["configuration"]["clusters"])


def test_clickhouse_enricher_password_comes_from_a_secret(stack: str) -> None:
    p = plan(stack)
    users = one(p, "ClickHouseInstallation")["spec"]["configuration"]["users"]
    ref = users["enricher/password"]["valueFrom"]["secretKeyRef"]
    secret = next(r.inputs for r in kind(p, "Secret") if r.inputs["metadata"]["namespace"] == "clickhouse")
    assert secret["metadata"]["name"] == ref["name"] and secret["metadata"]["namespace"] == "clickhouse"
    data = reveal(secret["stringData"])
    assert isinstance(secret["stringData"], dict) and SECRET_SIG in secret["stringData"], "must be a secret"
    assert len(data[ref["key"]]) >= 24
    assert users["enricher/networks/ip"] == [p.config.network.cidr]
    assert not any(key.endswith(("/password_sha256_hex", "/k8s_secret_password")) for key in users)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_ledger_owner_credentials_are_ours_and_secret(stack: str) -> None:
    p = plan(stack)
    cluster = one(p, "Cluster")
    ref = cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"]
    secret = next(r.inputs for r in kind(p, "Secret") if r.inputs["metadata"]["namespace"] == "postgres")
    assert secret["metadata"]["name"] == ref and secret["type"] == "kubernetes.io/basic-auth"
    assert SECRET_SIG in secret["stringData"], "must be a secret"
    data = reveal(secret["stringData"])
    assert data["username"] == cluster["spec"]["bootstrap"]["initdb"]["owner"] and len(data["password"]) >= 24


def test_clickhouse_password_from_pulumi_secret_config() -> None:
    import pulumi

    from infra.clickhouse import SECRET_CONFIG, ClickHouse
    from infra.cluster import Cluster
    from infra.network import Network

    def only_clickhouse(cfg: PlatformConfig) -> None:
        ClickHouse("clickhouse", cfg, Cluster("cluster", cfg, Network("network", cfg)))

    key = ":".join(SECRET_CONFIG)
    pulumi.runtime.set_all_config({key: "rotated-by-the-sre-team"}, [key])
    try:
        p = offline.run(load_stack_file(ROOT / "stacks" / "Pulumi.dev.yaml"), "dev", only_clickhouse)
    finally:
        pulumi.runtime.set_all_config({}, [])
    assert reveal(p.named("clickhouse-users").inputs["stringData"]) == {"enricher-password": "rotated-by-the-sre-team"}


# --- schemas (infra/validate.py, the same check `openbell infra plan --offline` runs) ---------------------------


def test_data_tier_objects_match_their_schemas(stack: str) -> None:
    """Schemas per object, plus references across the plan (topics name the Kafka, backups the Cluster...)."""
    validate = pytest.importorskip("infra.validate")
    p = plan(stack)
    mine = {r.name for r in ours(p)}
    results = [r for r in validate.validate(p.resources) if r.resource in mine]
    assert {r.kind for r in results} == {"Namespace", "ConfigMap", "Secret", "StorageClass",
                                         "PodDisruptionBudget"} | KNOWN_KINDS
    bad = {r.resource: (r.status, r.errors) for r in results if r.status != "ok"}
    assert not bad
