"""The VPC: public subnets for load balancers, private subnets for nodes and data, NAT egress, flow logs.

One public and one private subnet per availability zone (three or more). Private subnets route to a NAT
gateway: one per zone in prod, so losing a zone never cuts the other zones' egress; one for the whole VPC
in dev, where the saving beats the risk. The subnets carry the tags Kubernetes and Karpenter discover by:
`kubernetes.io/role/elb` (internet-facing load balancers), `kubernetes.io/role/internal-elb` and
`karpenter.sh/discovery: <cluster name>` (where Karpenter launches nodes).
"""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import ConfigError, PlatformConfig
from infra.kube import child

DISCOVERY_TAG = "karpenter.sh/discovery"
# The smallest subnet AWS allows (16 addresses, 5 of them reserved).
_SMALLEST_SUBNET = 28
# How long the VPC's flow logs are kept: long enough in prod for a security investigation
# (a quarter), short elsewhere because nobody investigates a dev VPC weeks later.
FLOW_LOG_RETENTION_DAYS = {"prod": 90, "staging": 30, "dev": 7}


def cluster_name(cfg: PlatformConfig) -> str:
    """The EKS cluster's name: the value of every discovery tag, the interruption queue's name, the
    kubeconfig's context. One function so the network's tags and the cluster can never disagree."""
    return f"openbell-{cfg.environment}"


def aws_tags(cfg: PlatformConfig, name: str, **extra: str) -> dict[str, str]:
    """Tags every AWS resource carries: what it is, which stack it belongs to, who manages it."""
    tags = {"Name": name, "Project": "openbell", "Environment": cfg.environment, "ManagedBy": "pulumi"}
    tags.update(extra)
    return tags


def subnet_cidrs(cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Split the VPC's CIDR into `zones` private and `zones` public subnets.

    The private subnets get the big blocks: with the VPC CNI every pod takes a VPC address, so nodes and
    pods live there. The VPC is cut into the next power of two above `zones` blocks; the first `zones`
    are private, the last one is cut again into the public subnets (load balancers and NAT gateways
    need few addresses). A /16 over three zones: three /18 private (16k addresses each), three /20 public.
    """
    vpc = ipaddress.IPv4Network(cidr, strict=False)
    bits = math.ceil(math.log2(zones + 1))
    blocks = list(vpc.subnets(prefixlen_diff=bits))
    private = blocks[:zones]
    public = list(blocks[-1].subnets(prefixlen_diff=max(1, math.ceil(math.log2(zones)))))[:zones]
    if public[0].prefixlen > _SMALLEST_SUBNET:
        raise ConfigError("stack config", "network.cidr",
                          f"expected a CIDR large enough for {zones} zones (public subnets would be "
                          f"/{public[0].prefixlen}, AWS allows /{_SMALLEST_SUBNET} at most), got {cidr!r}")
    return [str(n) for n in private], [str(n) for n in public]


def logs_key_policy(cfg: PlatformConfig) -> pulumi.Output[str]:
    """A KMS key policy for a key that encrypts CloudWatch log groups: the account administers it through
    IAM (so roles can be granted use of it), and CloudWatch Logs in this region may use it for this
    account's log groups only."""
    identity = aws.get_caller_identity_output()
    partition = aws.get_partition_output()

    def policy(args: list[Any]) -> str:
        account, part = str(args[0]), str(args[1])
        return json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "AccountAdministers", "Effect": "Allow",
                 "Principal": {"AWS": f"arn:{part}:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
                {"Sid": "CloudWatchLogsEncrypts", "Effect": "Allow",
                 "Principal": {"Service": f"logs.{cfg.region}.amazonaws.com"},
                 "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                            "kms:Describe*"],
                 "Resource": "*",
                 "Condition": {"ArnLike": {
                     "kms:EncryptionContext:aws:logs:arn": f"arn:{part}:logs:{cfg.region}:{account}:log-group:*"}}},
            ],
        })

    return pulumi.Output.all(identity.account_id, partition.partition).apply(policy)


class Network(pulumi.ComponentResource):
    """The VPC over cfg.network.azs: per zone a public and a private subnet, NAT egress, flow logs.

    Attributes: `vpc`, `azs`, `private_subnet_ids` and `public_subnet_ids` (one Output per zone, in the
    order of `azs`), `nat_gateways`, `cidr`.
    """

    def __init__(self, name: str, cfg: PlatformConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:Network", name, None, opts)
        self.azs: list[str] = list(cfg.network.azs)
        self.cidr = cfg.network.cidr
        cluster = cluster_name(cfg)
        private_cidrs, public_cidrs = subnet_cidrs(cfg.network.cidr, len(self.azs))
        # Load balancers (kubernetes.io/cluster/<name>: shared) may use these subnets; the cluster doesn't own them.
        shared = {f"kubernetes.io/cluster/{cluster}": "shared"}

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=cfg.network.cidr, enable_dns_hostnames=True, enable_dns_support=True,
            tags=aws_tags(cfg, cluster), opts=child(self))
        # The default security group allows all traffic between its members: strip it so nothing uses it.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=self.vpc.id, ingress=[], egress=[],
                                     tags=aws_tags(cfg, f"{cluster}-default-unused"), opts=child(self))
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=aws_tags(cfg, cluster),
                                      opts=child(self))

        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for az, public_cidr, private_cidr in zip(self.azs, public_cidrs, private_cidrs, strict=True):
            public_subnets.append(aws.ec2.Subnet(
                f"{name}-public-{az}", vpc_id=self.vpc.id, availability_zone=az, cidr_block=public_cidr,
                # Only load balancers and NAT gateways live here, and they bring their own addresses.
                map_public_ip_on_launch=False,
                tags=aws_tags(cfg, f"{cluster}-public-{az}", **shared, **{"kubernetes.io/role/elb": "1"}),
                opts=child(self)))
            private_subnets.append(aws.ec2.Subnet(
                f"{name}-private-{az}", vpc_id=self.vpc.id, availability_zone=az, cidr_block=private_cidr,
                map_public_ip_on_launch=False,
                tags=aws_tags(cfg, f"{cluster}-private-{az}", **shared,
                              **{"kubernetes.io/role/internal-elb": "1", DISCOVERY_TAG: cluster}),
                opts=child(self)))

        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=self.vpc.id,
                                       tags=aws_tags(cfg, f"{cluster}-public"), opts=child(self))
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=igw.id, opts=child(self))
        for az, subnet in zip(self.azs, public_subnets, strict=True):
            aws.ec2.RouteTableAssociation(f"{name}-public-{az}", route_table_id=public_rt.id, subnet_id=subnet.id,
                                          opts=child(self))

        # per-az: each zone's private subnets leave through that zone's NAT, so a zone outage takes only its
        # own egress down (and no cross-zone data charges). single: one NAT in the first zone for everyone.
        nat_zones = self.azs if cfg.network.nat_gateways == "per-az" else self.azs[:1]
        self.nat_gateways: list[aws.ec2.NatGateway] = []
        for az, subnet in zip(nat_zones, public_subnets, strict=False):
            eip = aws.ec2.Eip(f"{name}-nat-{az}", domain="vpc", tags=aws_tags(cfg, f"{cluster}-nat-{az}"),
                              opts=child(self, depends_on=[igw]))
            self.nat_gateways.append(aws.ec2.NatGateway(
                f"{name}-nat-{az}", allocation_id=eip.allocation_id, subnet_id=subnet.id,
                connectivity_type="public", tags=aws_tags(cfg, f"{cluster}-nat-{az}"),
                opts=child(self, depends_on=[igw])))

        # One private route table per zone even with a single NAT: switching dev to per-az later only
        # changes routes, never re-associates subnets.
        for index, (az, subnet) in enumerate(zip(self.azs, private_subnets, strict=True)):
            nat = self.nat_gateways[index] if len(self.nat_gateways) > 1 else self.nat_gateways[0]
            rt = aws.ec2.RouteTable(f"{name}-private-rt-{az}", vpc_id=self.vpc.id,
                                    tags=aws_tags(cfg, f"{cluster}-private-{az}"), opts=child(self))
            aws.ec2.Route(f"{name}-private-default-{az}", route_table_id=rt.id, destination_cidr_block="0.0.0.0/0",
                          nat_gateway_id=nat.id, opts=child(self))
            aws.ec2.RouteTableAssociation(f"{name}-private-{az}", route_table_id=rt.id, subnet_id=subnet.id,
                                          opts=child(self))

        self._flow_logs(name, cfg, cluster)
        self.public_subnet_ids: list[pulumi.Output[str]] = [s.id for s in public_subnets]
        self.private_subnet_ids: list[pulumi.Output[str]] = [s.id for s in private_subnets]
        self.register_outputs({"vpcId": self.vpc.id, "privateSubnetIds": self.private_subnet_ids,
                               "publicSubnetIds": self.public_subnet_ids, "azs": self.azs})

    def _flow_logs(self, name: str, cfg: PlatformConfig, cluster: str) -> None:
        """Every accepted and rejected flow of the VPC to a KMS-encrypted CloudWatch log group: what a
        security review or a "who talked to the ledger's database" question needs."""
        key = aws.kms.Key(f"{name}-logs-key", description=f"{cluster}: VPC flow logs", enable_key_rotation=True,
                          # The longest window KMS allows: a key deleted by mistake can be recovered.
                          deletion_window_in_days=30, policy=logs_key_policy(cfg),
                          tags=aws_tags(cfg, f"{cluster}-flow-logs"), opts=child(self))
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs", name=f"/openbell/{cluster}/vpc-flow-logs", kms_key_id=key.arn,
            retention_in_days=FLOW_LOG_RETENTION_DAYS[cfg.environment], tags=aws_tags(cfg, f"{cluster}-flow-logs"),
            opts=child(self))
        role = aws.iam.Role(
            f"{name}-flow-logs", tags=aws_tags(cfg, f"{cluster}-flow-logs"),
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                "Action": "sts:AssumeRole"}]}),
            opts=child(self))
        aws.iam.RolePolicy(
            f"{name}-flow-logs", role=role.id,
            policy=group.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups",
                           "logs:DescribeLogStreams"],
                "Resource": [arn, f"{arn}:*"]}]})),
            opts=child(self))
        aws.ec2.FlowLog(f"{name}-flow-logs", vpc_id=self.vpc.id, traffic_type="ALL",
                        log_destination_type="cloud-watch-logs", log_destination=group.arn, iam_role_arn=role.arn,
                        tags=aws_tags(cfg, f"{cluster}-flow-logs"), opts=child(self))
