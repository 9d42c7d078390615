"""What burns now, since when, and which runbook to open: the line an SRE needs before a risky action.

A gameday, a canary or a chaos experiment started on a platform that already burns its error budget cannot
tell its own damage from what was there: it ends at once, naming each burning series with its figures, the
instant its burn began and its runbook. `onset` is pure (a search over a "was it burning at t?" question);
`burning` asks Prometheus, through the same evaluation the gate uses, so the onset is the gate's own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openbell.durations import human_duration
from openbell.metrics.types import Source
from openbell.slo.evaluate import GroupResult, decide, evaluate, read_slo
from openbell.slo.model import SLO

HORIZON_S = 3600.0  # how far back the onset is looked for
FIRST_STEP_S = 5.0


@dataclass(frozen=True)
class Burning:
    """One SLO series burning beyond its threshold."""

    label: str  # service/name{group}
    reason: str  # the failing pair's figures
    since: float | None  # Unix seconds the burn began (None: it already burned HORIZON_S ago)
    runbook: str | None
    alert: str

    def line(self, now: float) -> str:
        if self.since is None:
            when = f"burning for over {human_duration(HORIZON_S)}"
        else:
            stamp = time.strftime("%H:%M:%SZ", time.gmtime(self.since))
            when = f"burning since {stamp} ({human_duration(max(0.0, now - self.since))} ago)"
        runbook = f"; runbook {self.runbook}" if self.runbook else ""
        return f"{self.label}: {self.reason}; {when}{runbook}"

    def to_dict(self) -> dict[str, object]:
        return {"slo": self.label, "reason": self.reason, "since": self.since, "runbook": self.runbook,
                "alert": self.alert}


def onset(burning_at: Callable[[float], bool], now: float, horizon_s: float = HORIZON_S,
          resolution_s: float = 1.0) -> float | None:
    """When a burn that holds at `now` began: steps back 5, 10, 20 ... s while it still burns, then bisects
    the last step down to `resolution_s`. None when it burned all the way back to `horizon_s`."""
    earliest, step = now, FIRST_STEP_S
    while True:
        probe = now - min(step, horizon_s)
        if not burning_at(probe):
            lo, hi = probe, earliest
            break
        if step >= horizon_s:
            return None
        earliest, step = probe, step * 2
    while hi - lo > resolution_s:
        mid = (lo + hi) / 2
        if burning_at(mid):
            hi = mid
        else:
            lo = mid
    return hi


def runbook_path(slo: SLO, relative_to: Path | None = None) -> str | None:
    """The SLO's runbook: a URL as it is, a file relative to the spec resolved against `relative_to` (the
    working directory by default)."""
    if not slo.runbook:
        return None
    if "://" in slo.runbook:
        return slo.runbook
    base = Path(slo.source).parent if slo.source else Path("slo")
    return os.path.relpath((base / slo.runbook).resolve(), (relative_to or Path.cwd()).resolve())


def burning(client: Source, slos: list[SLO], severity: str = "page", now: float | None = None,
            resolution_s: float = 1.0) -> list[Burning]:
    """Every SLO series failing the gate at `now` (default: the present), with the instant its burn began."""
    at = time.time() if now is None else now
    _, results = evaluate(client, slos, severity, at=at)
    out = []
    for r in results:
        if r.outcome != "fail":
            continue
        reason = next(p.reason for p in r.pairs if p.outcome == "fail")
        since = onset(_still_burning(client, r, severity), at, resolution_s=resolution_s)
        out.append(Burning(r.label, reason, since, runbook_path(r.slo), r.slo.alert_name))
    return out


def _still_burning(client: Source, result: GroupResult, severity: str) -> Callable[[float], bool]:
    def burning_at(t: float) -> bool:
        return any(g.group == result.group and g.outcome == "fail"
                   for g in decide(read_slo(client, result.slo, severity, at=t), severity))

    return burning_at
