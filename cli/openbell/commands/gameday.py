"""`openbell gameday`: load, canary and chaos together on one schedule, gated on SLO burn, with one report."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from openbell.commands.output import OUTPUT_OPTION, Output, console, print_json, resolve
from openbell.errors import SpecError, UsageError
from openbell.gameday.events import Listener  # stdlib only: the screen subclasses it

if TYPE_CHECKING:
    from openbell.gameday.core import PhaseState
    from openbell.gameday.events import Event
    from openbell.gameday.plan import Plan
    from openbell.gameday.runner import Where
    from openbell.slo.model import SLO
    from openbell.slo.verdict import Verdict

DEFAULT_PLAN = Path("gamedays/opening-bell.yaml")
DEFAULT_KUBERNETES_PLAN = Path("gamedays/opening-bell-kubernetes.yaml")


def gameday(
    ctx: typer.Context,
    plan_path: Path | None = typer.Option(None, "--plan", "-p", help="The gameday plan (YAML) [gamedays/opening-"
                                          "bell.yaml; with --target kubernetes, opening-bell-kubernetes.yaml]."),
    target: str = typer.Option("sandbox", "--target", "-t", help="sandbox (brought up if needed) or kubernetes."),
    report: Path | None = typer.Option(None, "--report", help="Report folder [build/gameday/<run id>]."),
    junit: Path | None = typer.Option(None, "--junit", help="Also write the JUnit XML here (a case per phase)."),
    canary_version: str | None = typer.Option(None, "--canary-version",
                                              help="Override every canary phase's version (the release under test)."),
    home: Path | None = typer.Option(None, "--home", help="Sandbox state directory [$OPENBELL_HOME or the default]."),
    prometheus: str | None = typer.Option(None, "--prometheus", help="Prometheus URL (kubernetes; the sandbox's "
                                          "own otherwise)."),
    base_url: str | None = typer.Option(None, "--base-url", help="kubernetes: the platform's entry point for k6."),
    kube_context: str | None = typer.Option(None, "--context", help="kubernetes: kubeconfig context [current]."),
    namespace: str | None = typer.Option(None, "--namespace", help="kubernetes: namespace of the platform."),
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Run a gameday: the plan's phases (load, canary, chaos, SLO status) on schedule, each gated, one verdict.

    Exit 0 every phase passed and the SLO gate held; 1 a phase or the gate failed (what was running was
    stopped and rolled back; the report says why); 2 bad plan or arguments (nothing was started); 3 the
    target, Prometheus or a tool unreachable; 130 interrupted (everything running was stopped first).
    """
    from openbell.gameday.plan import load_plan

    fmt = resolve(ctx, output)
    if target not in ("sandbox", "kubernetes"):
        raise SpecError("--target", target, "expected sandbox or kubernetes")
    plan = load_plan(plan_path or (DEFAULT_PLAN if target == "sandbox" else DEFAULT_KUBERNETES_PLAN))
    if canary_version is not None:
        plan = _with_version(plan, canary_version)
    slos = _check(plan, target)
    if target == "kubernetes" and not (prometheus and base_url):
        raise UsageError("--target kubernetes: --prometheus URL and --base-url URL are required")
    now = time.time()
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
    folder = (report or Path("build") / "gameday" / run_id).resolve()
    where, endpoints = _where(target, home, prometheus, base_url, kube_context, namespace, fmt)
    prepare = None
    if endpoints is not None:
        from openbell.gameday.calibrated import resolve as calibrated

        def prepare(p: Plan) -> tuple[Plan, list[dict[str, Any]]]:
            return calibrated(p, slos, endpoints, folder / "calibration", _say(fmt, "calibration"))

    from openbell.gameday.session import run_gameday

    screen = _Screen(enabled=fmt is Output.text)
    try:
        doc, code = run_gameday(plan, slos, where, run_id, folder, screen, screen.say, prepare)
    finally:
        screen.stop()
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text((folder / "junit.xml").read_text())
    if fmt is Output.json:
        print_json(doc)
    else:
        _summary(doc, folder)
    raise typer.Exit(code)


def _with_version(plan: Plan, version: str) -> Plan:
    import dataclasses

    from openbell.gameday.plan import VERSION, CanaryPhase

    if not VERSION.match(version):
        raise SpecError("--canary-version", version, "expected a version label without spaces")
    phases = tuple(dataclasses.replace(p, action=dataclasses.replace(p.action, version=version))
                   if isinstance(p.action, CanaryPhase) else p for p in plan.phases)
    return dataclasses.replace(plan, phases=phases)


def _check(plan: Plan, target: str) -> list[SLO]:
    """Every name the plan uses resolves, before anything starts (exit 2 naming the field)."""
    from openbell.chaos.catalogue import experiments_dir, list_experiments
    from openbell.gameday.plan import check_references
    from openbell.load.catalogue import list_profiles, profiles_dir
    from openbell.slo.loader import load_slos

    missing = [p for p in plan.slo_paths if not p.exists()]
    if missing:
        raise SpecError(str(plan.path), "spec.slo", f"no such file or folder: {missing[0]}")
    slos = load_slos(list(plan.slo_paths))
    profiles = [p.name for p in list_profiles(profiles_dir())]
    experiments = [e.name for e in list_experiments(experiments_dir(), target)]
    check_references(plan, target, {s.name for s in slos}, profiles, experiments)
    return slos


def _say(fmt: Output, who: str) -> Callable[[str], None]:
    err = console(stderr=True)

    def say(message: str) -> None:
        if fmt is Output.text:
            err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {who}: {message}")

    return say


def _where(target: str, home: Path | None, prometheus: str | None, base_url: str | None,
           kube_context: str | None, namespace: str | None, fmt: Output) -> tuple[Where, dict[str, str] | None]:
    """Where the phases act, and the sandbox's endpoints (None on Kubernetes)."""
    from openbell.gameday.runner import Where

    if target == "kubernetes":
        assert prometheus is not None
        return Where("kubernetes", prometheus.rstrip("/"), None, base_url, kube_context, namespace), None
    from openbell.sandbox.supervisor import up_and_settled
    from openbell.targets.platform import sandbox_layout

    lay = sandbox_layout(home)
    # The gate's preflight (is anything burning before the gameday?) is asked once the platform has settled.
    status = up_and_settled(lay, _say(fmt, "sandbox"))
    return Where("sandbox", status.endpoints["prometheus_url"], lay.home), status.endpoints


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class _Screen(Listener):
    """For people: a line per event on stderr, and a live table of the phases on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.err = console(stderr=True)
        self.live: Any = None
        self.last_draw = 0.0

    def say(self, message: str) -> None:
        if self.enabled:
            self.err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")

    def event(self, event: Event) -> None:
        colour = {"critical": "red", "warning": "yellow"}.get(event.severity, "cyan")
        where = f"{event.phase}: " if event.phase and not event.message.startswith(event.phase) else ""
        self.say(f"[{colour}]{event.kind:<13}[/] {escape(where + event.message)}")

    def line(self, phase: str, text: str) -> None:
        if self.enabled:
            self.err.print(f"[dim]{' ' * 9}{phase}:[/] [dim]{escape(text)}[/]")

    def tick(self, runs: Sequence[PhaseState], gate: Verdict | None, now: float) -> None:
        if not self.enabled or not self.err.is_terminal or now - self.last_draw < 1.0:
            return
        from rich.live import Live

        self.last_draw = now
        if self.live is None:
            self.live = Live(console=self.err, transient=True, auto_refresh=False)
            self.live.start()
        self.live.update(_table(runs, gate, now), refresh=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _table(runs: Sequence[PhaseState], gate: Verdict | None, now: float) -> Any:
    from rich.table import Table

    colours = {"pass": "green", "fail": "red", "error": "red", "stopped": "yellow", "interrupted": "yellow"}
    table = Table(title=f"gameday — SLO gate: {gate.outcome if gate else 'not asked yet'}", title_justify="left")
    for col in ("phase", "kind", "state", "elapsed", "what"):
        table.add_column(col)
    for r in runs:
        state = r.outcome or r.state
        elapsed = "" if r.started_at is None else f"{(r.finished_at or now) - r.started_at:.0f}s"
        table.add_row(r.phase.name, r.phase.kind, f"[{colours.get(state, 'cyan')}]{state}[/]", elapsed,
                      r.phase.summary())
    return table


def _summary(doc: dict[str, Any], folder: Path) -> None:
    from rich.table import Table

    out = console()
    v = doc["verdict"]
    colour = {"pass": "green", "fail": "red"}.get(v["outcome"], "yellow")
    out.print(f"gameday {doc['gameday']}: [bold {colour}]{v['outcome'].upper()}[/] in {doc['duration_s']:.0f}s — "
              f"{v['reason']}")
    table = Table(title="phases")
    for col in ("phase", "kind", "outcome", "duration", "reason"):
        table.add_column(col)
    for p in doc["phases"]:
        took = "" if p["duration_s"] is None else f"{p['duration_s']:.0f}s"
        table.add_row(p["name"], p["kind"], p["outcome"], took, (p["reason"] or "")[:120])
    out.print(table)
    budget = Table(title="error budget spent by the gameday")
    for col in ("SLO", "burn rate", "budget consumed", "outcome"):
        budget.add_column(col)
    for s in doc["slos"]:
        burn = "-" if s["burn_rate"] is None else f"{s['burn_rate']:.2f}x"
        spent = "-" if s["budget_consumed"] is None else f"{s['budget_consumed']:.3%}"
        budget.add_row(s["name"], burn, spent, s["outcome"])
    out.print(budget)
    for alert in doc["alerts"]:
        out.print(f"[red]alert fired[/] {alert['name']} ({alert['severity']}): runbook {alert['runbook']}")
    out.print(f"report: {folder / 'index.html'}")
    sys.stdout.flush()
