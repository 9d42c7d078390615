"""Cross-checks between SLO specs and the runbooks they link to."""

from __future__ import annotations

from openbell.errors import SpecError
from openbell.runbooks.index import parse
from openbell.slo.model import SLO
from openbell.slo.validate import resolve_runbook


def runbook_warnings(slos: list[SLO]) -> list[str]:
    """Warn when a linked runbook's front matter does not list the alerts that point at it."""
    out = []
    for slo in slos:
        path = resolve_runbook(slo)
        if path is None:
            continue
        try:
            book = parse(path)
        except SpecError as exc:
            out.append(str(exc))
            continue
        missing = [a for a in slo.alert_names() if a not in book.alerts]
        if missing:
            out.append(f"{path}: front matter alerts does not list {', '.join(missing)} (linked from {slo.source})")
    return out
