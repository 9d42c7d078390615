"""The ledger's database: PostgreSQL run by CloudNativePG, backed up to S3 by the Barman Cloud plugin.

- Operators (system node group): cert-manager (the Barman Cloud plugin talks to CNPG over mTLS with
  certificates cert-manager issues), the CloudNativePG operator, and the plugin itself.
- Backups: an S3 bucket encrypted with the cluster's KMS key, versioned, public access blocked, TLS
  only, with a lifecycle a week beyond Barman's own retention as a backstop; the instances reach it
  through EKS Pod Identity (the role is scoped to that bucket and that key) and an `ObjectStore`.
- The `Cluster`: `instances` pods on the data pool, one per zone (required anti-affinity in prod),
  quorum synchronous replication when there are >= 3 (a commit waits for one standby: no acknowledged
  order is lost with the primary), continuous WAL archiving and a daily base backup.

CloudNativePG creates the PodDisruptionBudgets of the instances itself (`enablePDB: true`: one for the
primary, one for the standbys) and the PodMonitor (`monitoring.enablePodMonitor: true`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any, Protocol, cast

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import kube
from infra.cluster import DEFAULT_STORAGE_CLASS
from infra.config import PlatformConfig
from infra.kube import mebibytes, resources, system_placement

NAMESPACE = kube.NAMESPACES["postgres"]
OPERATOR_NAMESPACE = "cnpg-system"  # the Barman Cloud plugin must run in the operator's namespace
CERT_MANAGER_NAMESPACE = "cert-manager"
CLUSTER = "openbell"  # the Cluster CR: services <cluster>-rw/-ro/-r, service account <cluster>
DATABASE = "ledger"
OWNER = "ledger"
# The ledger owner's password: `pulumi config set --secret openbell-secrets:ledgerPassword ...`, else one
# generated on the first `up` and kept (the Secret ignores later changes), like ClickHouse's.
OWNER_SECRET_CONFIG = ("openbell-secrets", "ledgerPassword")
CNPG_REPO = "https://cloudnative-pg.github.io/charts"
# Pinned together: plugin-barman-cloud chart 0.3.0 ships plugin v0.9.0, which needs CloudNativePG >= 1.26
# (the cloudnative-pg chart 0.26.0 ships 1.27.0); cert-manager v1.18 is the release of the same months.
BARMAN_PLUGIN_CHART_VERSION = "0.3.0"
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"
CERT_MANAGER_REPO = "https://charts.jetstack.io"
CERT_MANAGER_VERSION = "v1.18.2"
# CloudNativePG's operand images, pinned to a minor per major (bump with the monthly PostgreSQL releases).
# The `standard` flavour: PostgreSQL and the common extensions, without the in-image Barman Cloud that
# the plugin's sidecar replaces.
POSTGRES_MINOR = {"14": "14.19", "15": "15.14", "16": "16.10", "17": "17.6", "18": "18.0"}
IMAGE = "ghcr.io/cloudnative-pg/postgresql:{minor}-standard-bookworm"
STORAGE_CLASS = DEFAULT_STORAGE_CLASS  # the cluster's default class: encrypted gp3
# WAL on its own volume so a burst of writes cannot fill the data volume (and vice versa); a fifth of
# the data volume holds days of WAL at the ledger's write rate, and at least 10 GiB.
WAL_FRACTION = 5
MIN_WAL_GI = 10
# 03:00 UTC: outside market hours (13:00-21:00 UTC), after the US close's settlement writes.
BACKUP_SCHEDULE = "0 0 3 * * *"  # CloudNativePG cron: seconds first
# S3 lifecycle: Barman deletes backups past the retention window itself; S3 removes, a week later,
# whatever Barman left (a crashed cleanup), and keeps deleted versions for one more window.
LIFECYCLE_GRACE_DAYS = 7


class AwsCluster(Protocol):
    """What Postgres needs of the EKS cluster."""

    @property
    def provider(self) -> pulumi.ProviderResource: ...

    @property
    def kms_key(self) -> aws.kms.Key: ...

    @property
    def pod_identity_associations(self) -> Mapping[str, aws.eks.PodIdentityAssociation]: ...

    def pod_identity_role(self, name: str, namespace: str, service_account: str,
                          policy_json: pulumi.Input[str], *, parent: pulumi.Resource | None = None) -> aws.iam.Role: ...


def image_name(major: str) -> str:
    """The pinned operand image for a PostgreSQL major version."""
    return IMAGE.format(minor=POSTGRES_MINOR[major])


def postgres_parameters(cfg: PlatformConfig) -> dict[str, str]:
    """postgresql.conf for an OLTP ledger on SSDs, sized from the instance's memory.

    Values are strings (that is how CloudNativePG takes them). Parameters CloudNativePG fixes itself
    (wal_level, archive_mode, hot_standby, ports...) are not set here.
    """
    memory_mb = mebibytes(cfg.postgres.memory)
    return {
        # The classic split: a quarter of RAM for shared buffers, the planner told the OS caches the rest.
        "shared_buffers": f"{memory_mb // 4}MB",
        "effective_cache_size": f"{memory_mb * 3 // 4}MB",
        "maintenance_work_mem": f"{max(64, memory_mb // 16)}MB",
        "work_mem": "16MB",
        # The ledger pods hold small fixed pools (8 each, up to 12 pods): 200 leaves room for the
        # operator, backups, the exporter and humans.
        "max_connections": "200",
        # Durability: a commit is flushed locally and, with quorum replication, on one standby.
        "synchronous_commit": "on",
        "wal_compression": "lz4" if int(cfg.postgres.postgres_version) >= 15 else "on",
        "max_wal_size": "8GB",
        "min_wal_size": "1GB",
        "checkpoint_timeout": "15min",
        # gp3 SSDs: random reads cost about what sequential ones do.
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        # A transaction left open holds locks on accounts and blocks vacuum: end it.
        "idle_in_transaction_session_timeout": "60s",
        "lock_timeout": "10s",
        # What an SRE needs after an incident: slow statements, lock waits, checkpoints, vacuums.
        "log_min_duration_statement": "250ms",
        "log_lock_waits": "on",
        "log_checkpoints": "on",
        "log_autovacuum_min_duration": "1s",
        "track_io_timing": "on",
        "pg_stat_statements.max": "10000",
        "pg_stat_statements.track": "top",
        # The orders and outbox tables are hot: vacuum them before bloat builds up.
        "autovacuum_vacuum_scale_factor": "0.05",
        "autovacuum_analyze_scale_factor": "0.02",
    }


def synchronous(instances: int) -> dict[str, Any] | None:
    """Quorum synchronous replication (ANY 1) with >= 3 instances; none below (nothing to wait for).

    dataDurability `required`: with every standby gone, writes wait rather than being acknowledged
    on the primary alone - for a ledger, a pause is better than a lost order.
    """
    if instances < 3:
        return None
    return {"method": "any", "number": 1, "dataDurability": "required"}


def backup_policy(bucket_arn: str, key_arn: str) -> str:
    """The instances' IAM policy: this bucket's objects and this KMS key, nothing else."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListBackups", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
             "Resource": [bucket_arn]},
            # Delete: Barman enforces the retention policy by removing expired backups and WAL.
            {"Sid": "ReadWriteBackups", "Effect": "Allow",
             "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], "Resource": [f"{bucket_arn}/*"]},
            {"Sid": "UseBucketKey", "Effect": "Allow",
             "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], "Resource": [key_arn]},
        ],
    }, sort_keys=True)


def tls_only_policy(bucket_arn: str) -> str:
    """Bucket policy: refuse any request not made over TLS."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }, sort_keys=True)


class Postgres(pulumi.ComponentResource):
    """CloudNativePG, its backup plugin and bucket, and the ledger's PostgreSQL cluster.

    `host` is the read-write service; `app_secret` (in namespace `postgres`) is the secret
    CloudNativePG generates for the `ledger` owner (username, password, uri).
    """

    host: str
    namespace: str
    cluster_name: str
    database: str
    app_secret: str
    owner_secret: str
    owner_password: pulumi.Output[str]
    backup_bucket: aws.s3.Bucket  # target aws only
    backup_role: aws.iam.Role  # target aws only

    def __init__(self, name: str, cfg: PlatformConfig, cluster: AwsCluster | kube.HasProvider,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("openbell:infra:Postgres", name, None, opts)
        provider = cluster.provider
        pc = cfg.postgres
        self.namespace = NAMESPACE
        self.cluster_name = CLUSTER
        self.database = DATABASE
        self.host = f"{CLUSTER}-rw.{NAMESPACE}.svc"
        self.app_secret = f"{CLUSTER}-app"
        self.owner_secret = f"{CLUSTER}-owner"

        namespaces = {
            ns: k8s.core.v1.Namespace(
                f"{name}-namespace-{ns}",
                metadata={"name": ns, "labels": kube.labels("postgres", ns)},
                opts=kube.child(self, provider=provider))
            for ns in (NAMESPACE, OPERATOR_NAMESPACE, CERT_MANAGER_NAMESPACE)
        }

        operator_replicas = 2 if cfg.prod else 1  # leader-elected: a drained system node does not stop reconciles
        # On an existing cluster cert-manager, CloudNativePG and its Barman Cloud plugin are the owner's.
        cert_manager = None if cfg.existing else k8s.helm.v3.Release(
            f"{name}-cert-manager",
            k8s.helm.v3.ReleaseArgs(
                name="cert-manager",
                chart="cert-manager",
                version=CERT_MANAGER_VERSION,
                namespace=CERT_MANAGER_NAMESPACE,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CERT_MANAGER_REPO),
                values={
                    "crds": {"enabled": True, "keep": True},
                    "replicaCount": operator_replicas,
                    "resources": resources("50m", "256Mi"),
                    # Replicated (prod): a node drain must leave one running.
                    "podDisruptionBudget": {"enabled": operator_replicas > 1, "maxUnavailable": 1},
                    **system_placement(),
                    "webhook": {"replicaCount": operator_replicas, "resources": resources("50m", "128Mi"),
                                "podDisruptionBudget": {"enabled": operator_replicas > 1, "maxUnavailable": 1},
                                **system_placement()},
                    "cainjector": {"resources": resources("50m", "256Mi"), **system_placement()},
                    "startupapicheck": {"resources": resources("50m", "128Mi"), **system_placement()},
                },
            ),
            opts=kube.child(self, provider=provider, depends_on=[namespaces[CERT_MANAGER_NAMESPACE]]))

        operator = None if cfg.existing else k8s.helm.v3.Release(
            f"{name}-cnpg",
            k8s.helm.v3.ReleaseArgs(
                name="cnpg",
                chart="cloudnative-pg",
                version=pc.cnpg_version,
                namespace=OPERATOR_NAMESPACE,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CNPG_REPO),
                values={
                    "replicaCount": operator_replicas,
                    "config": {"clusterWide": True},
                    "resources": resources("100m", "256Mi"),
                    **system_placement(),
                },
            ),
            opts=kube.child(self, provider=provider, depends_on=[namespaces[OPERATOR_NAMESPACE]]))

        plugin = None if cfg.existing else k8s.helm.v3.Release(
            f"{name}-barman-cloud",
            k8s.helm.v3.ReleaseArgs(
                name="barman-cloud",
                chart="plugin-barman-cloud",
                version=BARMAN_PLUGIN_CHART_VERSION,
                namespace=OPERATOR_NAMESPACE,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CNPG_REPO),
                values={"resources": resources("50m", "128Mi"), **system_placement()},
            ),
            opts=kube.child(self, provider=provider, depends_on=kube.present(operator, cert_manager)))

        # --- where the backups go -----------------------------------------------------------------
        identity: pulumi.Resource | None = None
        destination: pulumi.Input[str]
        if cfg.existing:
            # The bucket and the instances' AWS identity are the cluster owner's.
            destination = cfg.existing_cluster.backup_destination
        else:
            destination, identity = self._backup_bucket(name, cfg, cast(AwsCluster, cluster))

        store = k8s.apiextensions.CustomResource(
            f"{name}-object-store",
            api_version="barmancloud.cnpg.io/v1",
            kind="ObjectStore",
            metadata={"name": f"{CLUSTER}-s3", "namespace": NAMESPACE, "labels": kube.labels("postgres", "backups")},
            spec={
                "configuration": {
                    "destinationPath": destination,
                    # Credentials come from the pod's identity (EKS Pod Identity), never from a secret.
                    "s3Credentials": {"inheritFromIAMRole": True},
                    # No `encryption` here: objects inherit the bucket's default SSE-KMS with our key
                    # (asking for aws:kms per request would use the AWS-managed key instead).
                    "wal": {"compression": "gzip", "maxParallel": 4},
                    "data": {"compression": "gzip", "jobs": 2},
                },
                "retentionPolicy": f"{pc.backup_retention_days}d",
                "instanceSidecarConfiguration": {"resources": resources("100m", "256Mi")},
            },
            opts=kube.child(self, provider=provider,
                            depends_on=kube.present(plugin, namespaces[NAMESPACE])))

        # The owner's credentials are ours, not generated by CloudNativePG, so the ledger (another namespace,
        # which cannot read this one's Secrets) gets its own copy from the same value.
        configured = pulumi.Config(OWNER_SECRET_CONFIG[0]).get_secret(OWNER_SECRET_CONFIG[1])
        password: pulumi.Input[str] = configured if configured is not None else pulumi.Output.secret(
            secrets.token_urlsafe(24))
        owner = k8s.core.v1.Secret(
            f"{name}-owner-secret",
            metadata={"name": self.owner_secret, "namespace": NAMESPACE, "labels": kube.labels("postgres", "owner")},
            type="kubernetes.io/basic-auth",
            string_data={"username": OWNER, "password": password},
            opts=pulumi.ResourceOptions.merge(
                kube.child(self, provider=provider, depends_on=[namespaces[NAMESPACE]]),
                pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"],
                                       ignore_changes=[] if configured is not None else ["stringData", "data"])))
        self.owner_password = kube.secret_value(owner, "password")
        spec = self._cluster_spec(cfg, store_name=f"{CLUSTER}-s3")
        spec["bootstrap"]["initdb"]["secret"] = {"name": self.owner_secret}
        self.cluster = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version="postgresql.cnpg.io/v1",
            kind="Cluster",
            metadata={"name": CLUSTER, "namespace": NAMESPACE, "labels": kube.labels("postgres")},
            spec=spec,
            opts=kube.child(self, provider=provider, depends_on=kube.present(operator, plugin, store, identity, owner)))

        k8s.apiextensions.CustomResource(
            f"{name}-daily-backup",
            api_version="postgresql.cnpg.io/v1",
            kind="ScheduledBackup",
            metadata={"name": f"{CLUSTER}-daily", "namespace": NAMESPACE, "labels": kube.labels("postgres", "backups")},
            spec={
                "schedule": BACKUP_SCHEDULE,
                "cluster": {"name": CLUSTER},
                "method": "plugin",
                "pluginConfiguration": {"name": BARMAN_PLUGIN},
                # A first base backup right away: WAL archiving is useless without one.
                "immediate": True,
                "backupOwnerReference": "self",
                # Read the backup from a standby when there is one: the primary serves the orders.
                "target": "prefer-standby",
            },
            opts=kube.child(self, provider=provider, depends_on=[self.cluster]))

        self.register_outputs({"host": self.host, "backupDestination": destination})

    def _backup_bucket(self, name: str, cfg: PlatformConfig,
                       cluster: AwsCluster) -> tuple[pulumi.Output[str], pulumi.Resource]:
        """The backup bucket (versioned, SSE-KMS with the cluster's key, TLS only, no public access, expiring
        after the retention) and the instances' Pod Identity role on it: (s3:// destination, association)."""
        pc = cfg.postgres
        bucket = aws.s3.Bucket(
            f"{name}-backups",
            bucket_prefix=f"openbell-{cfg.environment}-ledger-backups-",
            # Backups outlive a `pulumi destroy` by mistake: the bucket must be emptied by hand first.
            force_destroy=False,
            tags={"openbell:component": "postgres", "openbell:environment": cfg.environment},
            opts=kube.child(self))
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-backups-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=kube.child(self))
        aws.s3.BucketOwnershipControls(
            f"{name}-backups-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},  # no ACLs: access is IAM only
            opts=kube.child(self))
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-backups-encryption",
            bucket=bucket.id,
            rules=[{
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms", "kms_master_key_id": cluster.kms_key.arn},
                # One data key per bucket instead of per object: far fewer KMS calls for WAL segments.
                "bucket_key_enabled": True,
            }],
            opts=kube.child(self))
        versioning = aws.s3.BucketVersioning(
            f"{name}-backups-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=kube.child(self))
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-backups-lifecycle",
            bucket=bucket.id,
            rules=[{
                "id": "retention",
                "status": "Enabled",
                "filter": {},
                "expiration": {"days": pc.backup_retention_days + LIFECYCLE_GRACE_DAYS},
                "noncurrent_version_expiration": {"noncurrent_days": pc.backup_retention_days},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
            }],
            opts=kube.child(self, depends_on=[versioning]))
        aws.s3.BucketPolicy(
            f"{name}-backups-policy",
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            opts=kube.child(self, depends_on=[public_block]))
        self.backup_bucket = bucket

        # The instance pods run as the service account CloudNativePG names after the cluster. Pod Identity
        # hands credentials to pods created after the association: the instances wait for it.
        self.backup_role = cluster.pod_identity_role(
            f"{name}-backup",
            NAMESPACE,
            CLUSTER,
            pulumi.Output.all(bucket.arn, cluster.kms_key.arn).apply(lambda arns: backup_policy(arns[0], arns[1])),
            parent=self,
        )

        return bucket.bucket.apply(lambda b: f"s3://{b}/"), cluster.pod_identity_associations[f"{name}-backup"]

    @staticmethod
    def _cluster_spec(cfg: PlatformConfig, store_name: str) -> dict[str, Any]:
        pc = cfg.postgres
        placement = kube.data_placement()
        # One instance per zone, required in prod (a zone loss takes at most one instance); required
        # anti-affinity with more instances than zones would leave some unschedulable, so it is
        # preferred then, and the hard zone spread below still keeps them even.
        required = cfg.prod and pc.instances <= len(cfg.network.azs)
        postgresql: dict[str, Any] = {"parameters": postgres_parameters(cfg)}
        sync = synchronous(pc.instances)
        if sync is not None:
            postgresql["synchronous"] = sync
        storage = {"size": f"{pc.storage_gi}Gi", "storageClass": STORAGE_CLASS}
        wal_gi = max(MIN_WAL_GI, pc.storage_gi // WAL_FRACTION)
        return {
            "instances": pc.instances,
            "imageName": image_name(pc.postgres_version),
            # Roll standbys first, then switch over to an updated standby instead of restarting the primary.
            "primaryUpdateStrategy": "unsupervised",
            "primaryUpdateMethod": "switchover",
            "postgresql": postgresql,
            "bootstrap": {"initdb": {"database": DATABASE, "owner": OWNER, "dataChecksums": True,
                                     "encoding": "UTF8"}},
            "storage": storage,
            "walStorage": {"size": f"{wal_gi}Gi", "storageClass": STORAGE_CLASS},
            "resources": resources(pc.cpu, pc.memory),
            "affinity": {
                "enablePodAntiAffinity": True,
                "topologyKey": kube.ZONE,
                "podAntiAffinityType": "required" if required else "preferred",
                "nodeSelector": placement["nodeSelector"],
                "tolerations": placement["tolerations"],
            },
            "topologySpreadConstraints": kube.zone_spread({"cnpg.io/cluster": CLUSTER}),
            # CloudNativePG's own PDBs (primary and standbys) and PodMonitor.
            "enablePDB": True,
            "monitoring": {"enablePodMonitor": True},
            "plugins": [{"name": BARMAN_PLUGIN, "isWALArchiver": True,
                         "parameters": {"barmanObjectName": store_name}}],
        }
