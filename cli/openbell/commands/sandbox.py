"""`openbell sandbox up|down|status|logs`: the trading platform as local processes on 127.0.0.1."""

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
    from openbell.slo.durations import parse_duration_s

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
