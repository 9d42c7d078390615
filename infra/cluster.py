"""The EKS cluster: control plane, access, add-ons, the system node group and the Kubernetes provider.

Access is by EKS access entries only (authentication mode API, no aws-auth ConfigMap) and nobody is an
admin by accident: the identity that creates the cluster gets no implicit rights; the roles listed in
cluster.adminRoleArns get cluster-admin. Secrets are envelope-encrypted with a KMS key of ours, the
control-plane logs go to a KMS-encrypted log group, and workloads get AWS credentials through EKS Pod
Identity (`Cluster.pod_identity_role`), not node roles. The managed node group is small and holds the
system pods (CoreDNS, the EBS CSI controller, Karpenter's controller); every other node is Karpenter's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import kube
from infra.config import ConfigError, PlatformConfig
from infra.kube import child
from infra.network import Network, aws_tags, cluster_name, logs_key_policy

# Core add-on versions per Kubernetes version, pinned (never "latest") so that an upgrade is a reviewed
# change: bump the cluster version and this row in the same pull request. kube-proxy and CoreDNS follow
# the Kubernetes minor; the others are compatible across these minors.
ADDON_VERSIONS: dict[str, dict[str, str]] = {
    "1.30": {"vpc-cni": "v1.19.3-eksbuild.1", "kube-proxy": "v1.30.9-eksbuild.3", "coredns": "v1.11.4-eksbuild.2",
             "eks-pod-identity-agent": "v1.3.5-eksbuild.2", "aws-ebs-csi-driver": "v1.41.0-eksbuild.1"},
    "1.31": {"vpc-cni": "v1.19.3-eksbuild.1", "kube-proxy": "v1.31.3-eksbuild.2", "coredns": "v1.11.4-eksbuild.2",
             "eks-pod-identity-agent": "v1.3.5-eksbuild.2", "aws-ebs-csi-driver": "v1.41.0-eksbuild.1"},
    "1.32": {"vpc-cni": "v1.19.3-eksbuild.1", "kube-proxy": "v1.32.0-eksbuild.2", "coredns": "v1.11.4-eksbuild.2",
             "eks-pod-identity-agent": "v1.3.5-eksbuild.2", "aws-ebs-csi-driver": "v1.41.0-eksbuild.1"},
}
# Add-ons the system nodes need to become Ready (networking, service routing, pod credentials): created
# before the node group. CoreDNS and the EBS CSI driver run Deployments that only go healthy on nodes.
BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
AFTER_NODES = ("coredns", "aws-ebs-csi-driver")
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# Control-plane logs are an audit trail: a year in prod; enough to debug elsewhere.
CONTROL_PLANE_LOG_RETENTION_DAYS = {"prod": 365, "staging": 30, "dev": 7}
# Root volume of a system node: the OS, images of the system pods, logs. No data lives there.
SYSTEM_NODE_DISK_GI = 50
# Service account of the EBS CSI controller, as the EKS add-on names it.
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
DEFAULT_STORAGE_CLASS = "gp3"


def is_graviton(instance_family_or_type: str) -> bool:
    """True for AWS Graviton (arm64) families: a `g` right after the generation digit (m7g, c7gn, r8g.large)."""
    return re.match(r"^[a-z]+\d+g", instance_family_or_type) is not None


def addon_versions(cfg: PlatformConfig) -> dict[str, str]:
    """The pinned add-on versions for the stack's Kubernetes version, or a ConfigError naming the key."""
    versions = ADDON_VERSIONS.get(cfg.cluster.version)
    if versions is None:
        raise ConfigError("stack config", "cluster.version",
                          f"expected a version with pinned add-ons ({', '.join(sorted(ADDON_VERSIONS))}; add a row "
                          f"to ADDON_VERSIONS in infra/cluster.py for another), got {cfg.cluster.version!r}")
    return versions


def _trust(service: str, *actions: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions) or ["sts:AssumeRole"]}]})


def kubeconfig(name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig for the cluster that authenticates with `aws eks get-token` (short-lived tokens from
    whatever AWS identity runs pulumi; no static credentials in the state)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "users": [{"name": name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", name, "--region", region, "--output", "json"],
            "interactiveMode": "Never"}}}],
    })


def gp3_storage_class(resource_name: str, cfg: PlatformConfig, default: bool,
                      opts: pulumi.ResourceOptions) -> k8s.storage.v1.StorageClass:
    """StorageClass gp3: encrypted EBS gp3 volumes (the EBS CSI driver), bound where the pod lands."""
    return k8s.storage.v1.StorageClass(
        resource_name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=DEFAULT_STORAGE_CLASS, labels=kube.labels("storage", DEFAULT_STORAGE_CLASS),
            annotations={"storageclass.kubernetes.io/is-default-class": "true" if default else "false"}),
        provisioner="ebs.csi.aws.com",
        parameters={"type": "gp3", "encrypted": "true", "fsType": "ext4"},
        # A volume is created in the zone its pod is scheduled to, not in a random one.
        volume_binding_mode="WaitForFirstConsumer",
        allow_volume_expansion=True,
        # prod keeps a released volume (a deleted PVC is not a deleted ledger); elsewhere it goes.
        reclaim_policy="Retain" if cfg.prod else "Delete",
        opts=opts)


class ExistingCluster(pulumi.ComponentResource):
    """target existing-cluster: a cluster someone else runs (EKS, or any cluster with the EBS CSI driver; the
    local control plane in the tests), reached as kubectl reaches it: $KUBECONFIG (else ~/.kube/config) and
    existingCluster.context (else the kubeconfig's current context). Neither is stored in the stack's state, so
    a rotated token or a moved kubeconfig is not a change to the platform.

    Declares only the gp3 StorageClass the data tier's volumes use (not the cluster's default class: that
    choice is the owner's). Attributes as `Cluster` has them for the Kubernetes layer: `provider`,
    `storage_class`, `azs`.
    """

    def __init__(self, name: str, cfg: PlatformConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:ExistingCluster", name, None, opts)
        self.azs = list(cfg.network.azs)
        self.provider = k8s.Provider(f"{name}-k8s", context=cfg.existing_cluster.context or None,
                                     opts=child(self))
        self.storage_class = DEFAULT_STORAGE_CLASS
        gp3_storage_class(f"{name}-gp3", cfg, default=False, opts=child(self, provider=self.provider))
        self.register_outputs({"context": cfg.existing_cluster.context})


class Cluster(pulumi.ComponentResource):
    """EKS with a pinned version, access entries, KMS-encrypted secrets, control-plane logs, the OIDC
    provider, core add-ons, a managed node group for system pods and the default gp3 StorageClass.

    Attributes other components use: `eks` (aws.eks.Cluster), `name` (Output[str]), `provider` (the
    pulumi_kubernetes Provider for every Kubernetes object), `oidc_provider`, `kms_key` (encrypts secrets
    and logs; usable for S3 SSE-KMS), `node_security_group_id` (the cluster security group every node
    gets), `node_group`, `addons` (name -> aws.eks.Addon), `storage_class` (name of the default class),
    `azs`, `pod_identity_associations` (role name prefix -> association) and `pod_identity_role(...)`.
    """

    def __init__(self, name: str, cfg: PlatformConfig, network: Network,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:Cluster", name, None, opts)
        self._cfg = cfg
        self.azs = list(network.azs)
        versions = addon_versions(cfg)
        cluster = cluster_name(cfg)

        self.kms_key = aws.kms.Key(
            f"{name}-kms", description=f"{cluster}: Kubernetes secrets, control-plane logs, backups",
            # The longest window KMS allows: a key deleted by mistake can be recovered for a month.
            enable_key_rotation=True, deletion_window_in_days=30, policy=logs_key_policy(cfg),
            tags=aws_tags(cfg, cluster), opts=child(self))
        aws.kms.Alias(f"{name}-kms", name=f"alias/{cluster}", target_key_id=self.kms_key.key_id, opts=child(self))

        role = aws.iam.Role(f"{name}-role", assume_role_policy=_trust("eks.amazonaws.com", "sts:AssumeRole",
                                                                      "sts:TagSession"),
                            tags=aws_tags(cfg, f"{cluster}-control-plane"), opts=child(self))
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-role-policy", role=role.name, policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=child(self))
        # The control plane encrypts and decrypts secrets with our key through its role.
        encryption = aws.iam.RolePolicy(
            f"{name}-role-kms", role=role.id,
            policy=self.kms_key.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                "Resource": arn}]})),
            opts=child(self))
        # Created before the cluster, otherwise EKS creates it unencrypted and without retention.
        logs = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/aws/eks/{cluster}/cluster", kms_key_id=self.kms_key.arn,
            retention_in_days=CONTROL_PLANE_LOG_RETENTION_DAYS[cfg.environment],
            tags=aws_tags(cfg, f"{cluster}-control-plane"), opts=child(self))

        self.eks = aws.eks.Cluster(
            f"{name}-eks", name=cluster, version=cfg.cluster.version, role_arn=role.arn,
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False),
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=network.private_subnet_ids, endpoint_private_access=True,
                endpoint_public_access=cfg.cluster.public_endpoint,
                public_access_cidrs=cfg.cluster.public_access_cidrs or None),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                resources=["secrets"], provider=aws.eks.ClusterEncryptionConfigProviderArgs(
                    key_arn=self.kms_key.arn)),
            enabled_cluster_log_types=cfg.cluster.log_types,
            # The core add-ons are EKS add-ons declared below, with pinned versions; nothing self-managed.
            bootstrap_self_managed_addons=False,
            # Standard support only: a cluster left on an old version fails loudly instead of billing
            # extended support quietly.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            deletion_protection=cfg.prod,
            tags=aws_tags(cfg, cluster),
            opts=child(self, depends_on=[attachment, encryption, logs]))
        self.name: pulumi.Output[str] = self.eks.name
        self.node_security_group_id: pulumi.Output[str] = self.eks.vpc_config.cluster_security_group_id

        issuer = self.eks.identities.apply(lambda ids: (ids[0].oidcs or [])[0].issuer or "")
        self.oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=issuer,
            client_id_lists=["sts.amazonaws.com"], tags=aws_tags(cfg, f"{cluster}-oidc"), opts=child(self))

        admins = self._access_entries(name, cfg)
        self.pod_identity_associations: dict[str, aws.eks.PodIdentityAssociation] = {}
        self.addons: dict[str, aws.eks.Addon] = {}
        for addon in BEFORE_NODES:
            self.addons[addon] = self._addon(name, addon, versions[addon])
        self.node_group = self._system_nodes(name, cfg, network, depends_on=list(self.addons.values()))
        ebs_role = self.pod_identity_role(
            f"{name}-ebs-csi", "kube-system", EBS_CSI_SERVICE_ACCOUNT, None,
            managed_policy_arns=["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"])
        self.addons["coredns"] = self._addon(
            name, "coredns", versions["coredns"], depends_on=[self.node_group],
            # One replica per zone in prod so a zone loss leaves DNS up; two elsewhere.
            configuration={"replicaCount": len(self.azs) if cfg.prod else 2})
        self.addons["aws-ebs-csi-driver"] = self._addon(
            name, "aws-ebs-csi-driver", versions["aws-ebs-csi-driver"],
            depends_on=[self.node_group, ebs_role, self.pod_identity_associations[f"{name}-ebs-csi"],
                        self.addons["eks-pod-identity-agent"]],
            # The node plugin must run on the tainted data nodes too, or their volumes never attach.
            configuration={"node": {"tolerateAllTaints": True}})

        self.kubeconfig: pulumi.Output[str] = pulumi.Output.all(
            self.eks.name, self.eks.endpoint, self.eks.certificate_authority.data,
        ).apply(lambda args: kubeconfig(str(args[0]), str(args[1]), str(args[2]), cfg.region))
        # Every Kubernetes object waits for the admins' access: pulumi talks to the API as one of them.
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig,
                                     opts=child(self, depends_on=[self.eks, *admins]))
        self.storage_class = DEFAULT_STORAGE_CLASS
        gp3_storage_class(f"{name}-gp3", cfg, default=True,
                          opts=child(self, provider=self.provider, depends_on=[self.addons["aws-ebs-csi-driver"]]))

        self.register_outputs({"name": self.name, "endpoint": self.eks.endpoint, "kmsKeyArn": self.kms_key.arn,
                               "oidcProviderArn": self.oidc_provider.arn,
                               "nodeSecurityGroupId": self.node_security_group_id})

    def _access_entries(self, name: str, cfg: PlatformConfig) -> list[pulumi.Resource]:
        """cluster-admin for cfg.cluster.admin_role_arns (the creator of the cluster gets nothing implicit)."""
        granted: list[pulumi.Resource] = []
        for index, arn in enumerate(cfg.cluster.admin_role_arns):
            entry = aws.eks.AccessEntry(f"{name}-admin-{index}", cluster_name=self.eks.name, principal_arn=arn,
                                        type="STANDARD", tags=aws_tags(cfg, f"admin-{index}"), opts=child(self))
            granted.append(aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{index}", cluster_name=self.eks.name, principal_arn=arn,
                policy_arn=CLUSTER_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=child(self, depends_on=[entry])))
        return granted

    def _addon(self, name: str, addon: str, version: str, depends_on: list[pulumi.Resource] | None = None,
               configuration: dict[str, Any] | None = None) -> aws.eks.Addon:
        return aws.eks.Addon(
            f"{name}-{addon}", cluster_name=self.eks.name, addon_name=addon, addon_version=version,
            # The program is the source of truth for add-on settings.
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
            configuration_values=json.dumps(configuration) if configuration else None,
            tags=aws_tags(self._cfg, addon), opts=child(self, depends_on=depends_on))

    def _system_nodes(self, name: str, cfg: PlatformConfig, network: Network,
                      depends_on: list[pulumi.Resource]) -> aws.eks.NodeGroup:
        """On-demand nodes for system pods, labelled openbell.dev/pool=system and not tainted: Karpenter's
        controller (which cannot run on the nodes it manages), CoreDNS and the EBS CSI controller run here."""
        nodes = cfg.cluster.system_nodes
        cluster = cluster_name(cfg)
        role = aws.iam.Role(f"{name}-system-node", assume_role_policy=_trust("ec2.amazonaws.com"),
                            tags=aws_tags(cfg, f"{cluster}-system-node"), opts=child(self))
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-system-node-{policy}", role=role.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=child(self))
            for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly",
                           "AmazonSSMManagedInstanceCore")]
        template = aws.ec2.LaunchTemplate(
            f"{name}-system-node", description=f"{cluster}: system node group",
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda", ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=SYSTEM_NODE_DISK_GI, volume_type="gp3", encrypted="true",
                    delete_on_termination="true"))],
            # IMDSv2 only. Hop limit 2 (Karpenter's nodes have 1): the controllers here (EBS CSI,
            # Karpenter) may discover their region and instance from metadata through the pod network.
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=2),
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(
                resource_type=kind, tags=aws_tags(cfg, f"{cluster}-system")) for kind in ("instance", "volume")],
            tags=aws_tags(cfg, f"{cluster}-system-node"), opts=child(self))
        arm = all(is_graviton(t) for t in nodes.instance_types)
        return aws.eks.NodeGroup(
            f"{name}-system", cluster_name=self.eks.name, node_group_name_prefix=f"{cluster}-system-",
            node_role_arn=role.arn, subnet_ids=network.private_subnet_ids,
            instance_types=nodes.instance_types, capacity_type="ON_DEMAND",
            ami_type="AL2023_ARM_64_STANDARD" if arm else "AL2023_x86_64_STANDARD",
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=nodes.min_size, desired_size=nodes.desired_size, max_size=nodes.max_size),
            # One system node at a time: the other nodes keep Karpenter's leader and CoreDNS running.
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=template.id, version=template.latest_version
                                                                .apply(str)),
            labels={kube.POOL_LABEL: "system"},
            tags=aws_tags(cfg, f"{cluster}-system"),
            opts=child(self, depends_on=[*attachments, *depends_on]))

    def pod_identity_role(self, name: str, namespace: str, service_account: str,
                          policy_json: pulumi.Input[str] | None, *,
                          managed_policy_arns: Sequence[str] = (),
                          parent: pulumi.Resource | None = None) -> aws.iam.Role:
        """An IAM role for the pods of `namespace`/`service_account`, through EKS Pod Identity.

        The role trusts pods.eks.amazonaws.com (sts:AssumeRole and sts:TagSession), only for this
        account's clusters; `policy_json` (if any) is attached inline, `managed_policy_arns` as
        attachments, and a PodIdentityAssociation binds the role to the service account. Resource names
        start with `name`, so callers pass their own prefix (e.g. f"{name}-backup"). `parent` defaults
        to this cluster; pass the calling component to show the role under it.

        Pod Identity injects credentials when a pod is created: a workload started before its association
        exists runs without them until restarted. Deploy it with
        `depends_on=[cluster.pod_identity_associations[name]]`.
        """
        owner = parent or self
        identity = aws.get_caller_identity_output()
        trust = identity.account_id.apply(lambda account: json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"aws:SourceAccount": account}}}]}))
        role = aws.iam.Role(f"{name}-role", assume_role_policy=trust,
                            tags=aws_tags(self._cfg, name, **{"openbell.dev/service-account":
                                                              f"{namespace}.{service_account}"}),
                            opts=child(owner))
        depends: list[pulumi.Resource] = []
        if policy_json is not None:
            depends.append(aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy_json, opts=child(owner)))
        for index, arn in enumerate(managed_policy_arns):
            depends.append(aws.iam.RolePolicyAttachment(f"{name}-policy-{index}", role=role.name, policy_arn=arn,
                                                        opts=child(owner)))
        self.pod_identity_associations[name] = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity", cluster_name=self.eks.name, namespace=namespace,
            service_account=service_account, role_arn=role.arn, tags=aws_tags(self._cfg, name),
            opts=child(owner, depends_on=depends))
        return role
