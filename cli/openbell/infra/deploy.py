"""`openbell infra preview|up|destroy`: the real Pulumi engine, through the Automation API's inline program.

The program (infra/program.py `main`) runs in this process, in the Python SDK's own language server: no
Python language plugin is needed, only the pulumi CLI (the engine) and the providers the stack uses. The
engine is found in openbell's cache first (`make pulumi` builds it from the Go module proxy, with the
Kubernetes provider), else on PATH; automatic plugin downloads are off, so nothing reaches for the network.

Each stack gets a workspace of its own under the state directory: a Pulumi.yaml for the project and the stack's
settings copied from stacks/Pulumi.<stack>.yaml (or --stack-file) on every run. The engine writes its secrets
salt there, never into the repository; the config the user edits stays the only source of values.

The backend: PULUMI_BACKEND_URL when set; otherwise a stack of target existing-cluster gets a local file backend
in the state directory (with a passphrase generated once, in a 0600 file, for its secrets), and an aws stack
uses whatever `pulumi login` chose.

Before anything runs: the stack's config must validate (exit 2); the CLI, and for the target the provider,
the cluster or AWS credentials, must be there (exit 3, one line saying what to do). On an existing cluster
every custom resource kind the program declares must be served, since the stack assumes the operators and
their CRDs are installed (exit 3 naming the missing kinds). Preview and up run the policy pack in
infra/policies through the engine: a mandatory violation stops the update (exit 1).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from openbell.errors import EXIT_GATE_FAILED, OpenbellError, UnreachableError, UsageError
from openbell.infra import importable, stack_file
from openbell.infra.plan import load_config

if TYPE_CHECKING:
    from infra.config import PlatformConfig
    from openbell.infra.dryrun import ClusterRef

Operation = Literal["preview", "up", "destroy"]

PULUMI_VERSION = "3.276.0"
"""What scripts/pulumi-build.sh builds (OPENBELL_PULUMI_VERSION there)."""
PROJECT = "openbell"
INSTALL_HINT = "run `make pulumi` (builds it into openbell's cache), or install it " \
               "(https://www.pulumi.com/docs/iac/download-install/); `openbell infra plan --stack {stack} " \
               "--offline` needs neither the CLI nor a cloud"
PROVIDER_HINT = "run `make pulumi` (builds pulumi-resource-kubernetes from the Go module proxy), or put it on PATH"
SETTINGS_KEYS = ("secretsprovider", "encryptedkey", "encryptionsalt")
"""A stack file's keys that belong to its secrets provider: kept in the workspace across runs."""


class OperationFailed(OpenbellError):
    """Pulumi ran and said no: a failed preview/update (a mandatory policy violation, a provider error)."""

    exit_code = EXIT_GATE_FAILED


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    stack: str
    summary: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "stack": self.stack, "summary": self.summary}


@dataclass(frozen=True)
class Engine:
    """Where the pulumi CLI is (`root`/bin/pulumi, or None for the one on PATH) and what its runs get."""

    root: Path | None
    bin_dir: Path | None
    env: dict[str, str] = field(default_factory=dict)


def _cache_root() -> Path:
    base = os.environ.get("OPENBELL_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openbell")
    return Path(base)


def _state_root() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "openbell" / "pulumi"


def engine_root(cache: Path | None = None) -> Path:
    """The versioned directory `make pulumi` builds into (bin/pulumi, bin/pulumi-resource-kubernetes)."""
    return (cache or _cache_root()) / f"pulumi-v{PULUMI_VERSION}"


def find_engine(stack: str, needs_kubernetes: bool, cache: Path | None = None,
                path: str | None = None) -> Engine:
    """The pulumi CLI (openbell's build, else PATH) and, when the stack deploys Kubernetes objects with no
    download allowed, the Kubernetes provider; exit 3 naming what is missing."""
    root = engine_root(cache)
    search = os.environ.get("PATH", "") if path is None else path
    bin_dir: Path | None = root / "bin"
    if (root / "bin" / "pulumi").is_file():
        search = os.pathsep.join([str(root / "bin"), search])
        cli_root: Path | None = root
    elif shutil.which("pulumi", path=search):
        cli_root, bin_dir = None, None
    else:
        raise UnreachableError("the pulumi CLI is not built or on PATH: " + INSTALL_HINT.format(stack=stack))
    if needs_kubernetes and not shutil.which("pulumi-resource-kubernetes", path=search) and not _installed_plugin(
            "kubernetes"):
        raise UnreachableError(f"the Pulumi Kubernetes provider (pulumi-resource-kubernetes) is not there: "
                               f"{PROVIDER_HINT}")
    env = {"PATH": search, "PULUMI_SKIP_UPDATE_CHECK": "true",
           # Never fetch a plugin: what is built or installed is what runs.
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}
    return Engine(cli_root, bin_dir, env)


def _installed_plugin(name: str) -> bool:
    """A provider plugin installed the usual way (`pulumi plugin install`, ~/.pulumi/plugins)."""
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    return any((home / "plugins").glob(f"resource-{name}-v*")) if (home / "plugins").is_dir() else False


def aws_credentials(env: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """Where AWS credentials would come from, or None when nothing is configured. Checked without boto3:
    the environment (keys, profile, web identity, container/pod identity) and the shared files."""
    env = os.environ if env is None else env
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return "AWS_ACCESS_KEY_ID"
    for key in ("AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        if env.get(key):
            return key
    base = (home or Path.home()) / ".aws"
    for key, default in (("AWS_SHARED_CREDENTIALS_FILE", base / "credentials"), ("AWS_CONFIG_FILE", base / "config")):
        path = Path(env[key]).expanduser() if env.get(key) else default
        if path.is_file() and path.stat().st_size > 0:
            return str(path)
    return None


def check_aws(stack: str) -> None:
    """AWS credentials and the aws CLI, or exit 3 saying which is missing."""
    if aws_credentials() is None:
        raise UnreachableError("no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY), use web or pod identity, or configure ~/.aws; or run "
                               f"`openbell infra plan --stack {stack} --offline`")
    if shutil.which("aws") is None:
        # The cluster's kubeconfig authenticates with `aws eks get-token`: without it every Kubernetes
        # call of the run would fail half way through.
        raise UnreachableError("the aws CLI is not on PATH (the kubeconfig runs `aws eks get-token`): install it")


def check_cluster(root: Path, stack: str, cfg: PlatformConfig, ref: ClusterRef, stack_path: Path | None) -> None:
    """The existing cluster answers, with the credentials given, and serves every custom resource kind the
    program declares; else exit 3 with one line (which kinds are missing, and how the local cluster gets them)."""
    from openbell.infra import dryrun
    from openbell.infra.plan import run_plan

    try:
        server = dryrun.connect(ref)
    except UsageError as exc:  # a kubeconfig or context that cannot be used: the cluster cannot be reached
        raise UnreachableError(str(exc)) from None
    try:
        objects = run_plan(root, stack, stack_path).objects
        missing = sorted({f"{o.kind} ({o.api_version})" for o in objects if not dryrun.is_builtin(o.api_version)
                          and o.kind not in (server.kinds(o.api_version) or {})})
    finally:
        server.close()
    if missing:
        raise UnreachableError(
            f"cluster {server.host} (context {server.context}) does not serve {', '.join(missing)}: a stack of "
            "target existing-cluster assumes the operators and their CRDs are installed (on the local cluster: "
            "`openbell cluster up --transcribed-crds`)")


class CanaryHoldsRoute(OperationFailed):
    """`up` would rewrite the HTTPRoute while a canary holds part of its traffic (exit 1, nothing changed)."""


def live_canary_weight(ref: ClusterRef) -> int:
    """The canary's share (percent) of HTTPRoute openbell/gateway as the cluster holds it now; 0 without one."""
    from infra.apps import NAMESPACE, ROUTE
    from openbell.targets.kubernetes import HTTPROUTE, KubeApi, route_weight

    api = KubeApi.connect(NAMESPACE, ref.context, str(ref.kubeconfig) if ref.kubeconfig else None, timeout_s=10.0)
    route = api.get(HTTPROUTE, ROUTE)
    return route_weight(route, f"{ROUTE}-canary") if route else 0


ROUTE_URN_SUFFIX = "::apps-route"
CHANGING_OPS = ("update", "replace", "create-replacement", "delete-replaced", "delete")


def route_changes(events: list[Any]) -> list[str]:
    """The engine's planned operations on the HTTPRoute, from a preview's events."""
    out = []
    for event in events:
        pre = getattr(event, "resource_pre_event", None)
        meta = getattr(pre, "metadata", None)
        if meta is not None and str(meta.urn).endswith(ROUTE_URN_SUFFIX):
            op = str(getattr(meta.op, "value", meta.op))
            if op in CHANGING_OPS:
                out.append(op)
    return out


UNREACHABLE_HINTS = ("pulumi login", "PULUMI_ACCESS_TOKEN", "NoCredentialProviders", "no valid credential",
                     "could not connect", "dial tcp", "ExpiredToken", "cluster is unreachable",
                     "no resource plugin", "failed to load plugin")
"""Failures that mean the backend, the cloud, the cluster or a plugin cannot be reached (exit 3), not that the
change was refused."""


GENERIC = ("update failed", "preview failed", "destroy failed", "error occurred", "resource monitor has terminated",
           "errored", "running error")
"""The engine's summary lines: true of every failure, so never the one line shown."""


def _last_line(text: str) -> str:
    """The one line that says why: a policy violation, the provider's own message (the engine lists them as
    `* ...` under the resource), else the last error line that is not a generic summary."""
    lines = [ln.strip().removeprefix("stderr:").strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if ln and not ln.startswith(("code:", "stdout:"))]
    specific = [ln for ln in lines if not any(g in ln.lower() for g in GENERIC)]
    # A violation is three lines: "- [mandatory] rule (type: resource)", the rule's description, the finding.
    violations = [f"{ln.removeprefix('- ')}: {lines[i + 2]}" if i + 2 < len(lines) else ln
                  for i, ln in enumerate(lines) if ln.startswith("- [mandatory]")]
    bullets = [ln.removeprefix("* ") for ln in specific if ln.startswith("* ")]
    errors = [ln for ln in specific if "error" in ln.lower()]
    return (violations or bullets or errors or lines or ["pulumi failed"])[0 if violations or bullets else -1][:400]


def policy_launcher(root: Path, directory: Path) -> Path:
    """An executable that serves infra/policies as an analyzer plugin with this interpreter (pulumi_policy's
    PolicyPack serves gRPC and prints its port, the plugin protocol). The engine launches an executable policy
    pack directly; a directory pack would need the Python language plugin, which the engine may not have."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "infra" / "policies" / "PulumiPolicy.yaml", directory / "PulumiPolicy.yaml")
    launcher = directory / "openbell-policies"
    text = (f"#!/bin/sh\n# Written by openbell infra: the policy pack in {root}/infra/policies.\n"
            f"exec '{sys.executable}' -u '{root / 'infra' / 'policies' / '__main__.py'}' \"$@\"\n")
    if not launcher.is_file() or launcher.read_text() != text:
        tmp = launcher.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(launcher)
    return launcher


def prepare_workspace(stack: str, source: Path, workspace: Path) -> None:
    """The stack's workspace: the project file, and the stack's settings from `source` with the secrets
    provider's keys the engine wrote there on earlier runs (when `source` has none of its own)."""
    import yaml

    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "Pulumi.yaml").write_text(yaml.safe_dump(
        {"name": PROJECT, "runtime": "python",
         "description": "openbell (written by openbell infra: the program is infra/program.py, run inline)"}))
    settings = yaml.safe_load(source.read_text()) or {}
    target = workspace / f"Pulumi.{stack}.yaml"
    if target.is_file():
        kept = yaml.safe_load(target.read_text()) or {}
        if not any(settings.get(key) for key in SETTINGS_KEYS):
            settings.update({key: kept[key] for key in SETTINGS_KEYS if key in kept})
    tmp = target.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(settings, sort_keys=False))
    tmp.replace(target)


def backend_env(cfg: PlatformConfig, state: Path) -> dict[str, str]:
    """PULUMI_BACKEND_URL when set; a local file backend for existing-cluster stacks otherwise."""
    if os.environ.get("PULUMI_BACKEND_URL") or not cfg.existing:
        return {}
    backend = state / "backend"
    backend.mkdir(parents=True, exist_ok=True)
    env = {"PULUMI_BACKEND_URL": f"file://{backend}"}
    if not (os.environ.get("PULUMI_CONFIG_PASSPHRASE") or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        passphrase = state / "passphrase"
        if not passphrase.is_file():
            fd = os.open(passphrase, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(passphrase)
    return env


def run(operation: Operation, root: Path, stack: str, stack_path: Path | None = None,
        kubeconfig: Path | None = None) -> Outcome:
    """Validate, check the tools and the target, then preview/up/destroy `stack` with the engine's progress
    streamed to stderr. `kubeconfig` (target existing-cluster) is where the provider finds the cluster; the
    context is the stack's (existingCluster.context), part of its config, never a flag that could point the
    same state at another cluster."""
    cfg = load_config(root, stack, stack_path)
    if kubeconfig is not None and not cfg.existing:
        raise UsageError(f"--kubeconfig: stack {stack} is of target aws (its kubeconfig is its own EKS "
                         "cluster's); it is for target existing-cluster stacks")
    engine = find_engine(stack, needs_kubernetes=cfg.existing)
    env = dict(engine.env)
    holding = 0
    if cfg.existing:
        from openbell.infra.dryrun import ClusterRef

        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig.resolve())
        ref = ClusterRef(kubeconfig, cfg.existing_cluster.context or None)
        check_cluster(root, stack, cfg, ref, stack_path)
        if operation == "up":
            holding = live_canary_weight(ref)
    else:
        check_aws(stack)
    state = _state_root()
    env |= backend_env(cfg, state)
    # The policy pack judges the stack's configured environment (the 3-zone rule is prod's), whatever the stack
    # is called, as the offline plan does.
    env["OPENBELL_ENVIRONMENT"] = cfg.environment
    workspace = state / "workspaces" / stack
    prepare_workspace(stack, stack_file(root, stack, stack_path), workspace)
    policies = [str(policy_launcher(root, state / "policy-pack"))]
    return _drive(operation, root, stack, workspace, engine, env, policies, holding)


def _drive(operation: Operation, root: Path, stack: str, workspace: Path, engine: Engine, env: dict[str, str],
           policies: list[str], canary_weight: int = 0) -> Outcome:
    """The engine's run. With a canary holding `canary_weight` percent of the route, `up` previews first and
    refuses if the route would change: the engine would apply the weights as last deployed (a canary at 30%
    back to 0) and the rollout's judge would read traffic it did not send."""
    importable(root)
    from pulumi import automation as auto

    from infra.program import main

    def progress(line: str) -> None:
        sys.stderr.write(line if line.endswith("\n") else line + "\n")

    try:
        command = auto.PulumiCommand(root=str(engine.root)) if engine.root is not None else None
        opts = auto.LocalWorkspaceOptions(work_dir=str(workspace), env_vars=env, pulumi_command=command)
        workspace_stack = auto.create_or_select_stack(stack_name=stack, project_name=PROJECT, program=main,
                                                      opts=opts)
        if operation == "preview":
            preview = workspace_stack.preview(on_output=progress, policy_packs=policies, diff=True)
            summary: dict[str, Any] = {"changes": {str(k): v for k, v in preview.change_summary.items()}}
        elif operation == "up":
            if canary_weight > 0:
                events: list[Any] = []
                workspace_stack.preview(on_event=events.append, policy_packs=policies)
                if ops := route_changes(events):
                    raise CanaryHoldsRoute(
                        f"pulumi up --stack {stack}: would {ops[0]} HTTPRoute openbell/gateway while a canary holds "
                        f"{canary_weight}% of its traffic: let the canary finish (or `openbell canary abort`), "
                        "then run up again; nothing was changed")
            up = workspace_stack.up(on_output=progress, policy_packs=policies)
            summary = {"result": up.summary.result,
                       "changes": {str(k): v for k, v in (up.summary.resource_changes or {}).items()},
                       "outputs": {k: v.value for k, v in up.outputs.items() if not v.secret}}
        else:
            destroy = workspace_stack.destroy(on_output=progress)
            summary = {"result": destroy.summary.result,
                       "changes": {str(k): v for k, v in (destroy.summary.resource_changes or {}).items()}}
    except FileNotFoundError:
        raise UnreachableError("the pulumi CLI could not be run: " + INSTALL_HINT.format(stack=stack)) from None
    except auto.errors.CommandError as exc:
        reason = _last_line(str(exc))
        if any(hint.lower() in str(exc).lower() for hint in UNREACHABLE_HINTS):
            raise UnreachableError(f"pulumi {operation} --stack {stack}: {reason}") from None
        raise OperationFailed(f"pulumi {operation} --stack {stack} failed: {reason}") from None
    return Outcome(operation, stack, summary)
