"""`openbell infra plan|preview|up|destroy`: the Pulumi program in infra/ (EKS, Karpenter, the data tier,
the services), planned offline or run through the Automation API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from openbell.commands.output import OUTPUT_OPTION, Output, console, print_json, resolve, settings
from openbell.errors import EXIT_GATE_FAILED, UsageError

if TYPE_CHECKING:
    from openbell.infra.deploy import Operation

app = typer.Typer(help="The platform (Pulumi): offline plan with policy and schema checks; preview, up, "
                  "destroy with the real engine, on AWS or (target existing-cluster) on a cluster that exists.",
                  no_args_is_help=True)

STACK = typer.Option(..., "--stack", "-s", help="Stack name: dev, staging, prod or local "
                                               "(stacks/Pulumi.<stack>.yaml).")
STACK_FILE = typer.Option(None, "--stack-file", help="Read the stack's config from this file instead.")
YES = typer.Option(False, "--yes", "-y", help="Really do it (up and destroy change real infrastructure).")
CLUSTER = typer.Option(False, "--cluster",
                       help="With --offline: also dry-run every Kubernetes object on a cluster's API server "
                            "(server-side, dryRun=All: nothing is persisted); a rejection fails the plan.")
KUBE_CONTEXT = typer.Option(None, "--context", help="Kubeconfig context for the cluster check [current]; "
                                                    "implies --cluster.")
KUBECONFIG = typer.Option(None, "--kubeconfig", help="Kubeconfig for the cluster check [$KUBECONFIG, "
                                                     "~/.kube/config]; implies --cluster.")


@app.command()
def plan(
    ctx: typer.Context,
    stack: str = STACK,
    offline: bool = typer.Option(False, "--offline",
                                 help="Run the program under pulumi's mocks: no pulumi CLI, no cloud."),
    stack_file: Path | None = STACK_FILE,
    cluster: bool = CLUSTER,
    kube_context: str | None = KUBE_CONTEXT,
    kubeconfig: Path | None = KUBECONFIG,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Inventory, policy results and schema checks of a stack (exit 1 on a violation or an invalid object).

    With --cluster (or --context/--kubeconfig) every Kubernetes object is also sent to that cluster's API server as
    a server-side dry-run: its schemas, CEL rules and admission judge them (exit 1 on a rejection); kinds whose CRD
    the cluster lacks are listed as not checked. Objects in a namespace the plan creates are checked in `default`.

    Without --offline it is a `preview` (the real engine: the pulumi CLI, and the cluster or AWS credentials)."""
    from openbell.infra import repo_root

    wants_cluster = cluster or kube_context is not None or kubeconfig is not None
    if wants_cluster and not offline:
        raise UsageError("the cluster check (--cluster, --context, --kubeconfig) dry-runs the offline plan's "
                         "objects: add --offline")
    root = repo_root()
    if not offline:
        _operate(ctx, "preview", root, stack, stack_file, output)
        return
    from openbell.infra.dryrun import ClusterRef
    from openbell.infra.plan import render, run_plan

    target = ClusterRef(kubeconfig, kube_context) if wants_cluster else None
    report = run_plan(root, stack, stack_file, verbose=settings(ctx).verbose, cluster=target)
    if resolve(ctx, output) is Output.json:
        print_json(report.as_dict())
    else:
        render(report, console())
    if not report.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


def _operate(ctx: typer.Context, operation: Operation, root: Path, stack: str, stack_file: Path | None,
             output: Output | None, kubeconfig: Path | None = None) -> None:
    from openbell.infra.deploy import run

    outcome = run(operation, root, stack, stack_file, kubeconfig=kubeconfig)
    if resolve(ctx, output) is Output.json:
        print_json(outcome.as_dict())
        return
    summary = outcome.summary
    changes = ", ".join(f"{k} {v}" for k, v in (summary.get("changes") or {}).items()) or "no changes"
    result = f" ({summary['result']})" if summary.get("result") else ""
    console().print(f"pulumi {operation} --stack {stack}{result}: {changes}")


DEPLOY_STACK_FILE = typer.Option(None, "--stack-file",
                                 help="Take the stack's config from this file instead of stacks/Pulumi.<stack>.yaml "
                                      "(the state stays the stack's).")
DEPLOY_KUBECONFIG = typer.Option(None, "--kubeconfig", help="Target existing-cluster: the kubeconfig the provider "
                                                            "uses [$KUBECONFIG, ~/.kube/config]; the context is "
                                                            "the stack's existingCluster.context.")


@app.command()
def preview(ctx: typer.Context, stack: str = STACK, stack_file: Path | None = DEPLOY_STACK_FILE,
            kubeconfig: Path | None = DEPLOY_KUBECONFIG, output: Output | None = OUTPUT_OPTION) -> None:
    """What `up` would change, with the policy pack enforced by the engine (exit 1 on a violation)."""
    from openbell.infra import repo_root

    _operate(ctx, "preview", repo_root(), stack, stack_file, output, kubeconfig)


@app.command()
def up(ctx: typer.Context, stack: str = STACK, stack_file: Path | None = DEPLOY_STACK_FILE,
       kubeconfig: Path | None = DEPLOY_KUBECONFIG, yes: bool = YES, output: Output | None = OUTPUT_OPTION) -> None:
    """Create or update the stack's resources, policy pack enforced (a mandatory violation changes nothing)."""
    from openbell.infra import repo_root

    if not yes:
        raise UsageError(f"`infra up --stack {stack}` changes real infrastructure: add --yes (and preview first)")
    _operate(ctx, "up", repo_root(), stack, stack_file, output, kubeconfig)


@app.command()
def destroy(ctx: typer.Context, stack: str = STACK, stack_file: Path | None = DEPLOY_STACK_FILE,
            kubeconfig: Path | None = DEPLOY_KUBECONFIG, yes: bool = YES,
            output: Output | None = OUTPUT_OPTION) -> None:
    """Delete every resource of the stack."""
    from openbell.infra import repo_root

    if not yes:
        raise UsageError(f"`infra destroy --stack {stack}` deletes every resource of the stack: add --yes")
    _operate(ctx, "destroy", repo_root(), stack, stack_file, output, kubeconfig)
