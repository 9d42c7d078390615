"""`openbell load list|run|render`: k6 market-open profiles against the sandbox, a URL or the cluster."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from openbell.commands.output import OUTPUT_OPTION, Output, console, print_json, resolve
from openbell.errors import EXIT_GATE_FAILED, SpecError

if TYPE_CHECKING:
    from openbell.load.catalogue import Profile
    from openbell.load.runner import RunOptions, RunResult
    from openbell.slo.model import SLO
    from openbell.slo.verdict import Verdict
    from openbell.targets.platform import Entry

app = typer.Typer(help="k6 load profiles (nyse-open, london-open, fomc-spike, soak), gated on SLO burn.",
                  no_args_is_help=True)
PROFILES = typer.Option(None, "--profiles", help="Profiles folder [env OPENBELL_PROFILES, default ./loadprofiles].")
EXIT_INTERRUPTED = 130


@app.command("list")
def list_(ctx: typer.Context, profiles: str | None = PROFILES, output: Output | None = OUTPUT_OPTION) -> None:
    """The profiles and what each models."""
    from rich.table import Table

    from openbell.load.catalogue import list_profiles, profiles_dir

    found = list_profiles(profiles_dir(profiles))
    if resolve(ctx, output) is Output.json:
        print_json([{"name": p.name, "description": p.description, "path": str(p.path)} for p in found])
        return
    table = Table(title="Load profiles")
    for col in ("name", "description"):
        table.add_column(col)
    for p in found:
        table.add_row(p.name, p.description)
    console().print(table)


def _positive(option: str, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise SpecError(option, f"{value:g}", "expected a number above 0")
    return value


@app.command()
def run(
    ctx: typer.Context,
    profile_name: str = typer.Argument(..., metavar="PROFILE", help="A profile name or a path to a k6 script."),
    target: str = typer.Option("sandbox", "--target", "-t", help="sandbox, or the platform's http(s) URL."),
    scale: float | None = typer.Option(None, "--scale", help="Fraction of production users (profile default)."),
    time_scale: float | None = typer.Option(None, "--time-scale", help="Compression of wall time (1 = real)."),
    slo: list[Path] = typer.Option([], "--slo", help="SLO specs for thresholds and the gate [default ./slo]."),
    prometheus: str | None = typer.Option(None, "--prometheus", help="Prometheus for the gate [sandbox's]."),
    gate_interval: str = typer.Option("15s", "--gate-interval", help="How often the gate is asked while k6 runs."),
    no_gate: bool = typer.Option(False, "--no-gate", help="Judge on k6 thresholds only."),
    summary: Path | None = typer.Option(None, "--summary", help="Write k6's summary export (JSON) here."),
    env: list[str] = typer.Option([], "--env", "-e", help="Extra script env KEY=VALUE (repeatable), e.g. "
                                  "FEED_URL=... or SYMBOLS=A,B for a URL target without the sandbox's feed."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here (thresholds, SLO gate)."),
    profiles: str | None = PROFILES,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Run a profile with k6: thresholds from the SLOs, the SLO gate polled during and after the run.

    Exit 0 pass, 1 a threshold or the gate failed, 2 bad profile/script/arguments (k6's error line),
    3 target or k6 unreachable, 130 interrupted (k6 still writes a partial summary).
    """
    import tempfile

    from openbell.durations import parse_duration_s
    from openbell.load.catalogue import find, profiles_dir
    from openbell.load.runner import RunOptions, check_reachable, planned_duration_s, safe_gate
    from openbell.load.thresholds import thresholds_for
    from openbell.targets.platform import entry

    profile = find(profile_name, profiles_dir(profiles))
    _positive("--scale", scale)
    _positive("--time-scale", time_scale)
    try:
        interval = parse_duration_s(gate_interval)
    except ValueError as exc:
        raise SpecError("--gate-interval", gate_interval, str(exc)) from None
    slos = _slos(slo)
    resolved = entry(target, prometheus)
    check_reachable(resolved)
    gate = None
    if slos and resolved.prometheus_url and not no_gate:
        gate = safe_gate(_gate(resolved.prometheus_url, slos))
    workdir = Path(tempfile.mkdtemp(prefix="openbell-load-"))
    options = RunOptions(scale, time_scale, thresholds_for(slos), summary or workdir / "summary.json",
                         workdir / "k6.log", gate, interval, _env_pairs(env))
    fmt = resolve(ctx, output)
    result = _run_with_progress(profile, resolved, options, planned_duration_s, fmt)
    if result.error:
        raise SpecError(f"k6 ({profile.path})", "", result.error)
    after = gate() if gate is not None and not result.interrupted else None
    from openbell.load.verdict import load_verdict

    verdict = load_verdict(result, after)
    if junit is not None:
        _write_junit(junit, profile.name, verdict)
    if fmt is Output.json:
        from openbell.load.result import LoadResult

        print_json(LoadResult(profile.name, resolved.name, str(options.summary_path), str(options.log_path),
                              verdict).to_json())
    else:
        _render(profile.name, verdict, options.summary_path)
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if not verdict.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


def _slos(paths: list[Path]) -> list[SLO]:
    """The SLOs of --slo, else of ./slo when there is one."""
    from openbell.slo.loader import load_slos

    chosen = paths or [p for p in [Path("slo")] if p.is_dir()]
    return load_slos(chosen) if chosen else []


def _env_pairs(values: list[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise SpecError("--env", value, "expected KEY=VALUE, e.g. SYMBOLS=AAPL,MSFT")
        pairs[key] = val
    return pairs


def _gate(prometheus_url: str, slos: list[SLO]) -> Callable[[], Verdict]:
    from openbell.metrics.prometheus import PrometheusClient
    from openbell.slo.evaluate import evaluate

    def ask() -> Verdict:
        with PrometheusClient(prometheus_url) as client:
            verdict, _ = evaluate(client, slos, severity="page")
        return verdict

    return ask


def _run_with_progress(profile: Profile, resolved: Entry, options: RunOptions,
                       planned: Callable[..., float | None], fmt: Output) -> RunResult:
    import dataclasses

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from openbell.load.runner import LiveStats, deadline_s, k6_binary, k6_env, run

    total = planned(k6_binary(), profile, k6_env(resolved, options))
    options = dataclasses.replace(options, deadline_s=deadline_s(total))
    columns = [TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn()]
    err = console(stderr=True)
    # Live only on a terminal: piped into a CI log, the bar would be noise (the verdict says it all).
    with Progress(*columns, console=err, disable=fmt is Output.json or not err.is_terminal, transient=True) as bar:
        task = bar.add_task(f"k6 {profile.name}", total=total or None)
        last: list[LiveStats] = []

        def show(stats: LiveStats) -> None:
            prev = last[-1] if last else None
            dt = stats.elapsed_s - prev.elapsed_s if prev else 0.0
            rps = (stats.http_reqs - prev.http_reqs) / dt if prev and dt > 0 else 0.0
            mps = (stats.ws_messages - prev.ws_messages) / dt if prev and dt > 0 else 0.0
            p95 = f"{stats.push_p95_ms:.0f} ms" if stats.push_p95_ms is not None else "-"
            bar.update(task, completed=stats.elapsed_s,
                       description=f"k6 {profile.name}: {stats.vus} users, {rps:.0f} req/s, {mps:.0f} msg/s, "
                                   f"push p95 {p95}")
            last[:] = [stats]

        return run(profile, resolved, options, show)


def _render(name: str, verdict: Verdict, summary_path: Path) -> None:
    from rich.table import Table

    out = console()
    colour = {"pass": "green", "fail": "red"}.get(verdict.outcome, "yellow")
    out.print(f"load {name}: [{colour}]{verdict.outcome}[/]")
    for reason in verdict.reasons:
        out.print(f"  - {reason}")
    table = Table(title="figures")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in verdict.figures.items():
        if isinstance(value, int | float):
            table.add_row(key, f"{value:g}")
    out.print(table)
    out.print(f"k6 summary: {summary_path}")


def _write_junit(path: Path, name: str, verdict: Verdict) -> None:
    from openbell.report.junit import Case, render

    cases = [Case(f"{t['metric']} {t['threshold']}", f"load.{name}", "pass" if t["passed"] else "fail",
                  message=f"observed {t['observed']}") for t in verdict.figures.get("thresholds", [])]
    gate = verdict.figures.get("slo_gate")
    if gate:
        cases.append(Case("slo gate after the run", f"load.{name}", gate["outcome"], "; ".join(gate["reasons"])))
    cases.append(Case("verdict", f"load.{name}", verdict.outcome, "; ".join(verdict.reasons)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(f"openbell load {name}", cases))
    sys.stderr.write(f"wrote JUnit XML to {path}\n")


@app.command("render")
def render_cmd(
    profile_name: str = typer.Argument(..., metavar="PROFILE"),
    parallelism: int = typer.Option(4, "--parallelism", "-n", help="k6 runner pods."),
    namespace: str = typer.Option("loadtest", "--namespace"),
    base_url: str = typer.Option("http://gateway.trading.svc.cluster.local", "--base-url",
                                 help="The platform's entry point as seen from the runner pods."),
    scale: float | None = typer.Option(None, "--scale"),
    time_scale: float | None = typer.Option(None, "--time-scale"),
    slo: list[Path] = typer.Option([], "--slo", help="SLO specs for thresholds [default ./slo]."),
    target: str = typer.Option("print", "--target", help="print (YAML to stdout) or kubernetes (apply)."),
    env: list[str] = typer.Option([], "--env", "-e", help="Extra script env KEY=VALUE (repeatable), e.g. "
                                  "FEED_URL=http://feed.trading.svc:8080 for the feed's universe and schedule."),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig"),
    profiles: str | None = PROFILES,
) -> None:
    """A k6-operator TestRun (and the ConfigMap with the script) for a distributed run on the cluster."""
    import json

    import yaml

    from openbell.load.catalogue import find, profiles_dir
    from openbell.load.render import apply, configmap, object_name, testrun
    from openbell.load.thresholds import thresholds_for

    if target not in ("print", "kubernetes"):
        raise SpecError("--target", target, "expected print or kubernetes")
    profile = find(profile_name, profiles_dir(profiles))
    script_env = {"BASE_URL": base_url.rstrip("/"),
                  "WS_URL": base_url.rstrip("/").replace("http", "ws", 1) + "/ws",
                  "OPENBELL_THRESHOLDS": json.dumps(thresholds_for(_slos(slo))),
                  **_env_pairs(env)}
    if scale is not None:
        script_env["SCALE"] = f"{_positive('--scale', scale):g}"
    if time_scale is not None:
        script_env["TIME_SCALE"] = f"{_positive('--time-scale', time_scale):g}"
    name = object_name(profile)
    objects = [configmap(profile, name, namespace), testrun(profile, name, namespace, parallelism, script_env)]
    if target == "kubernetes":
        for applied in apply(objects, kubeconfig):
            console().print(f"applied {applied}")
        return
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, width=120))
