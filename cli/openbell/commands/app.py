"""The `openbell` command: global options, sub-command groups, and the error -> exit code boundary."""

from __future__ import annotations

import sys

import typer

from openbell import __version__
from openbell.commands import canary, chaos, cluster, gameday, infra, load, runbook, sandbox, slo
from openbell.commands.output import Output, Settings
from openbell.errors import OpenbellError

app = typer.Typer(
    name="openbell",
    help="Reliability toolkit for real-time trading platforms: every risky action gated on SLO burn.\n\n"
    "Exit codes: 0 ok, 1 the gate said no, 2 bad input, 3 platform or tool unreachable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(slo.app, name="slo")
app.add_typer(runbook.app, name="runbook")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(load.app, name="load")
app.add_typer(canary.app, name="canary")
app.add_typer(infra.app, name="infra")
app.add_typer(chaos.app, name="chaos")
app.add_typer(cluster.app, name="cluster")
app.command("gameday")(gameday.gameday)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"openbell {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    output: Output = typer.Option(Output.text, "--output", "-O", help="text for people, json for machines."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show more detail (and tracebacks)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    ctx.obj = Settings(output=output, verbose=verbose)


def main() -> None:
    """Console entry point: user errors become one line on stderr and their exit code."""
    verbose = "-v" in sys.argv or "--verbose" in sys.argv
    try:
        app()
    except OpenbellError as exc:
        if verbose:
            raise
        sys.stderr.write(f"openbell: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("openbell: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
