"""`openbell cluster up|down|status|env`: a real Kubernetes control plane on this machine (openbell.localkube)."""

from __future__ import annotations

from typing import Any

import typer

from openbell.commands.output import OUTPUT_OPTION, Output, console, print_json, resolve

app = typer.Typer(help="A local Kubernetes control plane (kube-apiserver, controller-manager, scheduler, etcd, "
                  "KWOK nodes in three zones, the operators' upstream CRDs) in a private network namespace: "
                  "for --target kubernetes without a cloud.", no_args_is_help=True)


def _print(ctx: typer.Context, output: Output | None, state: dict[str, Any]) -> None:
    if resolve(ctx, output) is Output.json:
        print_json(state)
        return
    out = console()
    if not state.get("running"):
        missing = state.get("missing_binaries") or []
        built = f" (not built: {', '.join(map(str, missing))}; run `make kube`)" if missing else ""
        out.print(f"cluster: not running{built}")
        return
    out.print(f"cluster: running, Kubernetes {state['version']} at {state['server']} (context {state['context']}),"
              f" {state.get('nodes', 0)} nodes, {state.get('crds', 0)} CRDs")
    out.print(f"  export KUBECONFIG={state['kubeconfig']}")


@app.command()
def up(
    ctx: typer.Context,
    timeout: float = typer.Option(120.0, "--timeout", min=5.0, help="Seconds to wait for the cluster to be ready."),
    transcribed_crds: bool = typer.Option(
        False, "--transcribed-crds",
        help="Also install CRDs for Strimzi's and Altinity's kinds, made from infra/schemas transcriptions (their "
             "own cannot be fetched here), so that `openbell infra up --stack local` can declare the whole "
             "platform. Installed on a running cluster too."),
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Start the cluster (needs root and `make kube`); a running one is left as it is. Then
    `export KUBECONFIG=$(openbell cluster env)` points kubectl and openbell at it."""
    from openbell.localkube import cluster

    quiet = resolve(ctx, output) is Output.json
    state = cluster.up(timeout_s=timeout, transcribed_crds=transcribed_crds,
                       progress=(lambda _m: None) if quiet else
                       (lambda m: console(stderr=True).print(f"cluster: {m}")))
    _print(ctx, output, state)


@app.command()
def down(ctx: typer.Context, output: Output | None = OUTPUT_OPTION) -> None:
    """Stop the cluster: every process in its namespace, and the namespace's network. Its state is gone."""
    from openbell.localkube import cluster

    ran = cluster.down()
    if resolve(ctx, output) is Output.json:
        print_json({"stopped": ran})
    else:
        console().print("cluster: stopped" if ran else "cluster: was not running")


@app.command()
def status(ctx: typer.Context, output: Output | None = OUTPUT_OPTION) -> None:
    """Whether the cluster runs, its API server, nodes and CRDs. Exit 3 when it is not running."""
    from openbell.localkube import cluster

    state = cluster.status()
    _print(ctx, output, state)
    if not state["running"]:
        raise typer.Exit(3)


@app.command()
def env() -> None:
    """The cluster's kubeconfig path, for `export KUBECONFIG=$(openbell cluster env)`."""
    from openbell.localkube import cluster

    typer.echo(str(cluster.Layout.default().kubeconfig))
