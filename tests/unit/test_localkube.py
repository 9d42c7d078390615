"""The local cluster's pure parts: the processes' argument lists, the nodes, the kubeconfig, pod discovery."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

from openbell.localkube import cluster
from openbell.localkube.pods import pod_key, wanted


def _layout(tmp_path: Path) -> cluster.Layout:
    return cluster.Layout(tmp_path / "state", tmp_path / "cache")


def test_the_plan_starts_etcd_first_and_the_api_server_on_the_namespace_address(tmp_path: Path) -> None:
    plan = cluster.plan(_layout(tmp_path))
    names = [p["name"] for p in plan["processes"]]
    assert names == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
    api = plan["processes"][1]["argv"]
    assert f"--advertise-address={cluster.NS_IP}" in api and "--endpoint-reconciler-type=none" in api
    assert f"--secure-port={cluster.API_PORT}" in api and "--authorization-mode=Node,RBAC" in api
    assert plan["tmpfs"] == [str(tmp_path / "state" / "etcd")]  # etcd's data dies with the namespace
    kwok = plan["processes"][4]["argv"]
    assert f"--manage-nodes-with-annotation-selector={cluster.KWOK_ANNOTATION}=fake" in kwok


def test_nodes_cover_three_zones_each_pool_and_capacity_type_with_their_own_pod_subnets() -> None:
    nodes = cluster.nodes()
    zones = {n["metadata"]["labels"][cluster.ZONE_LABEL] for n in nodes}
    assert zones == set(cluster.ZONES)
    gateway = [n for n in nodes if n["metadata"]["labels"][cluster.POOL_LABEL] == "gateway"]
    assert {n["metadata"]["labels"][cluster.CAPACITY_TYPE] for n in gateway} == {"spot", "on-demand"}
    data = [n for n in nodes if n["metadata"]["labels"][cluster.POOL_LABEL] == "data"]
    assert all(n["spec"]["taints"] == [{"key": cluster.POOL_LABEL, "value": "data", "effect": "NoSchedule"}]
               for n in data) and len(data) == 3
    subnets = [ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes]
    assert len(set(subnets)) == len(nodes)  # KWOK numbers each node's pods from its own podCIDR
    assert all(s.subnet_of(ipaddress.ip_network(cluster.POD_CIDR)) for s in subnets)
    assert all(n["metadata"]["annotations"] == {cluster.KWOK_ANNOTATION: "fake"} for n in nodes)


def test_the_kubeconfig_names_the_server_and_carries_the_ca(tmp_path: Path) -> None:
    config = cluster.kubeconfig(_layout(tmp_path), b"PEM", "t0ken")
    text = yaml.safe_dump(config)
    assert config["current-context"] == cluster.CONTEXT and "t0ken" in text
    assert config["clusters"][0]["cluster"]["server"] == f"https://{cluster.NS_IP}:{cluster.API_PORT}"
    assert config["clusters"][0]["cluster"]["certificate-authority-data"] == "UEVN"


def test_crd_files_are_read_per_source(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    assert cluster.crd_files(layout) == []
    (layout.crds / "gateway-api").mkdir(parents=True)
    crd = layout.crds / "gateway-api" / "x.yaml"
    crd.write_text("---\nkind: CustomResourceDefinition\nmetadata: {name: a.b}\n---\nkind: ConfigMap\n")
    assert cluster.crd_files(layout) == [crd]
    assert [d["metadata"]["name"] for d in cluster.crd_documents(crd)] == ["a.b"]


def test_only_running_pods_with_an_ip_get_a_process() -> None:
    pod = {"metadata": {"uid": "u1", "name": "p"}, "status": {"phase": "Running", "podIP": "10.244.1.1"}}
    assert wanted(pod) and pod_key(pod) == "u1"
    assert not wanted({**pod, "status": {"phase": "Pending"}})
    assert not wanted({**pod, "status": {"phase": "Running"}})
    assert not wanted({**pod, "metadata": {"uid": "u1", "name": "p", "deletionTimestamp": "2026-12-04T00:00:00Z"}})


def test_a_transcription_becomes_a_structural_crd() -> None:
    import json

    from openbell.localkube import transcribed

    (crd,) = transcribed.crds()
    assert crd["metadata"]["name"] == "testruns.k6.io"
    assert crd["metadata"]["annotations"]["openbell.dev/source"] == \
        "transcription: infra/schemas/k6-testrun-v1alpha1.json"
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = json.dumps(schema)
    assert "$ref" not in text and '"const"' not in text and "additionalProperties\": false" not in text
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["parallelism", "script"]
    assert spec["properties"]["parallelism"] == {"type": "integer", "minimum": 1, "maximum": 2147483647}
    assert spec["properties"]["cleanup"] == {"enum": ["post"], "type": "string"}

    def typed(node: dict) -> None:  # structural: every node has a type, or preserves unknown fields
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), node
        for child in (node.get("properties") or {}).values():
            typed(child)
        if isinstance(node.get("items"), dict):
            typed(node["items"])

    typed(schema)


def test_operator_transcriptions_declare_every_field_their_branches_and_other_files_allow() -> None:
    """Strimzi's storage is an if/then/else over another file's definitions; Altinity's keeper refers to the
    installation's. A structural schema cannot choose a branch, but it must declare the branches' fields, or the
    API server prunes them (and refuses them under fieldValidation=Strict); uniqueItems is not allowed there."""
    import json

    from openbell.localkube import transcribed

    crds = {c["spec"]["names"]["kind"]: c for c in transcribed.crds(names=transcribed.OPERATOR_TRANSCRIPTIONS)}
    assert set(crds) == {"Kafka", "KafkaNodePool", "KafkaTopic", "ClickHouseInstallation",
                         "ClickHouseKeeperInstallation"}
    pool = crds["KafkaNodePool"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    storage = pool["properties"]["storage"]["properties"]
    assert {"type", "volumes", "size", "class"} <= set(storage)
    assert pool["properties"]["roles"].get("x-kubernetes-list-type") == "set"
    keeper = crds["ClickHouseKeeperInstallation"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    cluster = keeper["properties"]["spec"]["properties"]["configuration"]["properties"]["clusters"]["items"]
    assert cluster["properties"]["name"]["type"] == "string"
    assert "uniqueItems" not in json.dumps(crds) and "$ref" not in json.dumps(crds)
    assert "k6" not in json.dumps([c["spec"]["group"] for c in crds.values()])
