"""`openbell chaos list|validate|run`: Chaos Toolkit experiments on the sandbox or a cluster, gated on SLO burn."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from openbell.commands.output import OUTPUT_OPTION, Output, console, print_json, progress_lines, resolve
from openbell.errors import SpecError, UnreachableError, UsageError

if TYPE_CHECKING:
    from openbell.chaos.catalogue import Experiment
    from openbell.chaos.runner import Live, RunOptions, RunResult

app = typer.Typer(help="Chaos experiments (Chaos Toolkit) with an SLO safeguard: refuse to start on a burning "
                  "budget, stop and roll back when a page-severity window burns.", no_args_is_help=True)
EXPERIMENTS = typer.Option(None, "--experiments",
                           help="Experiments folder [env OPENBELL_EXPERIMENTS, default ./experiments].")
TARGETS = ("sandbox", "kubernetes")


@app.command("list")
def list_(ctx: typer.Context, target: str | None = typer.Option(None, "--target", "-t", help="sandbox or kubernetes."),
          experiments: str | None = EXPERIMENTS, output: Output | None = OUTPUT_OPTION) -> None:
    """The experiments, their target and what each proves."""
    from rich.table import Table

    from openbell.chaos.catalogue import experiments_dir, list_experiments

    found = list_experiments(experiments_dir(experiments), _target(target) if target else None)
    if resolve(ctx, output) is Output.json:
        print_json([e.to_json() for e in found])
        return
    table = Table(title="Chaos experiments")
    for col in ("name", "target", "proves"):
        table.add_column(col, overflow="fold")
    for e in found:
        table.add_row(e.name, e.target or "-", e.description or e.title)
    console().print(table)


@app.command()
def validate(
    ctx: typer.Context,
    experiment: str = typer.Argument(..., metavar="EXPERIMENT", help="A name from `chaos list` or a file path."),
    target: str | None = typer.Option(None, "--target", "-t", help="Whose experiment of that name [sandbox]."),
    experiments: str | None = EXPERIMENTS,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Chaos Toolkit's own validation (`chaos validate`, with openbell's extension importable): exit 0 valid,
    2 invalid with its message, 3 Chaos Toolkit not installed."""
    import tempfile

    from openbell.chaos.runner import has_safeguard
    from openbell.chaos.runner import validate as chaos_validate

    found = _find(experiment, experiments, _target(target) if target else None)
    with tempfile.TemporaryDirectory(prefix="openbell-chaos-validate-") as scratch:
        message = chaos_validate(found.path, Path(scratch))
    if message is not None:
        raise SpecError(str(found.path), "", message)
    guarded = has_safeguard(found.document)
    if resolve(ctx, output) is Output.json:
        print_json({"experiment": found.name, "path": str(found.path), "valid": True, "safeguard": guarded})
        return
    console().print(f"ok {found.path}: {found.name} ({found.target or 'any target'}): {found.title}")
    if not guarded:
        sys.stderr.write("note: no openbell-slo-safeguard control; `openbell chaos run` adds one (slo/)\n")


@app.command()
def run(
    ctx: typer.Context,
    experiment: str = typer.Argument(..., metavar="EXPERIMENT", help="A name from `chaos list` or a file path."),
    target: str = typer.Option("sandbox", "--target", "-t", help="sandbox or kubernetes (allow-list required)."),
    slo: list[Path] = typer.Option([], "--slo", help="SLO specs the gate and the safeguard judge, replacing the "
                                   "experiment's (repeatable)."),
    prometheus: str | None = typer.Option(None, "--prometheus",
                                          help="Prometheus URL [$OPENBELL_PROMETHEUS_URL, else the sandbox's]."),
    home: Path | None = typer.Option(None, "--home", help="Sandbox state directory [$OPENBELL_HOME or the default]."),
    dry: bool = typer.Option(False, "--dry", help="Walk the experiment without running its activities (the "
                             "safeguard's pre-start check still runs)."),
    journal: Path | None = typer.Option(None, "--journal", help="Write Chaos Toolkit's journal here [a temp dir]."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here (steady states, each activity)."),
    kube_context: str | None = typer.Option(None, "--context", help="Kube context [the kubeconfig's current]."),
    namespace: str | None = typer.Option(None, "--namespace", help="Namespace [the context's]."),
    rollback_strategy: str = typer.Option("always", "--rollback-strategy",
                                          help="always (default: also after the safeguard stops a run), default, "
                                          "deviated or never."),
    experiments: str | None = EXPERIMENTS,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Run an experiment with Chaos Toolkit and judge it from its journal.

    Exit 0: the steady state held before and after. 1: it did not (also when it already failed before the
    method), the SLO safeguard refused to start or stopped the run (its figures are printed), an action or a
    rollback failed. 2: bad experiment (Chaos Toolkit's validation message), bad arguments, or a refused
    kubernetes target. 3: the target, Prometheus or Chaos Toolkit unreachable, or the cluster lacks a custom
    resource the experiment acts on (its operator's CRD, or the named object: nothing is run). 130: interrupted
    (Ctrl-C runs the rollbacks first).

    --target kubernetes is refused unless one entry of an allow-list names the kube context, the experiment
    and every namespace the run touches (the current one and those its activities name). The list is
    $OPENBELL_CHAOS_ALLOW, else ~/.config/openbell/chaos-allow.yaml:

        allow:
          - context: staging-eks            # exact kubeconfig context
            namespaces: [openbell, kafka]   # or ["*"]
            experiments: [gateway-pod-loss] # or ["*"]
    """
    import tempfile

    from openbell.chaos.runner import RunOptions

    chosen = _target(target)
    found = _find(experiment, experiments, chosen)
    if found.target is not None and found.target != chosen:
        raise UsageError(f"experiment {found.name} is for the {found.target} target ({found.path}), not {chosen}")
    slo_paths = _slos(slo)
    resolved_home: Path | None = None
    if chosen == "kubernetes":
        from openbell.chaos import allowlist

        rules = allowlist.load()
        context, ns = allowlist.current_context(kube_context, namespace)
        touched = {ns} | allowlist.experiment_namespaces(found.document)
        allowlist.check(rules, found.name, context, touched, str(allowlist.allow_file()))
        from openbell.chaos import preflight

        problem = preflight.check(found.name, found.document, context)
        if problem:
            raise UnreachableError(problem)
        # The context the allow-list allowed is the one acted on, even if the kubeconfig's current context
        # changes while the run goes on.
        kube_context = context
        prometheus = prometheus or os.environ.get("OPENBELL_PROMETHEUS_URL")
        if not prometheus:
            raise UsageError("--target kubernetes: --prometheus URL (or $OPENBELL_PROMETHEUS_URL) is required")
    else:
        resolved_home, prometheus = _sandbox(home, prometheus)
    _reachable(prometheus)
    workdir = Path(tempfile.mkdtemp(prefix=f"openbell-chaos-{found.name}-"))
    options = RunOptions(workdir=workdir, journal_path=(journal or workdir / "journal.json").resolve(),
                         home=resolved_home, slo_paths=tuple(slo_paths), prometheus_url=prometheus, dry=dry,
                         rollback_strategy=rollback_strategy, kube_context=kube_context)
    fmt = resolve(ctx, output)
    result = _run_with_status(found, options, fmt)
    if junit is not None:
        _write_junit(junit, result)
    if fmt is Output.json:
        print_json(result.to_json(chosen))
    else:
        _render(result, chosen)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _target(text: str) -> str:
    if text not in TARGETS:
        raise UsageError(f"--target {text!r}: expected sandbox or kubernetes")
    return text


def _find(name: str, experiments: str | None, target: str | None) -> Experiment:
    """By name or path; a file Chaos Toolkit cannot even load is named with Chaos Toolkit's own message."""
    import tempfile

    from openbell.chaos.catalogue import SUFFIXES, experiments_dir, find

    try:
        return find(name, experiments_dir(experiments), target)
    except SpecError as exc:
        path = Path(name)
        if path.suffix not in SUFFIXES or not path.is_file():
            raise
        from openbell.chaos.runner import validate as chaos_validate

        with tempfile.TemporaryDirectory(prefix="openbell-chaos-validate-") as scratch:
            message = chaos_validate(path, Path(scratch))
        raise SpecError(str(path), "", message or exc.expected) from None


def _slos(paths: list[Path]) -> list[Path]:
    """--slo paths, checked now (a bad spec exits 2 before anything is broken)."""
    if not paths:
        return []
    from openbell.slo.loader import load_slos

    load_slos(paths)
    return [p.resolve() for p in paths]


def _sandbox(home: Path | None, prometheus: str | None) -> tuple[Path, str]:
    from openbell.sandbox.layout import Layout, default_home
    from openbell.sandbox.supervisor import running_endpoints

    resolved = home.expanduser().resolve() if home else default_home()
    endpoints = running_endpoints(Layout(resolved))
    if endpoints is None:
        raise UnreachableError(f"target sandbox ({resolved}): it is not running; `openbell sandbox up` first")
    return resolved, prometheus or os.environ.get("OPENBELL_PROMETHEUS_URL") or endpoints["prometheus_url"]


def _reachable(url: str) -> None:
    from openbell.metrics.prometheus import PrometheusClient

    with PrometheusClient(url, timeout_s=5.0) as client:
        client.build_info()


def _run_with_status(found: Experiment, options: RunOptions, fmt: Output) -> RunResult:
    from openbell.chaos.runner import run as run_experiment

    err = console(stderr=True)
    if progress_lines():
        seen: list[str] = []

        def line(live: Live) -> None:
            text = live.phase + (f": {live.activity}" if live.activity else "")
            if live.safeguard:
                text += f" | SAFEGUARD: {live.safeguard[:120]}"
            if not seen or seen[-1] != text:
                seen.append(text)
                err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {text}")

        return run_experiment(found, options, line)
    if fmt is Output.json or not err.is_terminal:
        return run_experiment(found, options)
    with err.status(f"chaos {found.name}: starting") as status:

        def show(live: Live) -> None:
            status.update(f"chaos {found.name} [{live.elapsed_s:4.0f}s] {_describe(live)}")

        return run_experiment(found, options, show)


def _describe(live: Live) -> str:
    """The status line: phase, current activity, and the last gate figures the safeguard saw."""
    text = live.phase + (f": {live.activity}" if live.activity else "")
    gate = live.gate
    if gate:
        rate = gate.get("fastest_burn_rate")
        budget = gate.get("lowest_budget_remaining")
        text += (f" | gate {gate.get('outcome')}"
                 + (f", fastest burn {rate:.1f}x" if isinstance(rate, int | float) else "")
                 + (f", budget left {budget:.0%}" if isinstance(budget, int | float) else ""))
    if live.safeguard:
        text += f" | SAFEGUARD: {live.safeguard[:120]}"
    return text


def _render(result: RunResult, target: str) -> None:
    from rich.table import Table

    out = console()
    verdict = result.verdict
    colour = "green" if verdict.passed else "magenta" if result.outcome == "unhealthy" else "red"
    out.print(f"chaos {result.experiment.name} ({target}): [{colour}]{result.outcome}[/]")
    for reason in verdict.reasons:
        out.print(f"  - {reason}")
    if result.reading is not None and result.reading.timeline:
        start = min((s.start for s in result.reading.timeline if s.start is not None), default=0.0)
        table = Table(title="timeline")
        for col in ("phase", "activity", "status", "at", "took"):
            table.add_column(col, justify="right" if col in ("at", "took") else "left")
        for step in result.reading.timeline:
            status = step.status if step.tolerance_met is not False else "tolerance not met"
            table.add_row(step.phase, f"{step.kind} {step.name}", status,
                          "-" if step.start is None else f"+{step.start - start:.1f}s",
                          "-" if step.duration_s is None else f"{step.duration_s:.1f}s")
        out.print(table)
    guard = verdict.figures.get("safeguard") or {}
    if guard.get("burning"):
        from openbell.durations import human_duration

        table = Table(title="SLO figures that tripped the safeguard")
        for col in ("slo", "windows", "burn rate (long / short)", "threshold", "budget left"):
            table.add_column(col)
        for b in guard["burning"]:
            budget = b.get("budget_remaining")
            table.add_row(b["slo"], f"{human_duration(b['long_window_s'])}/{human_duration(b['short_window_s'])}",
                          f"{_rate(b['long_burn_rate'])} / {_rate(b['short_burn_rate'])}",
                          f"{b['burn_rate_threshold']:g}x", "-" if budget is None else f"{budget:.1%}")
        out.print(table)
    out.print(f"journal: {result.journal_path}")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _write_junit(path: Path, result: RunResult) -> None:
    from openbell.chaos.journal import junit_cases
    from openbell.report.junit import Case, render

    suite = f"chaos.{result.experiment.name}"
    cases = (junit_cases(result.reading, result.verdict, suite) if result.reading is not None
             else [Case("experiment", suite, result.verdict.outcome, "; ".join(result.verdict.reasons))])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(f"openbell chaos {result.experiment.name}", cases))
    sys.stderr.write(f"wrote JUnit XML to {path}\n")
