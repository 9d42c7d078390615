"""`openbell runbook list|show NAME`: what on-call reads when an alert fires."""

from __future__ import annotations

import typer

from openbell.commands.output import OUTPUT_OPTION, Output, console, print_json, resolve

app = typer.Typer(help="On-call runbooks, indexed by the alerts they answer.", no_args_is_help=True)
DIR = typer.Option(None, "--dir", help="Runbooks folder [env OPENBELL_RUNBOOKS, default ./runbooks].")


@app.command("list")
def list_(ctx: typer.Context, directory: str | None = DIR, output: Output | None = OUTPUT_OPTION) -> None:
    """Every runbook and the alerts it answers."""
    from rich.table import Table

    from openbell.runbooks.index import load_all, runbooks_dir

    books = load_all(runbooks_dir(directory))
    if resolve(ctx, output) is Output.json:
        print_json([{"name": b.name, "title": b.title, "path": str(b.path), "slo": b.slo, "alerts": list(b.alerts)}
                    for b in books])
        return
    table = Table(title="Runbooks")
    for col in ("name", "title", "alerts"):
        table.add_column(col)
    for b in books:
        table.add_row(b.name, b.title, "\n".join(b.alerts))
    console().print(table)


@app.command()
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Runbook file name, or the name of an alert it answers."),
    directory: str | None = DIR,
    output: Output | None = OUTPUT_OPTION,
) -> None:
    """Render a runbook in the terminal."""
    from rich.markdown import Markdown

    from openbell.runbooks.index import find, runbooks_dir

    book = find(runbooks_dir(directory), name)
    if resolve(ctx, output) is Output.json:
        print_json({"name": book.name, "title": book.title, "path": str(book.path), "alerts": list(book.alerts),
                    "markdown": book.body})
        return
    out = console()
    out.print(f"[bold]{book.title}[/]  ({book.path})")
    if book.alerts:
        out.print("answers: " + ", ".join(book.alerts))
    out.print(Markdown(book.body))
