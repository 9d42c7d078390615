"""`openbell canary`: progressive rollouts gated on SLO burn and a statistical judge, with rollback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from openbell.commands.output import OUTPUT_OPTION, Output, console, print_json, progress_lines, resolve
from openbell.errors import SpecError, UsageError

if TYPE_CHECKING:
    from rich.progress import Progress

    from openbell.canary.controller import Controller, Unhealthy
    from openbell.canary.machine import Event, Rollout
    from openbell.slo.model import SLO
    from openbell.slo.verdict import Verdict
    from openbell.targets.base import CanaryTarget, Traffic

app = typer.Typer(help="Canary rollouts: steps, holds, SLO-burn gate and judge, automatic rollback.",
                  no_args_is_help=True)

TARGET = typer.Option("sandbox", "--target", "-t", help="sandbox or kubernetes.")
HOME = typer.Option(None, "--home", help="Sandbox state directory [$OPENBELL_HOME or the default].")
NAMESPACE = typer.Option("openbell", "--namespace", help="Kubernetes namespace of the service.")
KUBE_CONTEXT = typer.Option(None, "--context", help="Kubeconfig context [current].")
PROMETHEUS = typer.Option(None, "--prometheus", help="Prometheus URL (required for kubernetes).")
SERVICE = typer.Argument(..., help="The service to roll out (gateway).")


def _target(service: str, target: str, home: Path | None, namespace: str, kube_context: str | None,
            prometheus: str | None, progress: Any = None) -> CanaryTarget:
    from openbell.canary.services import service as known
    from openbell.targets.platform import canary_target

    known(service)
    return canary_target(service, target, home, namespace, kube_context, prometheus, progress or (lambda _: None))


def parse_steps(text: str) -> tuple[int, ...]:
    from openbell.canary.machine import check_steps

    try:
        steps = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise SpecError("--steps", text, "expected comma-separated percentages, e.g. 10,25,50,100") from None
    why = check_steps(steps)
    if why:
        raise SpecError("--steps", text, why)
    return steps


def parse_tolerance(text: str, latency: float, errors: float) -> tuple[float, float]:
    """`latency=0.5,errors=0.05` (either part may be left out: its default stays), as (latency, errors)."""
    values = {"latency": latency, "errors": errors}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, raw = part.partition("=")
        if not sep or key.strip() not in values:
            raise SpecError("--tolerance", text, "expected latency=F and/or errors=F, shares in (0, 1), "
                                                 "e.g. latency=0.5,errors=0.05")
        try:
            values[key.strip()] = float(raw.rstrip("%")) / (100.0 if raw.endswith("%") else 1.0)
        except ValueError:
            raise SpecError("--tolerance", text, f"expected a number for {key.strip()}, got {raw!r}") from None
    return values["latency"], values["errors"]


def _duration(option: str, text: str) -> float:
    from openbell.durations import parse_duration_s

    try:
        value = parse_duration_s(text)
    except ValueError as exc:
        raise SpecError(option, text, str(exc)) from None
    if value <= 0:
        raise SpecError(option, text, "expected a positive duration, e.g. 60s")
    return value


class _Screen:
    """Progress for people on stderr: a line per timeline event, a bar for the current hold."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.err = console(stderr=True)
        self.progress: Progress | None = None
        self.task: Any = None
        self.step = -1

    def say(self, message: str) -> None:
        if self.enabled:
            self.err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")

    def event(self, rollout: Rollout, event: Event) -> None:
        colour = {"rollback": "red", "rolled_back": "red", "promoted": "green", "gate": "green",
                  "extend": "yellow", "verify": "red"}.get(event.kind, "cyan")
        self.say(f"[{colour}]{event.kind:<11}[/] {event.message}")

    def poll(self, rollout: Rollout, slo: Verdict | None, judge: Verdict | None, traffic: Traffic | None) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        if self.progress is None:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                     console=self.err, transient=True)
            self.progress.start()
        held = time.time() - rollout.step_started_at
        share = "n/a" if traffic is None or traffic.canary_share is None else f"{traffic.canary_share:.0%}"
        messages = (judge.figures.get("messages") or {}) if judge else {}
        msg_share = messages.get("canary_share")
        text = (f"step {rollout.step_index + 1}/{len(rollout.policy.steps)} {rollout.weight}% "
                f"(connections {share}, messages {'n/a' if msg_share is None else f'{msg_share:.0%}'}) "
                f"slo={slo.outcome if slo else '-'} judge={judge.outcome if judge else '-'}")
        if self.step != rollout.step_index or self.task is None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(text, total=rollout.policy.hold_s)
            self.step = rollout.step_index
        self.progress.update(self.task, description=text, completed=min(held, rollout.policy.hold_s))

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _controller(target: CanaryTarget, screen: _Screen, slos: list[SLO] | None, poll_s: float = 2.0,
                rollback_on_interrupt: bool = True, scrape_interval_s: float | None = None) -> Controller:
    from openbell.canary.controller import Controller, Listener
    from openbell.canary.telemetry import Spans

    class _Show(Listener):
        def event(self, rollout: Rollout, event: Event) -> None:
            screen.event(rollout, event)

        def poll(self, rollout: Rollout, slo: Verdict | None, judge: Verdict | None,
                 traffic: Traffic | None) -> None:
            screen.poll(rollout, slo, judge, traffic)

    gates = None
    if slos is not None:
        gates = _gates(target, slos, scrape_interval_s)
    return Controller(target=target, store=target.store(), gates=gates, poll_s=poll_s,
                      rollback_on_interrupt=rollback_on_interrupt, listener=_Show(), spans=Spans())


def _slos(service: str, slo_paths: list[Path]) -> list[SLO]:
    """The SLOs a canary of `service` is gated on (bad input exits 2 before anything is touched)."""
    from openbell.canary.services import applicable
    from openbell.canary.services import service as known
    from openbell.slo.loader import load_slos

    chosen = slo_paths or [p for p in [Path("slo")] if p.is_dir()]
    if not chosen:
        raise SpecError("--slo", "", "no SLO specs: pass --slo PATHS (or run where ./slo exists)")
    definition = known(service)
    slos = applicable(load_slos(chosen), definition)
    if not slos:
        raise SpecError("--slo", ",".join(map(str, chosen)), f"no SLO reads the {definition.job} job's series")
    return slos


def _gates(target: CanaryTarget, slos: list[SLO], scrape_interval_s: float | None) -> Any:
    from openbell.canary.gates import Gates
    from openbell.canary.services import service as known
    from openbell.metrics.prometheus import PrometheusClient

    definition = known(target.service)
    interval = scrape_interval_s
    if interval is None:
        interval = float(getattr(target, "scrape_interval_s", lambda: 15.0)())
    return Gates(PrometheusClient(target.prometheus_url()), definition, target.scope(), slos, interval)


def _result(rollout: Rollout, last: dict[str, Any] | None = None) -> dict[str, Any]:
    from openbell.canary.result import CanaryResult

    return CanaryResult.of(rollout, last).to_json()


def _junit(path: Path, rollout: Rollout) -> None:
    from openbell.report import junit

    cases = []
    steps = [e for e in rollout.events if e.kind == "step"]
    for i, event in enumerate(steps):
        end = steps[i + 1].at if i + 1 < len(steps) else (rollout.finished_at or event.at)
        failed_here = rollout.phase == "rolled_back" and i == len(steps) - 1
        cases.append(junit.Case(f"step {i + 1}: {event.weight}%", f"canary.{rollout.service}",
                                "fail" if failed_here else "pass", rollout.reason if failed_here else "",
                                time_s=max(0.0, end - event.at)))
    outcome = {"promoted": "pass", "rolled_back": "fail"}.get(rollout.phase, "inconclusive")
    cases.append(junit.Case(f"rollout of {rollout.version}", f"canary.{rollout.service}", outcome,
                            rollout.reason or rollout.phase,
                            time_s=(rollout.finished_at or time.time()) - rollout.started_at))
    junit.write(path, f"openbell canary {rollout.service} {rollout.version}", cases)


def _report(rollout: Rollout, out: Output, last: dict[str, Any] | None, junit: Path | None) -> None:
    from openbell.canary.machine import exit_code

    if junit is not None:
        _junit(junit, rollout)
    if out is Output.json:
        print_json(_result(rollout, last))
    else:
        con = console()
        colour = {"promoted": "green", "rolled_back": "red"}.get(rollout.phase, "yellow")
        con.print(f"[bold {colour}]{rollout.phase.upper()}[/] {rollout.service} {rollout.version}"
                  + (f": {rollout.reason}" if rollout.reason else ""))
        for event in rollout.events:
            if event.kind == "verify":
                con.print(f"  [red]{event.message}[/]")
    if rollout.done:
        raise typer.Exit(exit_code(rollout))
    raise typer.Exit(130 if rollout.events and rollout.events[-1].kind == "interrupted" else 1)


@app.command()
def run(
    ctx: typer.Context,
    service: str = SERVICE,
    version: str = typer.Option(..., "--version", help="The version to roll out (its version label)."),
    steps: str = typer.Option("10,25,50,100", "--steps", help="Canary weights, percent, increasing."),
    hold: str = typer.Option("60s", "--hold", help="How long each step holds while the gates are polled."),
    interval: str = typer.Option("2s", "--interval", help="How often the gates are asked during a hold."),
    max_extension: str = typer.Option("60s", "--max-extension",
                                      help="How long an inconclusive step may extend its hold."),
    on_inconclusive: str = typer.Option("fail", "--on-inconclusive",
                                        help="fail (roll back) or pass, once the extension is used up."),
    on_burning: str = typer.Option("refuse", "--on-burning",
                                   help="refuse to start while the fleet already burns (default), or proceed (a "
                                        "fix for that very burn: what burned before is reported, not counted)."),
    judge: str = typer.Option("sequential", "--judge",
                              help="sequential: each step ends as soon as the canary is shown no worse than stable "
                                   "within the tolerance (--hold is the most, --min-hold the least), rolls back as "
                                   "soon as it is shown worse; fixed: every step holds --hold, then a Mann-Whitney "
                                   "comparison of rate samples decides."),
    min_hold: str | None = typer.Option(None, "--min-hold",
                                        help="Sequential judge: the least a step holds [5s, or --hold if shorter]."),
    alpha: float = typer.Option(0.01, "--alpha",
                                help="Sequential judge: the chance of a wrong rollback (or a wrong acceptance) "
                                     "over the whole rollout, however often the judge is asked."),
    tolerance: str = typer.Option("latency=0.5,errors=0.05", "--tolerance",
                                  help="Sequential judge: how much worse is still accepted: the share of the "
                                       "canary's events slower than any latency boundary, and the share failed, "
                                       "above stable's (percentage points as shares)."),
    churn: bool = typer.Option(True, "--churn/--no-churn",
                               help="Drain stable WebSockets so each step's weight is reached by open connections."),
    probe_rate: float = typer.Option(0.0, "--probe-rate", min=0.0, max=1000.0,
                                     help="Synthetic requests a second to the canary and as many to stable during "
                                          "the rollout (a load tester, for a service too quiet to judge) [0: off]."),
    target: str = TARGET,
    slo: list[Path] = typer.Option([], "--slo", help="SLO specs [default ./slo]."),
    fault: list[str] = typer.Option([], "--sandbox-fault", help="Canary fault, e.g. error_rate=0.05 or latency_ms=80."),
    rollback_on_interrupt: bool = typer.Option(True, "--rollback-on-interrupt/--no-rollback-on-interrupt",
                                               help="Ctrl-C rolls back (default) or leaves the run resumable."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here (a case per step)."),
    home: Path | None = HOME,
    namespace: str = NAMESPACE,
    kube_context: str | None = KUBE_CONTEXT,
    prometheus: str | None = PROMETHEUS,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Roll SERVICE out at VERSION step by step; roll back at once when a gate fails.

    Exit 0 promoted, 1 rolled back (with the reason), 2 bad input, 3 target unreachable, 130 interrupted
    without rollback (resumable).
    """
    from openbell.canary.machine import ERROR_TOLERANCE, JUDGES, LATENCY_TOLERANCE, Policy, check_judge
    from openbell.targets.sandbox import parse_faults

    out = resolve(ctx, output)
    if on_inconclusive not in ("fail", "pass"):
        raise SpecError("--on-inconclusive", on_inconclusive, "expected fail or pass")
    if on_burning not in ("refuse", "proceed"):
        raise SpecError("--on-burning", on_burning, "expected refuse or proceed")
    if not version.strip() or any(c.isspace() for c in version):
        raise SpecError("--version", version, "expected a non-empty version label without spaces")
    if judge not in JUDGES:
        raise SpecError("--judge", judge, f"expected one of {', '.join(JUDGES)}")
    latency_tolerance, error_tolerance = parse_tolerance(tolerance, LATENCY_TOLERANCE, ERROR_TOLERANCE)
    why = check_judge(alpha, latency_tolerance, error_tolerance)
    if why:
        raise SpecError("--alpha" if "alpha" in why else "--tolerance", f"{alpha:g}" if "alpha" in why else tolerance,
                        why)
    hold_s = _duration("--hold", hold)
    min_hold_s = min(5.0, hold_s) if min_hold is None else _duration("--min-hold", min_hold)
    if min_hold is not None and min_hold_s > hold_s:
        raise SpecError("--min-hold", min_hold, f"expected at most --hold ({hold})")
    policy = Policy(steps=parse_steps(steps), hold_s=hold_s,
                    max_extension_s=_duration("--max-extension", max_extension),
                    inconclusive=on_inconclusive, churn=churn, probe_rate_per_s=probe_rate,  # type: ignore[arg-type]
                    judge=judge, min_hold_s=min_hold_s, alpha=alpha,
                    latency_tolerance=latency_tolerance, error_tolerance=error_tolerance)
    poll_s = _duration("--interval", interval)
    faults = parse_faults(fault)
    if faults and target != "sandbox":
        raise UsageError("--sandbox-fault: fault injection exists only on the sandbox target")
    screen = _Screen(enabled=out is Output.text or progress_lines())
    tgt = _target(service, target, home, namespace, kube_context, prometheus, screen.say)
    slos = _slos(service, slo)
    tgt.check()
    if probe_rate > 0:
        tgt.probe_endpoints()  # a target that cannot probe refuses here, before anything changes
    controller = _controller(tgt, screen, slos, poll_s, rollback_on_interrupt)
    if version == tgt.stable_version():
        raise SpecError("--version", version, f"expected a version other than the stable one ({version})")
    from openbell.canary.controller import Unhealthy

    try:
        rollout = controller.run(version, policy, faults, on_burning)
    except Unhealthy as exc:
        screen.stop()
        _report_unhealthy(service, version, exc, out, junit)
    finally:
        screen.stop()
    _report(rollout, out, controller.last, junit)


def _report_unhealthy(service: str, version: str, exc: Unhealthy, out: Output, junit: Path | None) -> None:
    """The fleet burned before the rollout: nothing started. What burns, since when, the runbook; exit 1."""
    lines = [b.line(exc.now) for b in exc.burning]
    reason = "unhealthy before the rollout, nothing started: " + "; ".join(lines)
    if junit is not None:
        from openbell.report import junit as junit_xml

        junit_xml.write(junit, f"openbell canary {service} {version}", [
            junit_xml.Case("fleet healthy before the rollout", f"canary.{service}", "fail", reason)])
    if out is Output.json:
        from openbell.canary.result import CanaryResult

        print_json(CanaryResult(service, version, outcome="unhealthy", exit_code=1, reason=reason,
                                burning=tuple(b.to_dict() for b in exc.burning)).to_json())
    else:
        con = console()
        con.print(f"[bold magenta]UNHEALTHY[/] {service} {version}: the fleet burns its error budget; "
                  "the rollout did not start (--on-burning proceed to roll out a fix for that burn)")
        for line in lines:
            con.print(f"  - {line}")
    raise typer.Exit(1)


@app.command()
def resume(
    ctx: typer.Context,
    service: str = SERVICE,
    target: str = TARGET,
    slo: list[Path] = typer.Option([], "--slo", help="SLO specs [default ./slo]."),
    rollback_on_interrupt: bool = typer.Option(True, "--rollback-on-interrupt/--no-rollback-on-interrupt"),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here."),
    home: Path | None = HOME,
    namespace: str = NAMESPACE,
    kube_context: str | None = KUBE_CONTEXT,
    prometheus: str | None = PROMETHEUS,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Continue a rollout that stopped (crash, kill, or an interrupt without rollback) from where it was:
    a step's hold starts again; an unfinished promotion or rollback is carried out."""
    out = resolve(ctx, output)
    screen = _Screen(enabled=out is Output.text or progress_lines())
    tgt = _target(service, target, home, namespace, kube_context, prometheus, screen.say)
    slos = _slos(service, slo)
    tgt.check()
    controller = _controller(tgt, screen, slos, rollback_on_interrupt=rollback_on_interrupt)
    try:
        rollout = controller.resume()
    finally:
        screen.stop()
    _report(rollout, out, controller.last, junit)


def _operator_command(ctx: typer.Context, service: str, target: str, home: Path | None, namespace: str,
                      kube_context: str | None, prometheus: str | None, output: Output | None, command: str) -> None:
    out = resolve(ctx, output)
    screen = _Screen(enabled=out is Output.text or progress_lines())
    tgt = _target(service, target, home, namespace, kube_context, prometheus, screen.say)
    controller = _controller(tgt, screen, None)
    tgt.check()
    rollout = controller.abort() if command == "abort" else controller.promote()
    _report(rollout, out, controller.last, None)


@app.command()
def abort(
    ctx: typer.Context,
    service: str = SERVICE,
    target: str = TARGET,
    home: Path | None = HOME,
    namespace: str = NAMESPACE,
    kube_context: str | None = KUBE_CONTEXT,
    prometheus: str | None = PROMETHEUS,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Roll back now (through the running controller if there is one). Exit 1: the rollout did not promote."""
    _operator_command(ctx, service, target, home, namespace, kube_context, prometheus, output, "abort")


@app.command()
def promote(
    ctx: typer.Context,
    service: str = SERVICE,
    target: str = TARGET,
    home: Path | None = HOME,
    namespace: str = NAMESPACE,
    kube_context: str | None = KUBE_CONTEXT,
    prometheus: str | None = PROMETHEUS,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Skip the remaining holds and promote the canary now (through the running controller if there is one)."""
    _operator_command(ctx, service, target, home, namespace, kube_context, prometheus, output, "promote")


@app.command()
def status(
    ctx: typer.Context,
    service: str = typer.Argument("gateway", help="The service [gateway]."),
    target: str = TARGET,
    home: Path | None = HOME,
    namespace: str = NAMESPACE,
    kube_context: str | None = KUBE_CONTEXT,
    prometheus: str | None = PROMETHEUS,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Where the service's last rollout stands: phase, step, weight, live canary share, who runs it.

    Exit 0 when no rollout is unfinished (or none was recorded), 1 when one stopped midway."""
    from openbell.canary.machine import Rollout

    out = resolve(ctx, output)
    tgt = _target(service, target, home, namespace, kube_context, prometheus)
    store = tgt.store()
    doc = store.load()
    holder = getattr(store, "holder", lambda: None)()
    live: dict[str, Any] = {}
    try:
        tgt.check()
        live = {"weight": tgt.weight(), "traffic": tgt.traffic().to_dict(), "canary_running": tgt.canary_running()}
    except Exception as exc:
        live = {"error": str(exc)}
    if not doc or "rollout" not in doc:
        # Nothing recorded, but the router may still say something (a canary left by hand): show it.
        if out is Output.json:
            print_json({"service": service, "rollout": None, "live": live})
        else:
            console().print(f"no rollout of {service} recorded on {tgt.name}; live: "
                            + (live["error"] if "error" in live else
                               f"router weight {live['weight']}%, canary running: {live['canary_running']}"))
        raise typer.Exit(0)
    rollout = Rollout.from_dict(doc["rollout"])
    stopped = not rollout.done and holder is None
    data = _result(rollout, doc.get("last")) | {"running": holder, "stopped_midway": stopped, "live": live}
    if out is Output.json:
        print_json(data)
    else:
        from rich.table import Table

        con = console()
        state = rollout.phase + (" (running: " + holder + ")" if holder else " (stopped midway)" if stopped else "")
        con.print(f"[bold]{service}[/] {rollout.version} on {rollout.target}: {state}; step "
                  f"{rollout.step_index + 1}/{len(rollout.policy.steps)}, weight {rollout.weight}%"
                  + (f"; {rollout.reason}" if rollout.reason else ""))
        if live.get("traffic"):
            t = live["traffic"]
            share = "n/a" if t["canary_share"] is None else f"{t['canary_share']:.0%}"
            con.print(f"live: router weight {live['weight']}%, connections stable {t['stable_connections']} / "
                      f"canary {t['canary_connections']} (share {share})")
        elif live.get("error"):
            con.print(f"live: {live['error']}")
        table = Table("time (UTC)", "event", "weight", "message", box=None)
        for event in rollout.events[-15:]:
            table.add_row(time.strftime("%H:%M:%S", time.gmtime(event.at)), event.kind,
                          "" if event.weight is None else f"{event.weight}%", event.message)
        con.print(table)
        if stopped:
            con.print(f"continue with `openbell canary resume {service}` or roll back with "
                      f"`openbell canary abort {service}`")
    raise typer.Exit(1 if stopped else 0)
