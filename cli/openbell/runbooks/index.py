"""Runbooks are Markdown files whose YAML front matter names the alerts they answer.

    ---
    title: Gateway availability
    alerts: [GatewayAvailabilityErrorBudgetBurn, GatewayAvailabilitySLIAbsent]
    slo: gateway-availability
    ---
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from openbell.errors import SpecError

DEFAULT_DIR = "runbooks"


@dataclass(frozen=True)
class Runbook:
    name: str  # file stem
    path: Path
    title: str
    alerts: tuple[str, ...]
    slo: str | None
    body: str


def runbooks_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("OPENBELL_RUNBOOKS") or DEFAULT_DIR)


def parse(path: Path) -> Runbook:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot read: {exc.strerror}") from None
    meta: dict[str, object] = {}
    body = text
    if text.startswith("---"):
        parts = text.split("\n---", 1)
        if len(parts) != 2:
            raise SpecError(str(path), "front matter", "expected a closing --- line")
        try:
            loaded = yaml.safe_load(parts[0].lstrip("-\n"))
        except yaml.YAMLError as exc:
            raise SpecError(str(path), "front matter", f"expected valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise SpecError(str(path), "front matter", "expected a mapping")
        meta = loaded
        body = parts[1].split("\n", 1)[1] if "\n" in parts[1] else ""
    alerts = meta.get("alerts", [])
    if isinstance(alerts, str):
        alerts = [alerts]
    if not isinstance(alerts, list) or not all(isinstance(a, str) for a in alerts):
        raise SpecError(str(path), "alerts", "expected a list of alert names")
    title = meta.get("title") or path.stem.replace("-", " ").capitalize()
    slo = meta.get("slo")
    return Runbook(name=path.stem, path=path, title=str(title), alerts=tuple(alerts),
                   slo=str(slo) if slo else None, body=body.lstrip("\n"))


def load_all(directory: Path) -> list[Runbook]:
    if not directory.is_dir():
        raise SpecError(str(directory), "", "no runbooks folder here (set --dir or OPENBELL_RUNBOOKS)")
    return [parse(p) for p in sorted(directory.glob("*.md")) if p.name.lower() != "readme.md"]


def find(directory: Path, name: str) -> Runbook:
    """By file name (with or without .md) or by the name of an alert it answers."""
    books = load_all(directory)
    wanted = name.removesuffix(".md")
    for book in books:
        if book.name == wanted:
            return book
    for book in books:
        if name in book.alerts:
            return book
    known = ", ".join(b.name for b in books) or "none"
    raise SpecError(str(directory), name, f"no runbook or alert of that name (runbooks: {known})")
