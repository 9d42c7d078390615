"""`openbell infra plan --offline`: the whole program under pulumi's mocks, no CLI, no cloud.

It validates the stack file (infra.config), declares every resource (infra.offline), and reports:
the inventory (type, name, the settings worth a glance), counts per type, the policy pack's verdict
(infra.policies, the same rule functions `pulumi preview --policy-pack` runs) and the schema checks of
every Kubernetes object (infra.validate). Passed means no policy violation and no invalid object;
kinds without a schema are listed, not failed.

With a cluster (`--cluster`, `--context`, `--kubeconfig`) every Kubernetes object is also dry-run on its API
server (openbell.infra.dryrun): a rejection fails the plan, a kind without its CRD there is listed, not failed.
"""

from __future__ import annotations

import io
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openbell.errors import EXIT_GATE_FAILED, OpenbellError, SpecError
from openbell.infra import importable, stack_file

if TYPE_CHECKING:
    from rich.console import Console

    from infra.config import PlatformConfig
    from infra.policies.rules import Violation
    from infra.validate import SchemaResult
    from openbell.infra.dryrun import ClusterRef, Planned, ServerReport


class ProgramError(OpenbellError):
    """The Pulumi program raised while declaring resources: the plan cannot be judged."""

    exit_code = EXIT_GATE_FAILED


def load_config(root: Path, stack: str, path: Path | None = None) -> PlatformConfig:
    """The stack's validated config; a bad value is a SpecError naming the key (exit 2)."""
    importable(root)
    from infra.config import ConfigError, load_stack_file

    try:
        return load_stack_file(stack_file(root, stack, path))
    except ConfigError as exc:
        raise SpecError(exc.source, exc.key, exc.expected) from None


@dataclass
class PlanReport:
    stack: str
    environment: str
    inventory: list[dict[str, str]] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    schemas: list[SchemaResult] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    objects: list[Planned] = field(default_factory=list, repr=False)  # the Kubernetes objects, as declared
    server: ServerReport | None = None  # the named cluster's dry-run of `objects`

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(i["type"] for i in self.inventory).items()))

    @property
    def invalid(self) -> list[SchemaResult]:
        return [s for s in self.schemas if s.status == "invalid"]

    @property
    def unknown(self) -> list[SchemaResult]:
        return [s for s in self.schemas if s.status == "unknown"]

    @property
    def passed(self) -> bool:
        # An object no schema covers is unchecked, not valid: a new CRD kind needs its schema first.
        return (not self.violations and not self.invalid and not self.unknown
                and (self.server is None or self.server.passed))

    def as_dict(self) -> dict[str, Any]:
        broken = {v.rule for v in self.violations}
        return {
            "stack": self.stack,
            "environment": self.environment,
            "passed": self.passed,
            "resources": len(self.inventory),
            "counts": self.counts,
            "inventory": self.inventory,
            "policies": {
                "rules": [{"rule": r, "passed": r not in broken} for r in self.rules],
                "violations": [v.as_dict() for v in self.violations],
            },
            "schemas": {
                "checked": len(self.schemas),
                "ok": sum(1 for s in self.schemas if s.status == "ok"),
                "invalid": [s.as_dict() for s in self.invalid],
                "unknown": [s.as_dict() for s in self.unknown],
            },
            "server": self.server.as_dict() if self.server is not None else None,
        }


def run_plan(root: Path, stack: str, path: Path | None = None, verbose: bool = False,
             program: Callable[[Any], Any] | None = None, cluster: ClusterRef | None = None) -> PlanReport:
    """Validate the stack, declare the program under mocks, judge it; with `cluster`, have that cluster's API
    server judge every Kubernetes object too (server-side dry-run, nothing persisted)."""
    cfg = load_config(root, stack, path)
    from openbell.infra import dryrun

    # A cluster that cannot be used is known before the program runs (exit 2 or 3, one line).
    server = dryrun.connect(cluster) if cluster is not None else None
    try:
        report = _declare(cfg, stack, verbose, program)
        if server is not None:
            report.server = dryrun.check(report.objects, server)
        return report
    finally:
        if server is not None:
            server.close()


def _declare(cfg: PlatformConfig, stack: str, verbose: bool, program: Callable[[Any], Any] | None) -> PlanReport:
    """The program declared under mocks, then judged offline: inventory, policies, schemas."""
    from infra import offline, validate
    from infra.policies import RULES, evaluate_recorded
    from openbell.infra import dryrun

    noise = io.StringIO()
    try:
        # Pulumi's mock runtime logs (deprecations, warnings) go to the captured buffer unless -v.
        with redirect_stdout(sys.stderr if verbose else noise), redirect_stderr(sys.stderr if verbose else noise):
            plan = offline.run(cfg, stack, program)
    except OpenbellError:
        raise
    except Exception as exc:
        if verbose:
            raise
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ProgramError(f"the program failed under mocks ({type(exc).__name__}): {reason}") from None
    declared = [r for r in plan.resources if not r.type.startswith(("openbell:", "pulumi:"))]
    return PlanReport(
        stack=stack,
        environment=cfg.environment,
        inventory=[{"type": r.type, "name": r.name, "settings": settings(r.type, validate.normalise(r.inputs))}
                   for r in declared],
        violations=evaluate_recorded(plan.resources, cfg.environment),
        schemas=validate.validate(plan.resources, cfg.cluster.version),
        rules=[r.name for r in RULES],
        objects=dryrun.planned(plan.resources),
    )


# --- key settings per type -----------------------------------------------------------------------------


def _get(obj: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(key, int):
            obj = obj[key] if isinstance(obj, list) and len(obj) > key else None
        else:
            obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def _join(*parts: Any) -> str:
    return ", ".join(str(p) for p in parts if p not in (None, "", [], {}))


def _images(pod: Any) -> str:
    return " ".join(str(c.get("image")) for c in (_get(pod, "containers") or []) if isinstance(c, Mapping))


def _requests(pod: Any) -> str:
    out = []
    for c in _get(pod, "containers") or []:
        req = _get(c, "resources", "requests") or {}
        if req:
            out.append(f"{req.get('cpu', '?')}cpu/{req.get('memory', '?')}")
    return " ".join(out)


def _kafka_settings(kind: str, i: Mapping[str, Any]) -> str:
    spec = i.get("spec") or {}
    if kind == "Kafka":
        config = _get(spec, "kafka", "config") or {}
        listeners = " ".join(f"{lst.get('name')}:{lst.get('port')}" for lst in _get(spec, "kafka", "listeners") or [])
        return _join(f"kafka {_get(spec, 'kafka', 'version')}", f"listeners {listeners}",
                     f"RF {config.get('default.replication.factor')}",
                     f"min.insync {config.get('min.insync.replicas')}",
                     f"rack {_get(spec, 'kafka', 'rack', 'topologyKey')}")
    if kind == "KafkaNodePool":
        storage = spec.get("storage") or {}
        return _join(f"{'+'.join(spec.get('roles') or [])} x{spec.get('replicas')}",
                     f"{storage.get('size')} {storage.get('class') or ''}".strip(),
                     f"requests {_get(spec, 'resources', 'requests', 'cpu')}cpu/"
                     f"{_get(spec, 'resources', 'requests', 'memory')}")
    config = spec.get("config") or {}
    retention = config.get("retention.ms")
    return _join(f"{spec.get('partitions')} partitions x{spec.get('replicas')}",
                 f"retention {int(retention) // 3_600_000}h" if isinstance(retention, int) else None,
                 config.get("cleanup.policy"))


def settings(type_: str, i: Mapping[str, Any]) -> str:
    """The few settings of a resource worth a glance in a plan."""
    kind = type_.rsplit(":", 1)[-1] if type_.startswith("kubernetes:") else None
    spec: Mapping[str, Any] = i["spec"] if isinstance(i.get("spec"), Mapping) else {}
    if type_ == "aws:ec2/vpc:Vpc":
        return _join(i.get("cidrBlock"))
    if type_ == "aws:ec2/subnet:Subnet":
        return _join(i.get("cidrBlock"), i.get("availabilityZone"), "public" if i.get("mapPublicIpOnLaunch") else None)
    if type_ == "aws:eks/cluster:Cluster":
        vpc = i.get("vpcConfig") or {}
        return _join(f"k8s {i.get('version')}", f"auth {_get(i, 'accessConfig', 'authenticationMode')}",
                     "public endpoint" if vpc.get("endpointPublicAccess") else "private endpoint",
                     f"logs {','.join(i.get('enabledClusterLogTypes') or [])}")
    if type_ == "aws:eks/nodeGroup:NodeGroup":
        scaling = i.get("scalingConfig") or {}
        return _join(" ".join(i.get("instanceTypes") or []), i.get("capacityType"),
                     f"{scaling.get('minSize')}/{scaling.get('desiredSize')}/{scaling.get('maxSize')} min/desired/max")
    if type_ == "aws:eks/addon:Addon":
        return _join(f"{i.get('addonName')} {i.get('addonVersion')}")
    if type_ == "aws:sqs/queue:Queue":
        return _join(f"retention {i.get('messageRetentionSeconds')}s",
                     "SSE" if i.get("sqsManagedSseEnabled") or i.get("kmsMasterKeyId") else "no SSE")
    if type_ == "aws:kms/key:Key":
        return _join("rotation on" if i.get("enableKeyRotation") else "rotation off", i.get("description"))
    if type_ in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        return _join(i.get("bucket") or i.get("bucketPrefix"))
    if type_ == "aws:cloudwatch/eventRule:EventRule":
        return _join(i.get("description") or i.get("name"))
    if type_ == "aws:cloudwatch/logGroup:LogGroup":
        return _join(i.get("name"), f"{i.get('retentionInDays')} days", "KMS" if i.get("kmsKeyId") else None)
    if type_ == "aws:iam/role:Role":
        return _join(i.get("name"))
    if type_ == "aws:ec2/natGateway:NatGateway":
        return _join(i.get("connectivityType") or "public")
    if type_.startswith("kubernetes:helm.sh/"):
        return _join(f"{i.get('chart')} {i.get('version')}", f"ns {i.get('namespace')}")
    if kind is None:
        return ""
    name = _get(i, "metadata", "name")
    ns = _get(i, "metadata", "namespace")
    where = f"{ns}/{name}" if ns else str(name)
    if kind in ("Deployment", "StatefulSet"):
        pod = _get(spec, "template", "spec")
        return _join(where, f"replicas {spec.get('replicas', 1)}", _images(pod), _requests(pod))
    if kind == "HorizontalPodAutoscaler":
        metrics = " ".join(str(_get(m, "pods", "metric", "name") or _get(m, "resource", "name"))
                           for m in spec.get("metrics") or [])
        return _join(where, f"{_get(spec, 'scaleTargetRef', 'name')} {spec.get('minReplicas')}-"
                            f"{spec.get('maxReplicas')}", f"on {metrics}")
    if kind == "PodDisruptionBudget":
        limit = (f"maxUnavailable {spec['maxUnavailable']}" if "maxUnavailable" in spec
                 else f"minAvailable {spec.get('minAvailable')}")
        return _join(where, limit)
    if kind == "Service":
        ports = " ".join(str(p.get("port")) for p in spec.get("ports") or [])
        return _join(where, spec.get("type") or "ClusterIP", f"ports {ports}")
    if kind == "StorageClass":
        params = i.get("parameters") or {}
        return _join(name, i.get("provisioner"), params.get("type"),
                     "encrypted" if params.get("encrypted") in ("true", True) else "NOT encrypted")
    if kind == "NodePool":
        reqs = {r.get("key"): r.get("values") for r in _get(spec, "template", "spec", "requirements") or []}
        return _join(name, "/".join(reqs.get("karpenter.sh/capacity-type") or []),
                     " ".join(reqs.get("karpenter.k8s.aws/instance-family") or []),
                     f"limits {(spec.get('limits') or {}).get('cpu')} cpu",
                     _get(spec, "disruption", "consolidationPolicy"))
    if kind == "EC2NodeClass":
        aliases = " ".join(str(t.get("alias") or t.get("id") or t.get("name"))
                           for t in spec.get("amiSelectorTerms") or [])
        return _join(name, aliases, f"IMDS hop limit {_get(spec, 'metadataOptions', 'httpPutResponseHopLimit')}")
    if kind in ("Kafka", "KafkaNodePool", "KafkaTopic"):
        return _join(where, _kafka_settings(kind, i))
    if kind == "Cluster" and str(i.get("apiVersion", "")).startswith("postgresql.cnpg.io"):
        sync = _get(spec, "postgresql", "synchronous")
        return _join(where, f"{spec.get('instances')} instances", spec.get("imageName"),
                     f"storage {_get(spec, 'storage', 'size')}",
                     f"sync {sync.get('method')} {sync.get('number')}" if isinstance(sync, Mapping) else "async")
    if kind == "ScheduledBackup":
        return _join(where, spec.get("schedule"), spec.get("method"))
    if kind == "ObjectStore":
        return _join(where, _get(spec, "configuration", "destinationPath"), spec.get("retentionPolicy"))
    if kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        layouts = " ".join(f"{c.get('name')} {_get(c, 'layout', 'shardsCount') or 1}x"
                           f"{_get(c, 'layout', 'replicasCount') or 1}"
                           for c in _get(spec, "configuration", "clusters") or [])
        images = " ".join(_images(t.get("spec")) for t in _get(spec, "templates", "podTemplates") or [])
        return _join(where, layouts, images)
    if kind == "Gateway":
        listeners = " ".join(f"{lst.get('protocol')}:{lst.get('port')} {lst.get('hostname') or ''}".strip()
                             for lst in spec.get("listeners") or [])
        return _join(where, spec.get("gatewayClassName"), listeners)
    if kind == "HTTPRoute":
        weights = [f"{b.get('name')}={b.get('weight')}" for r in spec.get("rules") or []
                   for b in r.get("backendRefs") or [] if "weight" in b]
        return _join(where, " ".join(spec.get("hostnames") or []), f"{len(spec.get('rules') or [])} rules",
                     " ".join(dict.fromkeys(weights)))
    if kind == "PrometheusRule":
        rules = [r for g in spec.get("groups") or [] for r in g.get("rules") or []]
        alerts = sum(1 for r in rules if "alert" in r)
        return _join(where, f"{len(rules)} rules ({alerts} alerts)")
    return where


# --- rendering -----------------------------------------------------------------------------------------


def render(report: PlanReport, out: Console) -> None:
    """The plan for people: inventory, counts, policy verdicts, schema results."""
    from rich.table import Table

    inventory = Table(title=f"Stack {report.stack} ({report.environment}): {len(report.inventory)} resources",
                      title_justify="left")
    for column in ("type", "name", "key settings"):
        inventory.add_column(column, overflow="fold")
    for item in sorted(report.inventory, key=lambda x: (x["type"], x["name"])):
        inventory.add_row(item["type"], item["name"], item["settings"])
    out.print(inventory)

    counts = Table(title="Resources per type", title_justify="left")
    counts.add_column("type")
    counts.add_column("count", justify="right")
    for type_, n in report.counts.items():
        counts.add_row(type_, str(n))
    out.print(counts)

    broken = Counter(v.rule for v in report.violations)
    policies = Table(title="Policies (infra/policies, mandatory)", title_justify="left")
    policies.add_column("rule")
    policies.add_column("result")
    for rule in report.rules:
        policies.add_row(rule, f"[red]FAIL ({broken[rule]})[/red]" if broken[rule] else "[green]pass[/green]")
    out.print(policies)
    if report.violations:
        violations = Table(title="Violations", title_justify="left")
        for column in ("resource", "rule", "message"):
            violations.add_column(column, overflow="fold")
        for v in report.violations:
            violations.add_row(v.resource, v.rule, v.message)
        out.print(violations)

    ok = sum(1 for s in report.schemas if s.status == "ok")
    out.print(f"Schemas: {len(report.schemas)} Kubernetes objects, {ok} valid, {len(report.invalid)} invalid, "
              f"{len(report.unknown)} without a schema")
    for s in report.invalid:
        for error in s.errors:
            out.print(f"  [red]invalid[/red] {s.resource} ({s.kind}): {error}")
    for s in report.unknown:
        out.print(f"  [yellow]not validated[/yellow] {s.resource}: no schema for {s.kind} ({s.api_version})")
    if report.server is not None:
        render_server(report.server, out)
    verdict = "[green]passed[/green]" if report.passed else "[red]failed[/red]"
    rejected = f", {len(report.server.rejected)} rejected by the cluster" if report.server is not None else ""
    out.print(f"Plan {verdict}: {len(report.violations)} policy violation(s), {len(report.invalid)} invalid "
              f"object(s){rejected}")


_SERVER_RESULT = {"rejected": "[red]rejected[/red]", "unchecked": "[yellow]not checked[/yellow]",
                  "accepted": "[green]accepted[/green]"}


def render_server(server: ServerReport, out: Console) -> None:
    """The cluster's answers, rejections first: one row per object, what the server said, where it was checked."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Server-side dry-run on {server.server} (context {server.context}, Kubernetes "
                        f"{server.version}): nothing persisted", title_justify="left")
    for column in ("object", "resource", "result", "server"):
        table.add_column(column, overflow="fold")
    rank = {"rejected": 0, "unchecked": 1, "accepted": 2}
    for r in sorted(server.results, key=lambda r: rank[r.status]):
        notes = [r.message] if r.message else []
        if r.checked_in:
            notes.append(f"checked in namespace {r.checked_in} ({r.namespace} does not exist yet)")
        if r.update_refused:
            notes.append(f"valid as a new object, but as an update of the one on the cluster: {r.update_refused}")
        notes.extend(f"warning: {w}" for w in r.warnings)
        table.add_row(escape(r.ref), escape(r.resource), _SERVER_RESULT[r.status], escape("; ".join(notes)))
    out.print(table)
    out.print(f"Cluster: {len(server.results)} Kubernetes objects, {len(server.accepted)} accepted, "
              f"{len(server.rejected)} rejected, {len(server.unchecked)} not checked (no CRD on the cluster; "
              "the offline schemas cover them)")
    for r in server.rejected:
        out.print(f"  [red]rejected[/red] {escape(r.ref)} ({escape(r.resource)}): {escape(r.message)}")
    for r in server.update_refused:
        out.print(f"  [yellow]update refused[/yellow] {escape(r.ref)} ({escape(r.resource)}) is valid as a new "
                  f"object; the server refuses it as an update of the one on the cluster: {escape(r.update_refused)}")
