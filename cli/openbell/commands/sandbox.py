"""`openbell sandbox up|down|status|logs|calibrate`: the trading platform as local processes on 127.0.0.1."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from openbell.commands.output import OUTPUT_OPTION, Output, console, print_json, resolve
from openbell.errors import EXIT_UNREACHABLE, SpecError

if TYPE_CHECKING:
    from openbell.load.calibrate import Calibration
    from openbell.sandbox.layout import Layout
    from openbell.sandbox.supervisor import SandboxStatus

app = typer.Typer(help="The platform on this machine: Kafka, PostgreSQL, ClickHouse engine, feed, enricher, "
                  "ledger, gateways behind HAProxy, Prometheus.", no_args_is_help=True)
HOME = typer.Option(None, "--home",
                    help="State directory [env OPENBELL_HOME, default ~/.local/state/openbell/sandbox].")


def _layout(home: Path | None) -> Layout:
    from openbell.sandbox.layout import Layout, default_home

    return Layout(home.expanduser().resolve() if home else default_home())


def _duration(option: str, text: str) -> float:
    from openbell.durations import parse_duration_s

    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise SpecError(option, "", str(exc)) from None


def _pinned(values: list[str]) -> dict[str, int]:
    pinned = {}
    for value in values:
        name, _, port = value.partition("=")
        if not name or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
            raise SpecError("--port", value, "expected NAME=PORT, e.g. haproxy=8080")
        pinned[name] = int(port)
    return pinned


@app.command()
def up(
    ctx: typer.Context,
    gateway_replicas: int | None = typer.Option(None, "--gateway-replicas", min=1, max=16,
                                                help="Stable gateway replicas [default 2]."),
    scrape_interval: str | None = typer.Option(None, "--scrape-interval",
                                               help="Prometheus scrape and rule interval [default 1s]."),
    feed_rate: float | None = typer.Option(None, "--feed-rate", min=1.0,
                                           help="Ticks per second from the feed [default 100]."),
    timeout: str = typer.Option("120s", "--timeout", help="Give up when not all healthy by then."),
    port: list[str] = typer.Option([], "--port", help="Pin a port, NAME=PORT (repeatable), e.g. haproxy=8080."),
    home: Path | None = HOME,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Start the platform (idempotent: what already runs is kept) and wait until every part is healthy."""
    from openbell.sandbox.supervisor import UpOptions
    from openbell.sandbox.supervisor import up as do_up

    interval = _duration("--scrape-interval", scrape_interval) if scrape_interval is not None else None
    options = UpOptions(gateway_replicas=gateway_replicas, scrape_interval_s=interval, feed_rate=feed_rate,
                        timeout_s=_duration("--timeout", timeout), pinned_ports=_pinned(port))
    fmt = resolve(ctx, output)
    err = console(stderr=True)
    started = time.monotonic()
    with err.status("sandbox up", spinner="dots") as spinner:
        def progress(message: str) -> None:
            spinner.update(f"sandbox up: {message}")
            if fmt is Output.text:
                err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")
        result = do_up(_layout(home), options, progress)
    elapsed = time.monotonic() - started
    if fmt is Output.json:
        print_json({**result.to_json(), "elapsed_s": round(elapsed, 2)})
    else:
        _render(result)
        console().print(f"sandbox {result.state} in {elapsed:.1f} s; `openbell sandbox status`, "
                        "`openbell sandbox down`")
    if result.state != "up":
        raise typer.Exit(EXIT_UNREACHABLE)


@app.command()
def down(
    ctx: typer.Context,
    purge: bool = typer.Option(False, "--purge", help="Also delete data, logs and configs."),
    home: Path | None = HOME,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Stop everything the sandbox started, by pid, and sweep up leftovers of a crash."""
    from openbell.sandbox.supervisor import down as do_down

    fmt = resolve(ctx, output)
    err = console(stderr=True)
    report = do_down(_layout(home), purge,
                     (lambda m: err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {m}")) if fmt is Output.text
                     else (lambda _: None))
    if fmt is Output.json:
        print_json({"stopped": report.stopped, "killed": report.killed, "orphans": report.orphans,
                    "purged": report.purged})
        return
    parts = [f"stopped {len(report.stopped)}"]
    if report.killed:
        parts.append(f"killed after timeout: {', '.join(report.killed)}")
    if report.orphans:
        parts.append(f"swept {len(report.orphans)} leftover processes")
    if report.purged:
        parts.append("data purged")
    console().print("sandbox down: " + "; ".join(parts))


@app.command()
def status(
    ctx: typer.Context,
    home: Path | None = HOME,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Every component: pid, address, health from its own endpoint, version. Exit 0 only when all healthy."""
    from openbell.sandbox.supervisor import status as do_status

    result = do_status(_layout(home))
    if resolve(ctx, output) is Output.json:
        print_json(result.to_json())
    elif not result.components:
        console().print(f"no sandbox at {result.home}; `openbell sandbox up` starts one")
    else:
        _render(result)
    if result.state != "up":
        raise typer.Exit(EXIT_UNREACHABLE)


@app.command()
def logs(
    name: str = typer.Argument(..., help="Component, e.g. kafka, postgres, gateway-1 (see `sandbox status`)."),
    lines: int = typer.Option(50, "--lines", "-n", min=1, help="How many of the last lines."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C stops)."),
    home: Path | None = HOME,
) -> None:
    """A component's log: its last lines, or follow it."""
    from openbell.sandbox.processes import tail
    from openbell.sandbox.supervisor import component_names

    lay = _layout(home)
    names = component_names(lay)
    if name not in names:
        raise SpecError("sandbox logs", name, f"unknown component; expected one of {', '.join(names)}")
    path = lay.log(name)
    for line in tail(path, lines):
        sys.stdout.write(line + "\n")
    if not follow:
        return
    sys.stdout.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)  # following a component that has not logged yet waits for its first line
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        try:
            while True:
                chunk = handle.read()
                if chunk:
                    sys.stdout.write(chunk.decode(errors="replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.25)
        except KeyboardInterrupt:
            return


def _render(result: SandboxStatus) -> None:
    from rich.table import Table

    table = Table(title=f"sandbox {result.state}: {result.home}")
    for col in ("component", "pid", "address", "health", "version"):
        table.add_column(col)
    for c in result.components:
        mark = "[green]healthy[/]" if c.health.healthy else f"[red]{c.health.detail or 'unhealthy'}[/]"
        if c.health.healthy and c.health.detail not in ("ready", ""):
            mark += f" ({c.health.detail})"
        table.add_row(c.name, str(c.pid or "-"), c.address, mark, c.health.version or "-")
    console().print(table)
    if result.endpoints:
        for key in ("market_url", "websocket_url", "prometheus_url", "kafka_bootstrap", "postgres_dsn"):
            console().print(f"  {key:15} {result.endpoints[key]}")


@app.command()
def calibrate(
    ctx: typer.Context,
    profile: str = typer.Option("nyse-open", "--profile", help="The load profile whose peak is calibrated."),
    time_scale: float = typer.Option(0.05, "--time-scale", min=0.0001, max=10.0,
                                     help="Session lengths as the gameday compresses them (its time_scale)."),
    start: float = typer.Option(0.00025, "--start", min=0.00001, max=1.0, help="The first scale tried."),
    max_scale: float = typer.Option(0.016, "--max-scale", min=0.00001, max=10.0, help="The largest scale tried."),
    hold: str = typer.Option("30s", "--hold", help="How long each level holds the peak (after a 5 s ramp)."),
    force: bool = typer.Option(False, "--force", help="Measure again even when a calibration is kept."),
    slo: list[Path] = typer.Option([], "--slo", help="The SLOs that must hold [default ./slo]."),
    home: Path | None = HOME,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Measure the largest load at which every SLO holds on this machine, and keep it for the default gameday.

    Each level runs the profile's peak (its most traders, its peak orders, the feed at its peak) at one scale
    for --hold on the sandbox (brought up if needed); it holds when every SLO's error ratio over it is within
    its budget and the load generator kept up. Levels double from --start while they hold, then one level
    between the last that held and the first that did not. The result is kept per machine, platform code and
    profile ($OPENBELL_CALIBRATION_DIR, default ~/.cache/openbell/calibration): a gameday whose load says
    `scale: calibrated` runs at (at most) half of it. Exit 0 a capacity was found, 1 not even --start held,
    2 bad input, 3 the sandbox or k6 unreachable.
    """
    from openbell.load import calibrate as cal
    from openbell.slo.loader import load_slos

    fmt = resolve(ctx, output)
    if start > max_scale:
        raise SpecError("--start", f"{start:g}", f"expected at most --max-scale ({max_scale:g})")
    hold_s = _duration("--hold", hold)
    if not 10.0 <= hold_s <= 600.0:
        raise SpecError("--hold", hold, "expected between 10s and 10m")
    chosen = slo or [p for p in [Path("slo")] if p.is_dir()]
    if not chosen:
        raise SpecError("--slo", "", "no SLO specs: pass --slo PATHS (or run where ./slo exists)")
    slos = load_slos(chosen)
    err = console(stderr=True)

    def say(message: str) -> None:
        if fmt is Output.text:
            err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")

    from openbell.sandbox.supervisor import up_and_settled

    lay = _layout(home)
    status = up_and_settled(lay, say)
    settings = cal.Settings(start=start, max_scale=max_scale, hold_s=hold_s, time_scale=time_scale)
    found, cached = cal.ensure(profile, status.endpoints, slos, lay.home / "calibration", settings, force, say)
    path = cal.cache_path(found.profile, found.fingerprint)
    if fmt is Output.json:
        print_json({**found.to_dict(), "cached": cached, "file": str(path),
                    "default_scale": found.scale_for(cal.DEFAULT_FRACTION) if found.capacity_scale else None})
    else:
        _render_calibration(found, cached, path)
    if found.capacity_scale is None:
        raise typer.Exit(1)


def _render_calibration(found: Calibration, cached: bool, path: Path) -> None:
    from rich.table import Table

    from openbell.load.calibrate import DEFAULT_FRACTION

    out = console()
    table = Table(title=f"{found.profile}: its peak held at each scale on this machine")
    for col in ("scale", "traders", "records/s", "worst SLO (burn)", "client delay p99", "held", "why"):
        table.add_column(col, justify="right" if col in ("scale", "traders", "records/s", "client delay p99")
                         else "left")
    for level in found.levels:
        k6 = level.figures.get("k6") or {}
        judged = {k: v for k, v in (level.figures.get("slos") or {}).items() if v}
        worst = max(judged.items(), key=lambda kv: kv[1]["burn_rate"], default=None)
        delay = level.figures.get("client_delay_p99_ms")
        table.add_row(f"{level.scale:g}", f"{k6.get('vus_max', '-')}", f"{k6.get('ws_messages_per_s', 0):,.0f}",
                      f"{worst[0]} ({worst[1]['burn_rate']:.2f}x)" if worst else "-",
                      "-" if delay is None else f"{delay:g} ms",
                      "[green]yes[/]" if level.holds else "[red]no[/]",
                      "" if level.holds else "; ".join(level.reasons))
    out.print(table)
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(found.measured_at))
    if found.capacity_scale is None:
        out.print(f"[bold red]no capacity[/]: not even the smallest level held (measured {when}Z)")
        return
    out.print(f"capacity: [bold]{'at least ' if found.capped else ''}{found.capacity_scale:g}[/] of production "
              f"(measured {when}Z{', kept' if cached else ''}); the default gameday runs at "
              f"{DEFAULT_FRACTION:.0%} of it: scale {found.scale_for(DEFAULT_FRACTION):g}")
    out.print(f"kept in {path}")
