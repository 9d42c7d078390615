"""The policy pack's rules and the schema checks: each rule with a passing and a violating input, the same
rules through pulumi_policy's own wrappers (as `pulumi preview --policy-pack` would call them), through a
small program under pulumi's mocks, and over the whole dev and prod programs."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from infra import offline, validate
from infra.config import PlatformConfig, load_stack_file
from infra.policies import evaluate_recorded, from_recorded
from infra.policies import rules as R
from infra.policies.rules import UNKNOWN, Context, Resource

# pulumi_aws warns about its own deprecated S3 classes when the module loads; not ours to fix here.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
DEV, PROD = Context("dev"), Context("prod")
COMPONENTS = ("network", "cluster", "karpenter", "kafka", "postgres", "clickhouse", "apps", "observability", "tooling")
HAVE_PROGRAM = all((ROOT / "infra" / f"{c}.py").exists() for c in COMPONENTS)

# --- inputs: small, realistic objects (as Pulumi passes them: camelCase, numbers as floats) ------------

DATA_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "openbell.dev/pool", "operator": "In", "values": ["data"]},
                          {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]}]}}}
ZONE_SPREAD = [{"maxSkew": 1.0, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"strimzi.io/pool-name": "broker"}}}]
SMALL = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}
TOLERATION = [{"key": "openbell.dev/pool", "operator": "Equal", "value": "data", "effect": "NoSchedule"}]


def node_pool(replicas: float = 9.0) -> dict[str, Any]:
    return {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaNodePool",
            "metadata": {"name": "broker", "namespace": "kafka", "labels": {"strimzi.io/cluster": "openbell"}},
            "spec": {"replicas": replicas, "roles": ["broker"],
                     "storage": {"type": "persistent-claim", "size": "2000Gi", "class": "gp3", "deleteClaim": False},
                     "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "32Gi"}},
                     "template": {"pod": {"affinity": DATA_AFFINITY, "tolerations": TOLERATION,
                                          "topologySpreadConstraints": ZONE_SPREAD}}}}


def kafka() -> dict[str, Any]:
    return {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "Kafka",
            "metadata": {"name": "openbell", "namespace": "kafka",
                         "annotations": {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}},
            "spec": {"kafka": {"version": "4.1.0",
                               "listeners": [{"name": "plain", "port": 9092.0, "type": "internal", "tls": False},
                                             {"name": "tls", "port": 9093.0, "type": "internal", "tls": True}],
                               "config": {"default.replication.factor": 3.0, "min.insync.replicas": 2.0},
                               "rack": {"topologyKey": "topology.kubernetes.io/zone"},
                               "metricsConfig": {"type": "jmxPrometheusExporter", "valueFrom": {"configMapKeyRef": {
                                   "name": "kafka-metrics", "key": "kafka.yml"}}},
                               "template": {"podDisruptionBudget": {"maxUnavailable": 1.0}}},
                     "entityOperator": {"topicOperator": {"resources": SMALL}, "userOperator": {"resources": SMALL}}}}


def cnpg(instances: float = 3.0) -> dict[str, Any]:
    return {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "ledger", "namespace": "postgres"},
            "spec": {"instances": instances, "imageName": "ghcr.io/cloudnative-pg/postgresql:17.5",
                     "storage": {"size": "500Gi", "storageClass": "gp3"},
                     "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi"}},
                     "postgresql": {"parameters": {"max_connections": "400"},
                                    "synchronous": {"method": "any", "number": 1.0}},
                     "affinity": {"enablePodAntiAffinity": True, "topologyKey": "topology.kubernetes.io/zone",
                                  "podAntiAffinityType": "required",
                                  "nodeSelector": {"openbell.dev/pool": "data",
                                                   "karpenter.sh/capacity-type": "on-demand"},
                                  "tolerations": TOLERATION},
                     "enablePDB": True, "bootstrap": {"initdb": {"database": "ledger", "owner": "ledger"}},
                     "plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                  "parameters": {"barmanObjectName": "backups"}}]}}


def chi(replicas: float = 3.0) -> dict[str, Any]:
    pod = {"nodeSelector": {"openbell.dev/pool": "data", "karpenter.sh/capacity-type": "on-demand"},
           "tolerations": TOLERATION,
           "topologySpreadConstraints": [{"maxSkew": 1.0, "topologyKey": "topology.kubernetes.io/zone",
                                          "whenUnsatisfiable": "DoNotSchedule",
                                          "labelSelector": {"matchLabels": {"app": "clickhouse"}}}],
           "containers": [{"name": "clickhouse", "image": "clickhouse/clickhouse-server:25.8",
                           "resources": {"requests": {"cpu": "8", "memory": "32Gi"}}}]}
    return {"apiVersion": "clickhouse.altinity.com/v1", "kind": "ClickHouseInstallation",
            "metadata": {"name": "openbell", "namespace": "clickhouse"},
            "spec": {"defaults": {"templates": {"podTemplate": "server", "dataVolumeClaimTemplate": "data"}},
                     "configuration": {"zookeeper": {"nodes": [{"host": "keeper-openbell", "port": 2181.0}]},
                                       "clusters": [{"name": "analytics",
                                                     "layout": {"shardsCount": 2.0, "replicasCount": replicas}}]},
                     "templates": {"podTemplates": [{"name": "server", "metadata": {"labels": {"app": "clickhouse"}},
                                                     "spec": pod}],
                                   "volumeClaimTemplates": [{"name": "data", "spec": {
                                       "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                                       "resources": {"requests": {"storage": "1000Gi"}}}}]}}}


def deployment(replicas: float = 3.0, image: str = "registry/openbell/gateway:1.0.0",
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = labels or {"app.kubernetes.io/name": "gateway", "role": "stable"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gateway", "namespace": "openbell"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "gateway", "image": image,
                          "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}}]}}}}


def pdb(selector: dict[str, str] | None = None, **limits: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "gateway", "namespace": "openbell"},
            "spec": {"selector": {"matchLabels": selector or {"app.kubernetes.io/name": "gateway"}},
                     **(limits or {"maxUnavailable": 1.0})}}


def data_nodepool(capacity: list[str], zones: int = 3) -> dict[str, Any]:
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "data"},
            "spec": {"template": {"metadata": {"labels": {"openbell.dev/pool": "data"}}, "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "taints": [{"key": "openbell.dev/pool", "value": "data", "effect": "NoSchedule"}],
                "requirements": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity},
                                 {"key": "topology.kubernetes.io/zone", "operator": "In",
                                  "values": ["us-east-1a", "us-east-1b", "us-east-1c"][:zones]}]}},
                "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30m",
                               "budgets": [{"nodes": "0", "reasons": ["Underutilized", "Drifted"]}]}}}


def k8s_type(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"] if "/" in obj["apiVersion"] else f"core/{obj['apiVersion']}"
    return f"kubernetes:{api}:{obj['kind']}"


def res(obj: dict[str, Any], name: str | None = None) -> Resource:
    return Resource(k8s_type(obj), name or f"{obj['kind'].lower()}-{obj['metadata']['name']}", obj)


def violations(resources: list[Resource], ctx: Context = PROD, rule: str | None = None) -> list[R.Violation]:
    return [v for v in R.evaluate(resources, ctx) if rule is None or v.rule == rule]


def messages(resources: list[Resource], rule: str, ctx: Context = PROD) -> list[str]:
    return [v.message for v in violations(resources, ctx, rule)]


# --- data-tier-never-on-spot ---------------------------------------------------------------------------


def test_data_pool_on_demand_passes_and_spot_is_refused() -> None:
    assert messages([res(data_nodepool(["on-demand"]))], "data-tier-never-on-spot") == []
    (msg,) = messages([res(data_nodepool(["spot", "on-demand"]))], "data-tier-never-on-spot")
    assert "['spot']" in msg and "never runs on spot" in msg
    unpinned = data_nodepool(["on-demand"])
    unpinned["spec"]["template"]["spec"]["requirements"] = []
    assert "does not pin karpenter.sh/capacity-type" in messages([res(unpinned)], "data-tier-never-on-spot")[0]
    # The gateway pool may use spot: the rule only looks at the data pool.
    gateway = data_nodepool(["spot", "on-demand"])
    gateway["metadata"]["name"] = "gateway"
    gateway["spec"]["template"]["metadata"]["labels"] = {"openbell.dev/pool": "gateway"}
    gateway["spec"]["template"]["spec"]["taints"] = []
    assert messages([res(gateway)], "data-tier-never-on-spot") == []


@pytest.mark.parametrize("make", [node_pool, cnpg, chi])
def test_data_tier_pods_must_pin_the_data_pool(make: Any) -> None:
    good = make()
    assert messages([res(good)], "data-tier-never-on-spot") == []
    loose = copy.deepcopy(good)
    if loose["kind"] == "KafkaNodePool":
        del loose["spec"]["template"]["pod"]["affinity"]
    elif loose["kind"] == "Cluster":
        del loose["spec"]["affinity"]["nodeSelector"]
    else:
        del loose["spec"]["templates"]["podTemplates"][0]["spec"]["nodeSelector"]
    (msg,) = messages([res(loose)], "data-tier-never-on-spot")
    assert "does not pin the data pool" in msg and "may land on spot" in msg
    spot = copy.deepcopy(good)
    if spot["kind"] == "Cluster":
        spot["spec"]["affinity"]["nodeSelector"]["karpenter.sh/capacity-type"] = "spot"
        assert "asks for spot" in messages([res(spot)], "data-tier-never-on-spot")[0]


def test_required_node_affinity_terms_are_ored_so_each_must_pin() -> None:
    pool = node_pool()
    terms = pool["spec"]["template"]["pod"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    terms.append({"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]})
    assert messages([res(pool)], "data-tier-never-on-spot")


# --- stateful-spread-3-zones-in-prod -------------------------------------------------------------------


def test_three_zone_spread_is_required_in_prod_only() -> None:
    good = [res(node_pool()), res(cnpg()), res(chi()), res(data_nodepool(["on-demand"]))]
    assert messages(good, "stateful-spread-3-zones-in-prod") == []
    small = [res(node_pool(1.0)), res(cnpg(1.0)), res(chi(1.0)), res(data_nodepool(["on-demand"], zones=1))]
    assert messages(small, "stateful-spread-3-zones-in-prod", DEV) == []
    found = messages(small, "stateful-spread-3-zones-in-prod", PROD)
    assert len(found) == 4
    assert any("KafkaNodePool 'broker' has 1 replica(s): prod needs >= 3" in m for m in found)
    assert any("limits nodes to 1 zone(s)" in m for m in found)


def test_prod_spread_must_be_hard_and_on_the_zone_key() -> None:
    soft = node_pool()
    soft["spec"]["template"]["pod"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] = "ScheduleAnyway"
    assert "DoNotSchedule" in messages([res(soft)], "stateful-spread-3-zones-in-prod")[0]
    preferred = cnpg()
    preferred["spec"]["affinity"]["podAntiAffinityType"] = "preferred"
    assert "podAntiAffinityType required" in messages([res(preferred)], "stateful-spread-3-zones-in-prod")[0]
    host_only = chi()
    host_only["spec"]["templates"]["podTemplates"][0]["spec"]["topologySpreadConstraints"] = []
    assert "zone podDistribution" in messages([res(host_only)], "stateful-spread-3-zones-in-prod")[0]
    host_only["spec"]["templates"]["podTemplates"][0]["podDistribution"] = [
        {"type": "ReplicaAntiAffinity", "topologyKey": "topology.kubernetes.io/zone"}]
    assert messages([res(host_only)], "stateful-spread-3-zones-in-prod") == []


# --- pdb-for-replicated-workloads ----------------------------------------------------------------------


def test_replicated_deployment_needs_exactly_one_pdb_that_lets_a_pod_go() -> None:
    rule = "pdb-for-replicated-workloads"
    assert messages([res(deployment()), res(pdb())], rule) == []
    assert "no PodDisruptionBudget" in messages([res(deployment())], rule)[0]
    assert messages([res(deployment(1.0))], rule) == []  # one replica: nothing to protect
    assert "no PodDisruptionBudget" in messages([res(deployment()), res(pdb({"app.kubernetes.io/name": "x"}))],
                                                rule)[0]
    second = pdb()
    second["metadata"]["name"] = "gateway-2"
    assert "2 PDBs select its pods" in messages([res(deployment()), res(pdb()), res(second, "pdb-2")], rule)[0]
    assert "maxUnavailable 0" in messages([res(deployment()), res(pdb(maxUnavailable=0.0))], rule)[0]
    assert "minAvailable 3" in messages([res(deployment()), res(pdb(minAvailable=3.0))], rule)[0]


def test_an_hpa_minimum_makes_a_workload_replicated() -> None:
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "gateway", "namespace": "openbell"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"},
                    "minReplicas": 8.0, "maxReplicas": 36.0}}
    assert "runs 8 replicas" in messages([res(deployment(1.0)), res(hpa)], "pdb-for-replicated-workloads")[0]


def test_operator_pdbs_are_accepted_but_not_doubled() -> None:
    rule = "pdb-for-replicated-workloads"
    assert messages([res(kafka()), res(node_pool()), res(cnpg()), res(chi())], rule) == []
    double = pdb({"app": "clickhouse"})
    double["metadata"]["namespace"] = "clickhouse"
    (msg,) = messages([res(chi()), res(double)], rule)
    assert "operator already creates a PDB" in msg
    managed_off = chi()
    managed_off["spec"]["configuration"]["clusters"][0]["pdbManaged"] = "no"
    assert messages([res(managed_off), res(double)], rule) == []
    assert "no PodDisruptionBudget" in messages([res(managed_off)], rule)[0]
    no_pdb = cnpg()
    no_pdb["spec"]["enablePDB"] = False
    assert any("enablePDB is false" in m for m in messages([res(no_pdb)], rule))
    loose = kafka()
    loose["spec"]["kafka"]["template"]["podDisruptionBudget"]["maxUnavailable"] = 3.0
    assert "exactly one broker" in messages([res(loose)], rule)[0]


# --- no-public-data-tier -------------------------------------------------------------------------------


def service(namespace: str, type_: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": namespace},
            "spec": {"type": type_, "ports": [{"port": 9092.0}], "selector": {"a": "b"}}}


def bucket_with(pab: dict[str, Any] | None, sse: bool = True) -> list[Resource]:
    out = [Resource("aws:s3/bucket:Bucket", "backups", {"bucketPrefix": "backups-"})]
    if pab is not None:
        out.append(Resource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "backups-pab",
                            {"bucket": UNKNOWN, **pab}, {"bucket": ("backups",)}))
    if sse:
        out.append(Resource(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "backups-sse",
            {"bucket": UNKNOWN, "rules": [{"applyServerSideEncryptionByDefault": {
                "sseAlgorithm": "aws:kms", "kmsMasterKeyId": UNKNOWN}}]}, {"bucket": ("backups",)}))
    return out


ALL_BLOCKED = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
               "restrictPublicBuckets": True}


def test_no_public_endpoint_for_the_data_tier() -> None:
    rule = "no-public-data-tier"
    assert messages([res(service("kafka", "ClusterIP")), res(service("openbell", "LoadBalancer")), res(kafka())],
                    rule) == []
    assert "type LoadBalancer in a data-tier namespace" in messages([res(service("kafka", "LoadBalancer"))], rule)[0]
    assert "NodePort" in messages([res(service("postgres", "NodePort"))], rule)[0]
    external = kafka()
    external["spec"]["kafka"]["listeners"].append({"name": "ext", "port": 9094.0, "type": "loadbalancer",
                                                  "tls": True})
    assert "listener 'ext' is type loadbalancer" in messages([res(external)], rule)[0]
    assert messages([Resource("aws:rds/instance:Instance", "db", {"publiclyAccessible": True,
                                                                  "storageEncrypted": True})], rule)


def test_every_bucket_blocks_all_public_access() -> None:
    rule = "no-public-data-tier"
    assert messages(bucket_with(ALL_BLOCKED), rule) == []
    assert "has no BucketPublicAccessBlock" in messages(bucket_with(None), rule)[0]
    assert "['restrictPublicBuckets']" in messages(bucket_with({**ALL_BLOCKED, "restrictPublicBuckets": False}),
                                                   rule)[0]


# --- encryption-at-rest --------------------------------------------------------------------------------


def storage_class(encrypted: str | None, name: str = "gp3") -> dict[str, Any]:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "ebs.csi.aws.com",
            "parameters": {"type": "gp3", **({"encrypted": encrypted} if encrypted else {})}}


@pytest.mark.parametrize(("type_", "good", "bad", "expected"), [
    ("aws:eks/cluster:Cluster", {"version": "1.31", "encryptionConfig": {"resources": ["secrets"],
                                                                         "provider": {"keyArn": UNKNOWN}}},
     {"version": "1.31"}, "does not encrypt secrets"),
    ("aws:sqs/queue:Queue", {"sqsManagedSseEnabled": True}, {}, "neither sqsManagedSseEnabled"),
    ("aws:cloudwatch/logGroup:LogGroup", {"kmsKeyId": UNKNOWN}, {"retentionInDays": 7.0}, "kmsKeyId"),
    ("aws:kms/key:Key", {"enableKeyRotation": True}, {"enableKeyRotation": False}, "does not rotate"),
    ("aws:ec2/launchTemplate:LaunchTemplate", {"blockDeviceMappings": [{"ebs": {"encrypted": "true"}}]},
     {"blockDeviceMappings": [{"ebs": {"volumeSize": 50.0}}]}, "not encrypted"),
    ("kubernetes:storage.k8s.io/v1:StorageClass", storage_class("true"), storage_class(None), "encrypted"),
])
def test_encryption_at_rest(type_: str, good: dict[str, Any], bad: dict[str, Any], expected: str) -> None:
    assert R.encryption_at_rest(type_, good, PROD) == []
    (msg,) = R.encryption_at_rest(type_, bad, PROD)
    assert expected in msg


def test_buckets_have_sse_and_data_volumes_an_encrypted_declared_class() -> None:
    rule = "encryption-at-rest"
    assert messages(bucket_with(ALL_BLOCKED), rule) == []
    assert "no server-side encryption" in messages(bucket_with(ALL_BLOCKED, sse=False), rule)[0]
    sc = res(storage_class("true"))
    assert messages([sc, res(node_pool()), res(cnpg()), res(chi())], rule) == []
    assert all("which the program does not declare" in m
               for m in messages([res(node_pool()), res(cnpg())], rule))
    found = messages([res(storage_class(None)), res(node_pool())], rule)
    assert any("uses StorageClass 'gp3', which is not encrypted" in m for m in found)
    default_class = copy.deepcopy(node_pool())
    del default_class["spec"]["storage"]["class"]
    assert "declares no (encrypted) default" in messages([sc, res(default_class)], rule)[0]


# --- resource-requests-on-every-container --------------------------------------------------------------


def test_every_container_requests_cpu_and_memory() -> None:
    rule = "resource-requests-on-every-container"
    assert messages([res(deployment()), res(kafka()), res(node_pool()), res(cnpg()), res(chi())], rule) == []
    bare = deployment()
    bare["spec"]["template"]["spec"]["initContainers"] = [{"name": "init", "image": "busybox:1.36",
                                                           "resources": {"requests": {"cpu": "10m"}}}]
    (msg,) = messages([res(bare)], rule)
    assert "initContainers[0] (init) has no memory request" in msg
    pool = node_pool()
    del pool["spec"]["resources"]
    assert "spec.resources has no cpu/memory request" in messages([res(pool)], rule)[0]
    ch = chi()
    del ch["spec"]["templates"]["podTemplates"][0]["spec"]["containers"][0]["resources"]
    assert "(clickhouse) has no cpu/memory request" in messages([res(ch)], rule)[0]
    store = {"apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
             "metadata": {"name": "backups", "namespace": "postgres"},
             "spec": {"configuration": {"destinationPath": "s3://b/", "s3Credentials": {"inheritFromIAMRole": True}}}}
    assert "instanceSidecarConfiguration.resources" in messages([res(store)], rule)[0]


# --- images-pinned -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("image", "problem"), [
    ("registry.example:5000/openbell/gateway:1.0.0", None),
    ("ghcr.io/cloudnative-pg/postgresql@sha256:" + "a" * 64, None),
    ("clickhouse/clickhouse-server", "no tag"),
    ("registry.example:5000/openbell/gateway", "no tag"),
    ("clickhouse/clickhouse-server:latest", "latest"),
])
def test_image_references(image: str, problem: str | None) -> None:
    found = R.image_problem(image)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_images_charts_operators_and_amis_are_pinned() -> None:
    rule = "images-pinned"
    release = {"chart": "strimzi-kafka-operator", "version": "0.48.0", "namespace": "kafka",
               "values": {"image": {"tag": "0.48.0"}}}
    helm = "kubernetes:helm.sh/v3:Release"
    assert messages([res(deployment()), res(kafka()), res(cnpg()), res(chi()), Resource(helm, "r", release)],
                    rule) == []
    assert "uses the latest tag" in messages([res(deployment(image="x/gateway:latest"))], rule)[0]
    assert "not an exact version" in messages([Resource(helm, "r", {**release, "version": "^0.48"})], rule)[0]
    assert "values.image.tag is latest" in messages(
        [Resource(helm, "r", {**release, "values": {"image": {"tag": "latest"}}})], rule)[0]
    unpinned_pg = cnpg()
    del unpinned_pg["spec"]["imageName"]
    assert "sets no imageName" in messages([res(unpinned_pg)], rule)[0]
    no_version = kafka()
    del no_version["spec"]["kafka"]["version"]
    assert "does not set spec.kafka.version" in messages([res(no_version)], rule)[0]
    nodeclass = {"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": "default"},
                 "spec": {"amiSelectorTerms": [{"alias": "al2023@latest"}]}}
    assert "pin a version" in messages([res(nodeclass)], rule)[0]


# --- the rule set, the offline adapter, the real pack --------------------------------------------------


def test_rules_are_the_seven_named_in_issue_7() -> None:
    assert R.RULE_NAMES == ("data-tier-never-on-spot", "stateful-spread-3-zones-in-prod",
                            "pdb-for-replicated-workloads", "no-public-data-tier", "encryption-at-rest",
                            "resource-requests-on-every-container", "images-pinned")


def test_data_namespaces_match_the_programs() -> None:
    from infra.kube import NAMESPACES

    assert {NAMESPACES[k] for k in ("kafka", "postgres", "clickhouse")} == R.DATA_NAMESPACES


def test_unknown_values_never_fail_a_check() -> None:
    assert R.encryption_at_rest("aws:kms/key:Key", {"enableKeyRotation": UNKNOWN}, PROD) == []
    assert R.images_pinned("kubernetes:postgresql.cnpg.io/v1:Cluster",
                           {"metadata": {"name": "x"}, "spec": {"imageName": UNKNOWN}}, PROD) == []


def pack() -> Any:
    return importlib.import_module("infra.policies.__main__")


def test_the_pack_wraps_every_rule_as_mandatory_pulumi_policies() -> None:
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

    policies = pack().policies()
    names = [p.name for p in policies]
    assert len(names) == len(set(names))
    assert {p.name for p in policies if isinstance(p, ResourceValidationPolicy)} == set(R.RULE_NAMES)
    assert {p.name for p in policies if isinstance(p, StackValidationPolicy)} == {
        "pdb-for-replicated-workloads-stack", "no-public-data-tier-stack", "encryption-at-rest-stack"}
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in policies)


def test_the_pack_reports_what_the_offline_rules_report() -> None:
    """Through pulumi_policy's own argument types and unknown-checking proxies, as the engine calls it."""
    from pulumi_policy import PolicyResource, ResourceValidationArgs, StackValidationArgs
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    by_name = {p.name: p for p in pack().policies()}
    pool = data_nodepool(["spot", "on-demand"])
    urn = "urn:pulumi:prod::openbell::kubernetes:karpenter.sh/v1:NodePool::karpenter-data"
    reported: list[str] = []
    args = ResourceValidationArgs(k8s_type(pool), unknown_checking_proxy(pool), urn, "karpenter-data", None, None)
    by_name["data-tier-never-on-spot"].validate(args, lambda message, _urn: reported.append(message))
    assert reported == messages([res(pool)], "data-tier-never-on-spot")

    reported.clear()
    key = {"enableKeyRotation": UNKNOWN_STRING_VALUE, "description": "k"}
    args = ResourceValidationArgs("aws:kms/key:Key", unknown_checking_proxy(key), urn, "k", None, None)
    by_name["encryption-at-rest"].validate(args, lambda message, _urn: reported.append(message))
    assert reported == []

    bucket = PolicyResource("aws:s3/bucket:Bucket", unknown_checking_proxy({"bucketPrefix": "b-"}),
                            "urn:pulumi:prod::openbell::aws:s3/bucket:Bucket::backups", "backups", None, None, None,
                            [], {})
    block = PolicyResource(R.PAB_TYPE, unknown_checking_proxy({"bucket": UNKNOWN_STRING_VALUE, **ALL_BLOCKED,
                                                                "ignorePublicAcls": False}),
                           "urn:pulumi:prod::openbell::" + R.PAB_TYPE + "::pab", "pab", None, None, None, [],
                           {"bucket": [bucket]})
    found: list[tuple[str, str | None]] = []
    by_name["no-public-data-tier-stack"].validate(StackValidationArgs([bucket, block]),
                                                  lambda message, urn_: found.append((message, urn_)))
    assert found == [("bucket 'backups': public access block 'pab' leaves ['ignorePublicAcls'] off", bucket.urn)]


def test_the_pack_environment_comes_from_config_then_the_stack() -> None:
    env = pack().environment
    assert env({"environment": "prod"}, "urn:pulumi:dev::openbell::x::y") == "prod"
    assert env({}, "urn:pulumi:prod::openbell::x::y") in ("prod", __import__("os").environ.get("PULUMI_STACK"))


def test_policy_pack_yaml_is_a_python_pack() -> None:
    import yaml

    document = yaml.safe_load((ROOT / "infra" / "policies" / "PulumiPolicy.yaml").read_text())
    assert document["runtime"]["name"] == "python"
    assert (ROOT / "infra" / "policies" / document["runtime"]["options"]["virtualenv"]).resolve() == ROOT / ".venv"


# --- through pulumi's mocks ----------------------------------------------------------------------------


def dev() -> PlatformConfig:
    return load_stack_file(ROOT / "stacks" / "Pulumi.dev.yaml")


def small_program(spot_data: bool) -> Any:
    """A data NodePool, a bucket with its public-access block and SSE, a replicated Deployment and its PDB."""

    def program(cfg: PlatformConfig) -> None:
        import pulumi
        import pulumi_aws as aws
        import pulumi_kubernetes as k8s

        provider = k8s.Provider("k8s", kubeconfig="{}")
        opts = pulumi.ResourceOptions(provider=provider)
        pool = data_nodepool(["spot", "on-demand"] if spot_data else ["on-demand"])
        k8s.apiextensions.CustomResource("data-pool", api_version=pool["apiVersion"], kind=pool["kind"],
                                         metadata=pool["metadata"], spec=pool["spec"], opts=opts)
        bucket = aws.s3.Bucket("backups", bucket_prefix="backups-")
        aws.s3.BucketPublicAccessBlock("backups-pab", bucket=bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True)
        aws.s3.BucketServerSideEncryptionConfiguration("backups-sse", bucket=bucket.id, rules=[{
            "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}])
        d = deployment()
        k8s.apps.v1.Deployment("gateway", metadata=d["metadata"], spec=d["spec"], opts=opts)
        p = pdb()
        k8s.policy.v1.PodDisruptionBudget("gateway-pdb", metadata=p["metadata"], spec=p["spec"], opts=opts)

    return program


def test_a_small_program_under_mocks_passes_and_a_spot_data_pool_fails() -> None:
    plan = offline.run(dev(), "dev", small_program(spot_data=False))
    recorded = from_recorded(plan.resources)
    assert next(r for r in recorded if r.name == "backups-pab").refs == {"bucket": ("backups",)}
    assert evaluate_recorded(plan.resources, "dev") == []
    bad = offline.run(dev(), "dev", small_program(spot_data=True))
    (v,) = evaluate_recorded(bad.resources, "dev")
    assert (v.rule, v.resource, v.type) == ("data-tier-never-on-spot", "data-pool",
                                            "kubernetes:karpenter.sh/v1:NodePool")


# --- schemas -------------------------------------------------------------------------------------------

SCHEMA_FILES = sorted((ROOT / "infra" / "schemas").glob("*.json"))


def test_every_schema_is_valid_draft_2020_12_named_and_used() -> None:
    from jsonschema import Draft202012Validator

    used = {p.resolve() for p in validate.CRD_SCHEMAS.values()}
    for path in SCHEMA_FILES:
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith("/" + path.name)
        if path.name != "_common.json":
            assert "$comment" in schema and "Hand-written from" in schema["$comment"], path.name
            assert path.resolve() in used, f"{path.name} is not in infra.validate.CRD_SCHEMAS"
    assert validate.CRD_SCHEMAS[("gateway.networking.k8s.io/v1", "HTTPRoute")] == (
        ROOT / "cli/openbell/targets/schemas/httproute-v1.json")


@pytest.mark.parametrize("obj", [kafka(), node_pool(), cnpg(), chi(), deployment(), pdb(), data_nodepool(["on-demand"]),
                                 storage_class("true")], ids=lambda o: o["kind"])
def test_realistic_objects_validate(obj: dict[str, Any]) -> None:
    assert validate.validate_object(obj)[:1] == ("ok",), validate.validate_object(obj)


@pytest.mark.parametrize(("obj", "mutate", "expected"), [
    (kafka(), lambda o: o["spec"]["kafka"]["listeners"][0].update(type="public"), "'public' is not one of"),
    (kafka(), lambda o: o["spec"]["kafka"]["metricsConfig"].pop("valueFrom"), "'valueFrom' is a required property"),
    (node_pool(), lambda o: o["spec"].update(role=["broker"]), "'role' was unexpected"),
    (node_pool(), lambda o: o["metadata"]["labels"].clear(), "strimzi.io/cluster"),
    (cnpg(), lambda o: o["spec"]["affinity"].update(podAntiAffinityType="hard"), "'hard' is not one of"),
    (cnpg(1.0), lambda o: None, "should not be valid"),  # one instance with a synchronous standby
    (chi(), lambda o: o["spec"]["templates"]["podTemplates"][0]["spec"]["containers"][0].update(imge="x"),
     "'imge' was unexpected"),
    (data_nodepool(["on-demand"]), lambda o: o["spec"]["disruption"]["budgets"][0].update(schedule="0 13 * * *"),
     "'duration' is a dependency of 'schedule'"),
    (deployment(), lambda o: o["spec"]["template"]["spec"]["containers"][0].update(resourcez={}),
     "'resourcez' was unexpected"),
    (pdb(), lambda o: o["metadata"].pop("name"), ""),
], ids=["listener-type", "metrics-valueFrom", "nodepool-typo", "strimzi-label", "cnpg-antiaffinity",
        "cnpg-sync-1-instance", "chi-podspec", "karpenter-budget", "deployment-strict", "pdb-name"])
def test_schemas_refuse_what_the_api_server_or_operator_would(obj: dict[str, Any], mutate: Any,
                                                               expected: str) -> None:
    obj = copy.deepcopy(obj)
    mutate(obj)
    status, _, errors = validate.validate_object(obj)
    if obj["kind"] == "PodDisruptionBudget":
        # metadata.name is not required by the OpenAPI schema (generateName exists): it stays valid.
        assert status == "ok"
        return
    assert status == "invalid"
    assert any(expected in e for e in errors), errors


def test_scheduled_backups_need_six_cron_fields() -> None:
    backup = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "ScheduledBackup",
              "metadata": {"name": "daily", "namespace": "postgres"},
              "spec": {"schedule": "0 0 2 * * *", "cluster": {"name": "ledger"}, "method": "plugin",
                       "pluginConfiguration": {"name": "barman-cloud.cloudnative-pg.io"}}}
    assert validate.validate_object(backup)[0] == "ok"
    backup["spec"]["schedule"] = "0 2 * * *"  # five fields: robfig/cron reads it as every hour at :02
    assert validate.validate_object(backup)[0] == "invalid"


def test_integral_floats_and_secrets_are_normalised() -> None:
    wrapped = {validate.SECRET_SIG[0]: validate.SECRET_SIG[1], "value": {"password": "p"}}
    assert validate.normalise({"a": 3.0, "b": [1.5, 2.0], "s": wrapped}) == {"a": 3, "b": [1.5, 2],
                                                                            "s": {"password": "p"}}


class Rec:
    def __init__(self, obj: dict[str, Any], name: str | None = None, type_: str | None = None) -> None:
        self.type, self.name, self.inputs = type_ or k8s_type(obj), name or obj["metadata"]["name"], obj


def test_unknown_kinds_are_reported_and_broken_references_fail() -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kafka"}}
    topic = {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic",
             "metadata": {"name": "ticks", "namespace": "kafka", "labels": {"strimzi.io/cluster": "other"}},
             "spec": {"partitions": 6.0, "replicas": 1.0}}
    odd = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "kafka"}}
    release = Rec({"metadata": {"name": "r"}}, "op", "kubernetes:helm.sh/v3:Release")
    release.inputs = {"chart": "x", "namespace": "monitoring", "createNamespace": True}
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
               "metadata": {"name": "m", "namespace": "monitoring"}, "spec": {"selector": {"matchLabels": {"a": "b"}}}}
    no_ns = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "b"}}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "hpa", "namespace": "kafka"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gone"},
                    "minReplicas": 2.0, "maxReplicas": 4.0}}
    ch = chi()
    ch["metadata"]["namespace"] = "kafka"
    ch["spec"]["defaults"]["templates"]["podTemplate"] = "sever"
    results = {r.resource: r for r in validate.validate([Rec(ns), Rec(kafka(), "k"), Rec(topic), Rec(odd),
                                                          release, Rec(monitor), Rec(no_ns), Rec(hpa),
                                                          Rec(ch, "chi")])}
    assert results["k"].status == "ok" and results["m"].status == "ok"
    assert results["w"].status == "unknown"
    assert results["ticks"].status == "invalid"
    assert any("no Kafka 'other'" in e for e in results["ticks"].errors)
    assert any("metadata.namespace is not set" in e for e in results["cm"].errors)
    assert any("scaleTargetRef Deployment/gone" in e for e in results["hpa"].errors)
    assert any("podTemplate='sever' is not defined" in e for e in results["chi"].errors)


# --- the whole program ---------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_PROGRAM, reason="the components (infra/network.py ... infra/tooling.py) are not all "
                                             "written yet")
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_whole_program_passes_every_policy_and_schema(stack: str) -> None:
    cfg = load_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml")
    plan = offline.run(cfg, stack)
    assert [v.as_dict() for v in evaluate_recorded(plan.resources, cfg.environment)] == []
    results = validate.validate(plan.resources)
    assert [r.as_dict() for r in results if r.status == "invalid"] == []
    kinds = {r.kind for r in results if r.status == "ok"}
    assert {"Kafka", "KafkaNodePool", "Cluster", "ClickHouseInstallation", "NodePool", "Deployment"} <= kinds


@pytest.mark.parametrize(("cpu", "flagged"), [("0", True), ("0m", True), ("0.0", True), ("500m", False),
                                              ("0.5", False), ("10", False)])
def test_a_zero_request_is_no_request(cpu: str, flagged: bool) -> None:
    deployment = Resource("kubernetes:apps/v1:Deployment", "d", {
        "metadata": {"name": "d", "namespace": "openbell"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "r/c:1", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}}}})
    messages = R.resource_requests(deployment.type, deployment.props, Context("dev"))
    assert bool(messages) is flagged, messages
    assert not R.resource_requests(deployment.type, {**deployment.props, "spec": {"template": {"spec": {
        "containers": [{"name": "c", "resources": {"requests": {"cpu": UNKNOWN, "memory": UNKNOWN}}}]}}}},
        Context("dev"))
