"""Terminal rendering of SLO status and verdicts (rich)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openbell.durations import human_duration

if TYPE_CHECKING:
    from rich.table import Table

    from openbell.slo.evaluate import GroupResult
    from openbell.slo.verdict import Verdict

_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


def _pct(value: float | None, digits: int = 3) -> str:
    return "no data" if value is None else f"{value:.{digits}%}"


def _burn(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def status_table(results: list[GroupResult]) -> Table:
    from rich.table import Table

    table = Table(title="SLO status", show_lines=True)
    for col in ("SLO", "objective", "SLI now", "budget left", "burn rate (long / short vs limit)", "would fire"):
        table.add_column(col)
    for r in results:
        burns = "\n".join(
            f"{p.severity} {human_duration(p.long_window_s)}/{human_duration(p.short_window_s)}: "
            f"{_burn(p.long_burn_rate)} / {_burn(p.short_burn_rate)} vs {p.burn_rate_threshold:g}x" for p in r.pairs)
        firing = sorted({p.severity for p in r.pairs if p.outcome == "fail"})
        fire = ", ".join(f"{r.slo.alert_name} ({s})" for s in firing) or (
            "unknown (no data)" if r.outcome == "inconclusive" else "none")
        remaining = "no data" if r.budget_remaining is None else f"{r.budget_remaining:.1%}"
        table.add_row(r.label, f"{r.slo.objective_percent:g}%", _pct(r.sli_now), remaining, burns,
                      f"[{_STYLE[r.outcome]}]{fire}[/]")
    return table


def verdict_lines(verdict: Verdict) -> list[str]:
    style = _STYLE[verdict.outcome]
    lines = [f"[{style}]{verdict.outcome.upper()}[/]"]
    lines.extend(f"  {reason}" for reason in verdict.reasons)
    return lines
