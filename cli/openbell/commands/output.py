"""Rendering shared by commands: the --output choice, JSON to stdout, one-line errors to stderr."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console


class Output(str, Enum):
    text = "text"
    json = "json"


@dataclass
class Settings:
    output: Output = Output.text
    verbose: bool = False


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()


def resolve(ctx: typer.Context, local: Output | None) -> Output:
    """A command's own --output wins over the global one."""
    return local if local is not None else settings(ctx).output


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output (CI logs, files) is not wrapped at 80 columns: lines stay greppable.
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def progress_lines() -> bool:
    """$OPENBELL_PROGRESS_LINES: progress as plain lines on stderr even with --output json (what a gameday
    reads from the tools it runs, to show their steps as they happen)."""
    import os

    return os.environ.get("OPENBELL_PROGRESS_LINES", "") not in ("", "0")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


OUTPUT_OPTION = typer.Option(None, "--output", "-O", help="text or json (overrides the global --output).")
