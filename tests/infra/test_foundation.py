"""Network, Cluster and Karpenter under pulumi's mocks, for the dev and prod stacks: the recorded graph and
the settings the platform depends on (NAT per zone in prod, discovery tags, EKS access and encryption,
add-ons, the system node group, Karpenter's queue, rules, chart and node pools)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, PlatformConfig, from_values, load_stack_file
from infra.offline import Plan, Recorded, run

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "prod")


def foundation(cfg: PlatformConfig) -> None:
    from infra.cluster import Cluster
    from infra.karpenter import Karpenter
    from infra.network import Network

    network = Network("network", cfg)
    cluster = Cluster("cluster", cfg, network)
    Karpenter("karpenter", cfg, cluster, network)


def stack_config(stack: str) -> PlatformConfig:
    return load_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml")


@pytest.fixture(scope="module", params=STACKS)
def plan(request: pytest.FixtureRequest) -> Plan:
    stack = str(request.param)
    return run(stack_config(stack), stack, foundation)


def one(plan: Plan, type_: str) -> Recorded:
    found = plan.of_type(type_)
    assert len(found) == 1, f"{type_}: {[r.name for r in found]}"
    return found[0]


def by_name(plan: Plan, type_: str) -> dict[str, Recorded]:
    return {r.name: r for r in plan.of_type(type_)}


def k8s_kind(plan: Plan, kind: str) -> list[Recorded]:
    return [r for r in plan.resources if r.kind == kind]


# --- Network ---------------------------------------------------------------------------------------

def test_one_public_and_one_private_subnet_per_zone_inside_the_vpc(plan: Plan) -> None:
    import ipaddress

    cfg = plan.config
    subnets = plan.of_type("aws:ec2/subnet:Subnet")
    public = [s for s in subnets if "kubernetes.io/role/elb" in s.inputs["tags"]]
    private = [s for s in subnets if "kubernetes.io/role/internal-elb" in s.inputs["tags"]]
    assert len(subnets) == 2 * len(cfg.network.azs) == 6
    assert sorted(s.inputs["availabilityZone"] for s in public) == sorted(cfg.network.azs)
    assert sorted(s.inputs["availabilityZone"] for s in private) == sorted(cfg.network.azs)
    vpc = ipaddress.ip_network(one(plan, "aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    nets = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in subnets]
    assert all(n.subnet_of(vpc) for n in nets)  # type: ignore[arg-type]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    # Pods take VPC addresses: the private subnets are the big ones.
    def size(subnet: Recorded) -> int:
        return ipaddress.ip_network(subnet.inputs["cidrBlock"]).num_addresses

    assert min(map(size, private)) > max(map(size, public))
    assert not any(s.inputs["mapPublicIpOnLaunch"] for s in subnets)


def test_discovery_and_load_balancer_tags(plan: Plan) -> None:
    name = f"openbell-{plan.config.environment}"
    for subnet in plan.of_type("aws:ec2/subnet:Subnet"):
        tags = subnet.inputs["tags"]
        if "public" in subnet.name:
            assert tags["kubernetes.io/role/elb"] == "1"
            assert "karpenter.sh/discovery" not in tags  # nodes never land in public subnets
        else:
            assert tags["kubernetes.io/role/internal-elb"] == "1"
            assert tags["karpenter.sh/discovery"] == name
    # Karpenter finds the cluster security group by the same tag.
    tag = one(plan, "aws:ec2/tag:Tag")
    assert (tag.inputs["key"], tag.inputs["value"]) == ("karpenter.sh/discovery", name)
    assert tag.inputs["resourceId"] == "sg-cluster-eks"


def test_nat_gateways_and_private_routes_per_zone(plan: Plan) -> None:
    cfg = plan.config
    nats = plan.of_type("aws:ec2/natGateway:NatGateway")
    expected = 3 if cfg.prod else 1
    assert cfg.network.nat_gateways == ("per-az" if cfg.prod else "single")
    assert len(nats) == expected
    assert len(plan.of_type("aws:ec2/eip:Eip")) == expected
    assert all(r.inputs["domain"] == "vpc" for r in plan.of_type("aws:ec2/eip:Eip"))
    # Each NAT sits in a public subnet of its own zone.
    assert sorted(n.inputs["subnetId"] for n in nats) == sorted(
        f"network-public-{az}-id" for az in cfg.network.azs[:expected])

    routes = by_name(plan, "aws:ec2/route:Route")
    assert routes["network-public-default"].inputs["gatewayId"] == "network-igw-id"
    for az in cfg.network.azs:
        route = routes[f"network-private-default-{az}"]
        assert route.inputs["destinationCidrBlock"] == "0.0.0.0/0"
        own_zone = az if cfg.prod else cfg.network.azs[0]
        assert route.inputs["natGatewayId"] == f"network-nat-{own_zone}-id"
    associations = {r.inputs["subnetId"]: r.inputs["routeTableId"]
                    for r in plan.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")}
    for az in cfg.network.azs:
        assert associations[f"network-private-{az}-id"] == f"network-private-rt-{az}-id"
        assert associations[f"network-public-{az}-id"] == "network-public-rt-id"


def test_flow_logs_to_an_encrypted_log_group(plan: Plan) -> None:
    flow = one(plan, "aws:ec2/flowLog:FlowLog")
    assert flow.inputs["trafficType"] == "ALL"
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    group = by_name(plan, "aws:cloudwatch/logGroup:LogGroup")["network-flow-logs"]
    assert group.inputs["kmsKeyId"].endswith(":network-logs-key")
    keys = by_name(plan, "aws:kms/key:Key")
    assert keys["network-logs-key"].inputs["enableKeyRotation"] is True
    statements = json.loads(keys["network-logs-key"].inputs["policy"])["Statement"]
    assert any(s.get("Principal", {}).get("Service") == "logs.us-east-1.amazonaws.com" for s in statements)


def test_a_config_with_two_zones_fails_naming_the_key() -> None:
    with pytest.raises(ConfigError) as error:
        from_values({"openbell:environment": "dev",
                     "openbell:network": {"azs": ["us-east-1a", "us-east-1b"], "natGateways": "single"}})
    assert error.value.key == "network.azs"
    assert "at least 3" in str(error.value)


def test_a_vpc_too_small_for_its_zones_fails_naming_the_key() -> None:
    from infra.network import subnet_cidrs

    assert subnet_cidrs("10.40.0.0/16", 3) == (["10.40.0.0/18", "10.40.64.0/18", "10.40.128.0/18"],
                                               ["10.40.192.0/20", "10.40.208.0/20", "10.40.224.0/20"])
    with pytest.raises(ConfigError) as error:
        subnet_cidrs("10.40.0.0/24", 9)
    assert error.value.key == "network.cidr"


# --- Cluster ---------------------------------------------------------------------------------------

def test_eks_version_access_mode_endpoint_and_encryption(plan: Plan) -> None:
    cfg = plan.config
    eks = one(plan, "aws:eks/cluster:Cluster").inputs
    assert eks["name"] == f"openbell-{cfg.environment}"
    assert eks["version"] == cfg.cluster.version == "1.31"
    assert eks["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}
    assert eks["vpcConfig"]["endpointPrivateAccess"] is True
    assert eks["vpcConfig"]["endpointPublicAccess"] is (not cfg.prod)
    assert eks["vpcConfig"]["subnetIds"] == [f"network-private-{az}-id" for az in cfg.network.azs]
    assert eks["encryptionConfig"]["resources"] == ["secrets"]
    assert eks["encryptionConfig"]["provider"]["keyArn"].endswith(":cluster-kms")
    assert by_name(plan, "aws:kms/key:Key")["cluster-kms"].inputs["enableKeyRotation"] is True
    assert eks["enabledClusterLogTypes"] == cfg.cluster.log_types
    assert eks["bootstrapSelfManagedAddons"] is False
    assert eks["deletionProtection"] is cfg.prod
    logs = by_name(plan, "aws:cloudwatch/logGroup:LogGroup")["cluster-logs"].inputs
    assert logs["name"] == f"/aws/eks/openbell-{cfg.environment}/cluster"
    assert logs["kmsKeyId"].endswith(":cluster-kms")


def test_admin_roles_get_cluster_admin_through_access_entries() -> None:
    cfg = stack_config("prod")
    arns = ["arn:aws:iam::123456789012:role/platform-sre", "arn:aws:iam::123456789012:role/ci-deployer"]
    cfg = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, admin_role_arns=arns))
    plan = run(cfg, "prod", foundation)
    entries = {r.inputs["principalArn"]: r.inputs for r in plan.of_type("aws:eks/accessEntry:AccessEntry")}
    assert all(entries[arn]["type"] == "STANDARD" for arn in arns)
    policies = plan.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert sorted(p.inputs["principalArn"] for p in policies) == sorted(arns)
    assert {p.inputs["policyArn"] for p in policies} == {
        "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"}
    assert all(p.inputs["accessScope"] == {"type": "cluster"} for p in policies)


def test_oidc_provider_from_the_cluster_issuer(plan: Plan) -> None:
    oidc = one(plan, "aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert oidc["url"] == "https://oidc.eks.us-east-1.amazonaws.com/id/MOCKCLUSTER-EKS"
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]


def test_core_addons_pinned_for_the_kubernetes_version(plan: Plan) -> None:
    from infra.cluster import ADDON_VERSIONS

    addons = {r.inputs["addonName"]: r.inputs for r in plan.of_type("aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver"}
    for addon, inputs in addons.items():
        assert inputs["addonVersion"] == ADDON_VERSIONS["1.31"][addon]
        assert inputs["clusterName"] == f"openbell-{plan.config.environment}"
    # The EBS CSI controller gets AWS credentials through Pod Identity; its node plugin runs on data nodes too.
    association = by_name(plan, "aws:eks/podIdentityAssociation:PodIdentityAssociation")["cluster-ebs-csi-pod-identity"]
    assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
        "kube-system", "ebs-csi-controller-sa")
    role = by_name(plan, "aws:iam/role:Role")["cluster-ebs-csi-role"].inputs
    trust = json.loads(role["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(trust["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert json.loads(addons["aws-ebs-csi-driver"]["configurationValues"]) == {"node": {"tolerateAllTaints": True}}
    assert json.loads(addons["coredns"]["configurationValues"])["replicaCount"] == (3 if plan.config.prod else 2)


def test_an_unpinned_kubernetes_version_fails_naming_the_key() -> None:
    from infra.cluster import addon_versions

    cfg = stack_config("dev")
    with pytest.raises(ConfigError) as error:
        addon_versions(dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, version="1.29")))
    assert error.value.key == "cluster.version"


def test_system_node_group(plan: Plan) -> None:
    nodes = plan.config.cluster.system_nodes
    group = one(plan, "aws:eks/nodeGroup:NodeGroup").inputs
    assert group["scalingConfig"] == {"minSize": nodes.min_size, "desiredSize": nodes.desired_size,
                                      "maxSize": nodes.max_size}
    assert (nodes.min_size, nodes.max_size) == ((3, 6) if plan.config.prod else (2, 3))
    assert group["instanceTypes"] == nodes.instance_types
    assert group["capacityType"] == "ON_DEMAND"
    assert group["labels"] == {"openbell.dev/pool": "system"}
    assert not group.get("taints")  # Karpenter's controller and CoreDNS run here untolerated
    assert group["subnetIds"] == [f"network-private-{az}-id" for az in plan.config.network.azs]
    template = one(plan, "aws:ec2/launchTemplate:LaunchTemplate").inputs
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"


def test_default_storage_class_is_encrypted_gp3(plan: Plan) -> None:
    (sc,) = k8s_kind(plan, "StorageClass")
    assert sc.inputs["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert sc.inputs["provisioner"] == "ebs.csi.aws.com"
    assert sc.inputs["parameters"]["type"] == "gp3"
    assert sc.inputs["parameters"]["encrypted"] == "true"
    assert sc.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc.inputs["reclaimPolicy"] == ("Retain" if plan.config.prod else "Delete")


def test_kubernetes_provider_uses_aws_eks_get_token_and_every_object_uses_it(plan: Plan) -> None:
    provider = one(plan, "pulumi:providers:kubernetes")
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    exec_ = kubeconfig["users"][0]["user"]["exec"]
    assert exec_["command"] == "aws"
    assert exec_["args"][:4] == ["eks", "get-token", "--cluster-name", f"openbell-{plan.config.environment}"]
    assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://")
    k8s_objects = [r for r in plan.resources if r.type.startswith("kubernetes:")]
    assert k8s_objects
    assert all(r.provider and "::cluster-k8s::" in r.provider for r in k8s_objects)


def test_pod_identity_role_helper() -> None:
    from infra.cluster import Cluster
    from infra.network import Network

    def program(cfg: PlatformConfig) -> None:
        cluster = Cluster("cluster", cfg, Network("network", cfg))
        cluster.pod_identity_role("postgres-backup", "postgres", "ledger", json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}))
        assert "postgres-backup" in cluster.pod_identity_associations

    plan = run(stack_config("dev"), "dev", program)
    role = by_name(plan, "aws:iam/role:Role")["postgres-backup-role"].inputs
    statement = json.loads(role["assumeRolePolicy"])["Statement"][0]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    policy = by_name(plan, "aws:iam/rolePolicy:RolePolicy")["postgres-backup-policy"].inputs
    assert json.loads(policy["policy"])["Statement"][0]["Action"] == "s3:PutObject"
    association = by_name(plan, "aws:eks/podIdentityAssociation:PodIdentityAssociation")[
        "postgres-backup-pod-identity"].inputs
    assert (association["namespace"], association["serviceAccount"], association["roleArn"]) == (
        "postgres", "ledger", "arn:aws:iam::123456789012:role/postgres-backup-role")


# --- Karpenter -------------------------------------------------------------------------------------

def test_karpenter_chart(plan: Plan) -> None:
    cfg = plan.config
    release = one(plan, "kubernetes:helm.sh/v3:Release").inputs
    assert release["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert release["version"] == cfg.karpenter.version == "1.3.3"
    assert release["namespace"] == "karpenter"
    values = release["values"]
    assert values["settings"] == {"clusterName": f"openbell-{cfg.environment}",
                                  "interruptionQueue": f"openbell-{cfg.environment}"}
    assert values["replicas"] == 2
    assert values["nodeSelector"]["openbell.dev/pool"] == "system"
    assert values["serviceAccount"]["name"] == "karpenter"
    resources = values["controller"]["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    spread = values["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == "karpenter"
    (ns,) = k8s_kind(plan, "Namespace")
    assert ns.inputs["metadata"]["name"] == "karpenter"


def test_interruption_queue_and_four_event_rules(plan: Plan) -> None:
    queue = one(plan, "aws:sqs/queue:Queue").inputs
    assert queue["sqsManagedSseEnabled"] is True
    assert queue["messageRetentionSeconds"] == 300
    assert queue["name"] == f"openbell-{plan.config.environment}"
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:karpenter-interruption"
    policy = json.loads(one(plan, "aws:sqs/queuePolicy:QueuePolicy").inputs["policy"])
    allow = next(s for s in policy["Statement"] if s["Effect"] == "Allow")
    assert "events.amazonaws.com" in allow["Principal"]["Service"] and allow["Resource"] == queue_arn
    assert any(s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
               for s in policy["Statement"])
    patterns = {(p["source"][0], p["detail-type"][0]) for p in (
        json.loads(r.inputs["eventPattern"]) for r in plan.of_type("aws:cloudwatch/eventRule:EventRule"))}
    assert patterns == {("aws.health", "AWS Health Event"),
                        ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
                        ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
                        ("aws.ec2", "EC2 Instance State-change Notification")}
    targets = plan.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == 4 and all(t.inputs["arn"] == queue_arn for t in targets)
    rules = {r.inputs["name"] for r in plan.of_type("aws:cloudwatch/eventRule:EventRule")}
    assert {t.inputs["rule"] for t in targets} == rules


def test_controller_iam_through_pod_identity(plan: Plan) -> None:
    name = f"openbell-{plan.config.environment}"
    association = by_name(plan, "aws:eks/podIdentityAssociation:PodIdentityAssociation")[
        "karpenter-controller-pod-identity"].inputs
    assert (association["namespace"], association["serviceAccount"]) == ("karpenter", "karpenter")
    policy = json.loads(by_name(plan, "aws:iam/rolePolicy:RolePolicy")["karpenter-controller-policy"].inputs["policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}

    def actions(sid: str) -> list[str]:
        return list(statements[sid]["Action"])

    assert statements["PassNodeRole"]["Resource"] == "arn:aws:iam::123456789012:role/karpenter-node"
    assert actions("PassNodeRole") == ["iam:PassRole"]
    assert statements["ConsumeInterruptionQueue"]["Resource"].endswith(":karpenter-interruption")
    assert "sqs:ReceiveMessage" in actions("ConsumeInterruptionQueue")
    assert statements["DiscoverApiEndpoint"]["Resource"].endswith(f":cluster/{name}")
    assert "pricing:GetProducts" in actions("ReadPricing")
    assert statements["ReadAmiParameters"]["Resource"].endswith("::parameter/aws/service/*")
    # Launching and terminating are scoped to what Karpenter tagged for this cluster.
    for sid in ("CreateTaggedForCluster", "DeleteOwn", "TagOwnInstances"):
        assert f"kubernetes.io/cluster/{name}" in json.dumps(statements[sid]["Condition"])
    assert "ec2:TerminateInstances" in actions("DeleteOwn")
    # Nothing but reads is allowed without a condition or a specific resource.
    for statement in policy["Statement"]:
        if statement["Resource"] == "*" and "Condition" not in statement:
            assert all(a.split(":")[1].startswith(("Get", "Describe")) for a in statement["Action"]), statement


def test_node_role_and_its_access_entry(plan: Plan) -> None:
    attached = {r.inputs["policyArn"].rsplit("/", 1)[-1] for r in plan.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if r.inputs["role"] == "karpenter-node"}
    assert attached == {"AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly",
                        "AmazonSSMManagedInstanceCore"}
    entry = by_name(plan, "aws:eks/accessEntry:AccessEntry")["karpenter-node"].inputs
    assert entry["type"] == "EC2_LINUX"
    assert entry["principalArn"] == "arn:aws:iam::123456789012:role/karpenter-node"


def nodepools(plan: Plan) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in k8s_kind(plan, "NodePool")}


def requirement(spec: dict[str, Any], key: str) -> list[str]:
    (req,) = [r for r in spec["template"]["spec"]["requirements"] if r["key"] == key]
    assert req["operator"] == "In"
    return list(req["values"])


def test_gateway_pool_spot_consolidation_and_market_hours_budget(plan: Plan) -> None:
    cfg = plan.config
    spec = nodepools(plan)["gateway"]
    assert sorted(requirement(spec, "karpenter.sh/capacity-type")) == ["on-demand", "spot"]
    assert requirement(spec, "karpenter.k8s.aws/instance-family") == cfg.karpenter.gateway.instance_families
    assert requirement(spec, "topology.kubernetes.io/zone") == cfg.network.azs
    assert requirement(spec, "kubernetes.io/arch") == ["amd64"]
    assert spec["template"]["metadata"]["labels"] == {"openbell.dev/pool": "gateway"}
    assert not spec["template"]["spec"].get("taints")
    disruption = spec["disruption"]
    assert disruption["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert disruption["consolidateAfter"] == "5m"
    market, rest = disruption["budgets"]
    assert market == {"nodes": "0", "schedule": "0 13 * * mon-fri", "duration": "8h",
                      "reasons": ["Underutilized", "Empty", "Drifted"]}
    assert rest == {"nodes": "10%"}
    assert spec["limits"] == {"cpu": str(cfg.karpenter.gateway.cpu_limit),
                              "memory": f"{cfg.karpenter.gateway.memory_limit_gi}Gi"}
    assert spec["template"]["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                        "name": "default"}


def test_data_pool_on_demand_tainted_and_never_consolidated_while_occupied(plan: Plan) -> None:
    cfg = plan.config
    spec = nodepools(plan)["data"]
    assert requirement(spec, "karpenter.sh/capacity-type") == ["on-demand"]  # no spot, ever
    assert requirement(spec, "karpenter.k8s.aws/instance-family") == cfg.karpenter.data.instance_families
    assert requirement(spec, "topology.kubernetes.io/zone") == cfg.network.azs
    assert spec["template"]["metadata"]["labels"] == {"openbell.dev/pool": "data"}
    assert spec["template"]["spec"]["taints"] == [{"key": "openbell.dev/pool", "value": "data",
                                                   "effect": "NoSchedule"}]
    assert spec["template"]["spec"]["expireAfter"] == "Never"
    disruption = spec["disruption"]
    assert disruption["consolidationPolicy"] == "WhenEmpty"
    frozen = [b for b in disruption["budgets"] if b["nodes"] == "0"]
    assert frozen == [{"nodes": "0", "reasons": ["Underutilized", "Drifted"]}]  # no schedule: at all times
    assert spec["limits"]["cpu"] == str(cfg.karpenter.data.cpu_limit)


def test_data_pool_matches_the_data_tier_placement(plan: Plan) -> None:
    from infra import kube

    spec = nodepools(plan)["data"]
    placement = kube.data_placement()
    assert spec["template"]["metadata"]["labels"][kube.POOL_LABEL] == placement["nodeSelector"][kube.POOL_LABEL]
    (toleration,) = placement["tolerations"]
    (taint,) = spec["template"]["spec"]["taints"]
    assert (taint["key"], taint["value"], taint["effect"]) == (
        toleration["key"], toleration["value"], toleration["effect"])


def test_node_class_imds_disk_and_discovery(plan: Plan) -> None:
    name = f"openbell-{plan.config.environment}"
    (node_class,) = k8s_kind(plan, "EC2NodeClass")
    assert node_class.inputs["apiVersion"] == "karpenter.k8s.aws/v1"
    spec = node_class.inputs["spec"]
    assert spec["metadataOptions"] == {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                                       "httpPutResponseHopLimit": 1, "httpTokens": "required"}
    (disk,) = spec["blockDeviceMappings"]
    assert disk["ebs"]["encrypted"] is True and disk["ebs"]["volumeType"] == "gp3"
    assert spec["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": name}}]
    assert spec["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": name}}]
    assert spec["role"] == "karpenter-node"
    (alias,) = spec["amiSelectorTerms"]
    assert alias["alias"].startswith("al2023@v2") and "latest" not in alias["alias"]


def test_names_are_unique_and_components_typed(plan: Plan) -> None:
    counts = Counter((r.type, r.name) for r in plan.resources)
    assert [key for key, n in counts.items() if n > 1] == []
    assert {r.type for r in plan.resources if r.type.startswith("openbell:")} == {
        "openbell:infra:Network", "openbell:infra:Cluster", "openbell:infra:Karpenter"}


# --- helpers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("window", "days", "expected"), [
    ("13:00-21:00", "mon-fri", ("0 13 * * mon-fri", "8h")),
    ("13:30-20:00", "mon-fri", ("30 13 * * mon-fri", "6h30m")),
    ("22:00-06:00", "sun-thu", ("0 22 * * sun,mon,tue,wed,thu", "8h")),
    ("09:00-09:45", "sat-sat", ("0 9 * * sat", "45m")),
])
def test_market_hours_schedule(window: str, days: str, expected: tuple[str, str]) -> None:
    from infra.karpenter import market_hours_schedule

    assert market_hours_schedule(window, days) == expected


def test_an_empty_market_window_fails_naming_the_key() -> None:
    from infra.karpenter import market_hours_schedule

    with pytest.raises(ConfigError) as error:
        market_hours_schedule("13:00-13:00", "mon-fri")
    assert error.value.key == "karpenter.marketHoursUtc"


def test_graviton_families_add_arm64() -> None:
    from infra.karpenter import architectures

    assert architectures(["c7i", "c7a"]) == ["amd64"]
    assert architectures(["c7g", "c7gn", "c7i"]) == ["amd64", "arm64"]
