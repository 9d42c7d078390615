"""Karpenter: the controller and its AWS plumbing, one EC2NodeClass and the two NodePools.

- `gateway`: the stateless edge (gateway, feed, enricher, ledger services). Spot and on-demand, consolidated
  when empty or underutilized, but never voluntarily disrupted during market hours: a node drained at
  14:30 UTC drops thousands of traders' WebSockets at once.
- `data`: Kafka, PostgreSQL and ClickHouse. On-demand only, tainted so only the data tier lands there, and
  an occupied node is never consolidated, drifted or expired away: those pods move only when a person
  decides (their operators handle a planned roll one broker/instance at a time).

Spot interruptions, rebalance recommendations, instance state changes and AWS Health scheduled changes
reach the controller through an SQS queue fed by EventBridge, so it drains a node before AWS takes it.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import kube
from infra.cluster import Cluster, is_graviton
from infra.config import ConfigError, KarpenterConfig, NodePoolConfig, PlatformConfig
from infra.kube import HasProvider, child
from infra.network import DISCOVERY_TAG, Network, aws_tags, cluster_name

CHART = "oci://public.ecr.aws/karpenter/karpenter"
SERVICE_ACCOUNT = "karpenter"
RELEASE = "karpenter"
NODE_CLASS = "default"
EC2_NODE_CLASS_REF = {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": NODE_CLASS}
# The node image, pinned: a new AMI is a reviewed change that rolls the gateway pool outside market hours
# (drift), never a surprise. Bump it with `aws ssm get-parameter` on the EKS-optimized AL2023 release.
AMI_ALIAS = "al2023@v20250317"
# Root volume of a Karpenter node: OS, container images and logs (data lives on PVCs).
NODE_DISK = "100Gi"
# Two controller replicas (leader election): one can be rescheduled while the other works.
CONTROLLER_REPLICAS = 2
# Karpenter's documented sizing for a cluster of a few hundred nodes.
CONTROLLER_RESOURCES = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
# The interruption queue only carries warnings that matter for two minutes (a spot notice): after five
# an undelivered message is useless.
INTERRUPTION_RETENTION_SECONDS = 300
INTERRUPTION_EVENTS = {
    "health": ("aws.health", "AWS Health Event"),
    "spot": ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
    "rebalance": ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
    "state-change": ("aws.ec2", "EC2 Instance State-change Notification"),
}
# Gateway nodes consolidate after five quiet minutes: long enough to ride out a burst, short enough
# that a spent peak stops costing.
GATEWAY_CONSOLIDATE_AFTER = "5m"
# Outside market hours, at most a tenth of the gateway nodes are disrupted at once, so the rest carry
# the reconnecting traders.
GATEWAY_OFF_HOURS_BUDGET = "10%"
# An empty data node goes after half an hour (a broker being moved may come back); one at a time.
DATA_CONSOLIDATE_AFTER = "30m"
DATA_EMPTY_BUDGET = "1"
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def market_hours_schedule(window: str, days: str) -> tuple[str, str]:
    """Karpenter budget `schedule` (cron, UTC) and `duration` for cfg.karpenter.market_hours_utc on
    cfg.karpenter.market_days: "13:00-21:00", "mon-fri" -> ("0 13 * * mon-fri", "8h"). A window that
    crosses midnight (22:00-06:00) starts on the listed days and runs into the next one."""
    start, end = window.split("-")
    start_h, start_m = (int(x) for x in start.split(":"))
    end_h, end_m = (int(x) for x in end.split(":"))
    minutes = ((end_h * 60 + end_m) - (start_h * 60 + start_m)) % (24 * 60)
    if minutes == 0:
        raise ConfigError("stack config", "karpenter.marketHoursUtc",
                          f"expected a window with a different start and end, got {window!r}")
    hours, rest = divmod(minutes, 60)
    duration = (f"{hours}h" if hours else "") + (f"{rest}m" if rest else "")
    first, last = days.split("-")
    i, j = _DAYS.index(first), _DAYS.index(last)
    if i == j:
        weekdays = first
    elif i < j:
        weekdays = f"{first}-{last}"
    else:  # fri-mon: the cron range can't wrap, list the days
        weekdays = ",".join(_DAYS[i:] + _DAYS[:j + 1])
    return f"{start_m} {start_h} * * {weekdays}", duration


def controller_policy(cluster: str, region: str, account: str, partition: str, node_role_arn: str,
                      queue_arn: str) -> dict[str, Any]:
    """The controller's IAM policy. Launching is scoped: instances, fleets, launch templates and volumes
    only with the tags Karpenter puts on what it creates for this cluster (kubernetes.io/cluster/<name>
    owned, a nodepool), and only such resources can be tagged, terminated or deleted; reads are limited
    to this region; the node role is the only role it can pass, to EC2 only; instance profiles it
    manages for the EC2NodeClass carry the same tags."""
    ec2 = f"arn:{partition}:ec2:{region}"
    profiles = f"arn:{partition}:iam::{account}:instance-profile/*"
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster}": "owned"}
    request_owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster}": "owned",
                     "aws:RequestTag/eks:eks-cluster-name": cluster}
    any_nodepool = {"aws:ResourceTag/karpenter.sh/nodepool": "*"}
    request_nodepool = {"aws:RequestTag/karpenter.sh/nodepool": "*"}
    created = [f"{ec2}:*:{kind}/*" for kind in ("fleet", "instance", "volume", "network-interface",
                                                  "launch-template", "spot-instances-request")]
    in_region = {"aws:ResourceTag/topology.kubernetes.io/region": region}
    node_class = {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}
    request_profile = {**request_owned, "aws:RequestTag/topology.kubernetes.io/region": region}
    request_node_class = {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}

    def allow(sid: str, actions: list[str], resources: str | list[str], **condition: dict[str, Any]) -> dict[str, Any]:
        statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
        if condition:
            statement["Condition"] = {op.replace("_", ":"): value for op, value in condition.items()}
        return statement

    return {"Version": "2012-10-17", "Statement": [
        allow("LaunchFromSharedResources", ["ec2:RunInstances", "ec2:CreateFleet"],
              [f"arn:{partition}:ec2:{region}::image/*", f"arn:{partition}:ec2:{region}::snapshot/*",
               f"{ec2}:*:security-group/*", f"{ec2}:*:subnet/*", f"{ec2}:*:capacity-reservation/*"]),
        allow("LaunchFromOwnLaunchTemplates", ["ec2:RunInstances", "ec2:CreateFleet"],
              f"{ec2}:*:launch-template/*", StringEquals=owned, StringLike=any_nodepool),
        allow("CreateTaggedForCluster", ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
              [*created, f"{ec2}:*:capacity-reservation/*"], StringEquals=request_owned,
              StringLike=request_nodepool),
        allow("TagOnCreate", ["ec2:CreateTags"], created,
              StringEquals={**request_owned, "ec2:CreateAction": ["RunInstances", "CreateFleet",
                                                                  "CreateLaunchTemplate"]},
              StringLike=request_nodepool),
        allow("TagOwnInstances", ["ec2:CreateTags"], f"{ec2}:*:instance/*", StringEquals=owned,
              StringLike=any_nodepool, StringEqualsIfExists={"aws:RequestTag/eks:eks-cluster-name": cluster},
              ForAllValues_StringEquals={"aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]}),
        allow("DeleteOwn", ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
              [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"], StringEquals=owned, StringLike=any_nodepool),
        allow("DescribeInRegion",
              ["ec2:DescribeAvailabilityZones", "ec2:DescribeCapacityReservations", "ec2:DescribeImages",
               "ec2:DescribeInstances", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
               "ec2:DescribeLaunchTemplates", "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory",
               "ec2:DescribeSubnets"],
              "*", StringEquals={"aws:RequestedRegion": region}),
        allow("ReadAmiParameters", ["ssm:GetParameter"], f"arn:{partition}:ssm:{region}::parameter/aws/service/*"),
        allow("ReadPricing", ["pricing:GetProducts"], "*"),
        allow("ConsumeInterruptionQueue", ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"], queue_arn),
        allow("PassNodeRole", ["iam:PassRole"], node_role_arn,
              StringEquals={"iam:PassedToService": ["ec2.amazonaws.com"]}),
        allow("CreateInstanceProfiles", ["iam:CreateInstanceProfile"], profiles, StringEquals=request_profile,
              StringLike=request_node_class),
        allow("TagInstanceProfiles", ["iam:TagInstanceProfile"], profiles,
              StringEquals={**owned, **in_region, **request_profile},
              StringLike={**node_class, **request_node_class}),
        allow("ManageInstanceProfiles",
              ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"],
              profiles, StringEquals={**owned, **in_region}, StringLike=node_class),
        allow("ReadInstanceProfiles", ["iam:GetInstanceProfile"], profiles),
        allow("DiscoverApiEndpoint", ["eks:DescribeCluster"],
              f"arn:{partition}:eks:{region}:{account}:cluster/{cluster}"),
    ]}


def architectures(families: list[str]) -> list[str]:
    """The CPU architectures of the configured instance families (Graviton families are arm64)."""
    return sorted({"arm64" if is_graviton(family) else "amd64" for family in families})


def _requirements(pool: NodePoolConfig, azs: list[str]) -> list[dict[str, Any]]:
    return [
        {"key": kube.CAPACITY_TYPE, "operator": "In", "values": list(pool.capacity_types)},
        {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": list(pool.instance_families)},
        {"key": "kubernetes.io/arch", "operator": "In", "values": architectures(pool.instance_families)},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        {"key": kube.ZONE, "operator": "In", "values": list(azs)},
    ]


def _limits(pool: NodePoolConfig) -> dict[str, str]:
    return {"cpu": str(pool.cpu_limit), "memory": f"{pool.memory_limit_gi}Gi"}


def node_class_ref(cfg: PlatformConfig) -> dict[str, str]:
    """The node class every pool launches from: ours (EC2NodeClass `default`), or on an existing cluster the
    one its owner names (existingCluster.nodeClass)."""
    if cfg.existing:
        ref = cfg.existing_cluster.node_class
        return {"group": ref.group, "kind": ref.kind, "name": ref.name}
    return dict(EC2_NODE_CLASS_REF)


def gateway_nodepool_spec(cfg: KarpenterConfig, azs: list[str],
                          node_class: dict[str, str] | None = None) -> dict[str, Any]:
    """The `gateway` NodePool: spot and on-demand, consolidated when empty or underutilized, frozen
    during market hours (budget nodes "0" for every voluntary reason), 10% at a time otherwise."""
    schedule, duration = market_hours_schedule(cfg.market_hours_utc, cfg.market_days)
    return {
        "template": {
            "metadata": {"labels": {kube.POOL_LABEL: "gateway"}},
            "spec": {
                "nodeClassRef": dict(node_class or EC2_NODE_CLASS_REF),
                "requirements": _requirements(cfg.gateway, azs),
                # Expiry is forceful in Karpenter v1 (budgets don't apply), so it could land in market
                # hours: nodes are renewed by drift (a new AMI_ALIAS) and consolidation instead.
                "expireAfter": "Never",
            },
        },
        "disruption": {
            "consolidationPolicy": "WhenEmptyOrUnderutilized",
            "consolidateAfter": GATEWAY_CONSOLIDATE_AFTER,
            "budgets": [
                {"nodes": "0", "schedule": schedule, "duration": duration,
                 "reasons": ["Underutilized", "Empty", "Drifted"]},
                {"nodes": GATEWAY_OFF_HOURS_BUDGET},
            ],
        },
        "limits": _limits(cfg.gateway),
    }


def data_nodepool_spec(cfg: KarpenterConfig, azs: list[str],
                       node_class: dict[str, str] | None = None) -> dict[str, Any]:
    """The `data` NodePool: on-demand only, tainted for the data tier, never consolidates an occupied
    node (WhenEmpty), never drifts or expires one away; only empty nodes go, one at a time."""
    return {
        "template": {
            "metadata": {"labels": {kube.POOL_LABEL: "data"}},
            "spec": {
                "nodeClassRef": dict(node_class or EC2_NODE_CLASS_REF),
                "requirements": _requirements(cfg.data, azs),
                "taints": [{"key": kube.POOL_LABEL, "value": "data", "effect": "NoSchedule"}],
                "expireAfter": "Never",
            },
        },
        "disruption": {
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": DATA_CONSOLIDATE_AFTER,
            "budgets": [
                {"nodes": "0", "reasons": ["Underutilized", "Drifted"]},
                {"nodes": DATA_EMPTY_BUDGET},
            ],
        },
        "limits": _limits(cfg.data),
    }


def node_class_spec(cfg: PlatformConfig, node_role: str) -> dict[str, Any]:
    """The EC2NodeClass every pool uses: the pinned AL2023 AMI, private subnets and the cluster security
    group found by the discovery tag, an encrypted gp3 root volume, IMDSv2 only with hop limit 1 (pods
    get AWS credentials from Pod Identity, never from the node's metadata)."""
    cluster = cluster_name(cfg)
    return {
        "role": node_role,
        "amiSelectorTerms": [{"alias": AMI_ALIAS}],
        "subnetSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster}}],
        "securityGroupSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster}}],
        "associatePublicIPAddress": False,
        "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                            "httpPutResponseHopLimit": 1, "httpTokens": "required"},
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {
            "volumeSize": NODE_DISK, "volumeType": "gp3", "encrypted": True, "deleteOnTermination": True}}],
        "tags": {"Project": "openbell", "Environment": cfg.environment, "ManagedBy": "karpenter"},
    }


class Karpenter(pulumi.ComponentResource):
    """Karpenter's controller (Helm chart, Pod Identity IAM), node role, interruption queue and rules,
    the EC2NodeClass and the `gateway` and `data` NodePools.

    Attributes: `node_role` (aws.iam.Role), `interruption_queue` (aws.sqs.Queue), `event_rules`
    (name -> EventRule), `controller_role`, `release` (the Helm release), `node_class` and `nodepools`
    ("gateway"/"data" -> CustomResource).
    """

    def __init__(self, name: str, cfg: PlatformConfig, cluster: Cluster, network: Network,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:Karpenter", name, None, opts)
        cname = cluster_name(cfg)
        namespace = kube.NAMESPACES["karpenter"]
        azs = list(network.azs)

        self.node_role = aws.iam.Role(
            f"{name}-node", tags=aws_tags(cfg, f"{cname}-karpenter-node"),
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
            opts=child(self))
        node_policies = [
            aws.iam.RolePolicyAttachment(f"{name}-node-{policy}", role=self.node_role.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=child(self))
            for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly",
                           "AmazonSSMManagedInstanceCore")]
        # Nodes launched with this role may join the cluster (access entries replace aws-auth).
        node_access = aws.eks.AccessEntry(f"{name}-node", cluster_name=cluster.name,
                                          principal_arn=self.node_role.arn, type="EC2_LINUX",
                                          tags=aws_tags(cfg, f"{cname}-karpenter-node"), opts=child(self))

        self.interruption_queue = aws.sqs.Queue(
            f"{name}-interruption", name=cname, message_retention_seconds=INTERRUPTION_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True, tags=aws_tags(cfg, f"{cname}-interruption"), opts=child(self))
        queue_arn = self.interruption_queue.arn
        aws.sqs.QueuePolicy(
            f"{name}-interruption", queue_url=self.interruption_queue.url,
            policy=queue_arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [
                {"Sid": "EventBridgeSends", "Effect": "Allow",
                 "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                 "Action": "sqs:SendMessage", "Resource": arn},
                {"Sid": "DenyPlainHttp", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": arn,
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            ]})),
            opts=child(self))
        self.event_rules: dict[str, aws.cloudwatch.EventRule] = {}
        for key, (source, detail_type) in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{key}", name=f"{cname}-karpenter-{key}",
                description=f"{cname}: {detail_type} -> Karpenter interruption queue",
                event_pattern=json.dumps({"source": [source], "detail-type": [detail_type]}),
                tags=aws_tags(cfg, f"{cname}-{key}"), opts=child(self))
            aws.cloudwatch.EventTarget(f"{name}-{key}", rule=rule.name, arn=queue_arn,
                                       target_id="KarpenterInterruptionQueueTarget", opts=child(self))
            self.event_rules[key] = rule

        identity = aws.get_caller_identity_output()
        partition = aws.get_partition_output()
        policy = pulumi.Output.all(identity.account_id, partition.partition, self.node_role.arn, queue_arn).apply(
            lambda a: json.dumps(controller_policy(cname, cfg.region, str(a[0]), str(a[1]), str(a[2]), str(a[3]))))
        controller = f"{name}-controller"
        self.controller_role = cluster.pod_identity_role(controller, namespace, SERVICE_ACCOUNT, policy, parent=self)
        # Karpenter's nodes get the cluster security group, found by the same tag as the subnets.
        sg_tag = aws.ec2.Tag(f"{name}-sg-discovery", resource_id=cluster.node_security_group_id, key=DISCOVERY_TAG,
                             value=cname, opts=child(self))

        ns = k8s.core.v1.Namespace(
            f"{name}-ns", metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace, labels=kube.labels("karpenter")),
            opts=child(self, provider=cluster.provider))
        pod_selector = {"app.kubernetes.io/name": "karpenter", "app.kubernetes.io/instance": RELEASE}
        self.release = k8s.helm.v3.Release(
            f"{name}-chart", name=RELEASE, chart=CHART, version=cfg.karpenter.version, namespace=namespace,
            values={
                "settings": {"clusterName": cname, "interruptionQueue": self.interruption_queue.name},
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                "replicas": CONTROLLER_REPLICAS,
                "controller": {
                    "resources": CONTROLLER_RESOURCES,
                    # Nodes' metadata is out of reach (hop limit), so the region is given.
                    "env": [{"name": "AWS_REGION", "value": cfg.region}],
                },
                # On the managed system nodes: never on a node Karpenter itself could remove.
                "nodeSelector": {"kubernetes.io/os": "linux", kube.POOL_LABEL: "system"},
                "topologySpreadConstraints": kube.zone_spread(pod_selector),
                "podLabels": kube.labels("karpenter"),
            },
            opts=child(self, provider=cluster.provider, depends_on=[
                ns, node_access, sg_tag, *node_policies, cluster.node_group, *cluster.addons.values(),
                cluster.pod_identity_associations[controller]]))

        self.node_class = k8s.apiextensions.CustomResource(
            f"{name}-nodeclass", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
            metadata={"name": NODE_CLASS, "labels": kube.labels("karpenter", NODE_CLASS)},
            spec=self.node_role.name.apply(lambda role: node_class_spec(cfg, role)),
            opts=child(self, provider=cluster.provider, depends_on=[self.release]))
        specs = {"gateway": gateway_nodepool_spec(cfg.karpenter, azs), "data": data_nodepool_spec(cfg.karpenter, azs)}
        self.nodepools: dict[str, k8s.apiextensions.CustomResource] = {
            pool: k8s.apiextensions.CustomResource(
                f"{name}-{pool}", api_version="karpenter.sh/v1", kind="NodePool",
                metadata={"name": pool, "labels": kube.labels("karpenter", pool)}, spec=spec,
                opts=child(self, provider=cluster.provider, depends_on=[self.release, self.node_class]))
            for pool, spec in specs.items()}

        self.register_outputs({"nodeRoleArn": self.node_role.arn, "interruptionQueue": self.interruption_queue.name,
                               "nodePools": list(self.nodepools)})


class KarpenterPools(pulumi.ComponentResource):
    """target existing-cluster: Karpenter, its IAM, interruption queue and node class are the cluster owner's
    (existingCluster.nodeClass names the class); the `gateway` and `data` NodePools are the platform's.

    Attributes: `nodepools` ("gateway"/"data" -> CustomResource).
    """

    def __init__(self, name: str, cfg: PlatformConfig, cluster: HasProvider,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:KarpenterPools", name, None, opts)
        azs, ref = list(cfg.network.azs), node_class_ref(cfg)
        specs = {"gateway": gateway_nodepool_spec(cfg.karpenter, azs, ref),
                 "data": data_nodepool_spec(cfg.karpenter, azs, ref)}
        self.nodepools: dict[str, k8s.apiextensions.CustomResource] = {
            pool: k8s.apiextensions.CustomResource(
                f"{name}-{pool}", api_version="karpenter.sh/v1", kind="NodePool",
                metadata={"name": pool, "labels": kube.labels("karpenter", pool)}, spec=spec,
                opts=child(self, provider=cluster.provider))
            for pool, spec in specs.items()}
        self.register_outputs({"nodePools": list(self.nodepools)})
