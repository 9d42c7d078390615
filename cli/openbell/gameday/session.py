"""A gameday run, start to report: the gate's preflight, the calibrated load (`prepare`), the orchestrator, then
the report folder (gameday.json, junit.xml, index.html) from what it did and what Prometheus saw meanwhile.
`openbell gameday` (commands/gameday.py) parses, shows progress and renders; everything else is here."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openbell.errors import OpenbellError, UnreachableError
from openbell.gameday.events import Listener

if TYPE_CHECKING:
    from openbell.gameday.plan import Plan
    from openbell.gameday.runner import Gameday, Where
    from openbell.metrics.prometheus import PrometheusClient
    from openbell.slo.model import SLO


def run_gameday(plan: Plan, slos: list[SLO], where: Where, run_id: str, folder: Path,
                listener: Listener | None = None, say: Callable[[str], None] = lambda _: None,
                prepare: Callable[[Plan], tuple[Plan, list[dict[str, Any]]]] | None = None
                ) -> tuple[dict[str, Any], int]:
    """Run the plan, then write the report folder: index.html, gameday.json, junit.xml, phases/.

    `prepare` (the calibrated scale of the load phases) runs only on a platform that is not burning: a
    burning one ends the gameday as unhealthy without it; otherwise the gate is asked again after it."""
    from openbell.gameday.gate import GamedayGate
    from openbell.gameday.runner import Gameday
    from openbell.metrics.prometheus import PrometheusClient

    folder.mkdir(parents=True, exist_ok=True)
    # Short timeouts: the gate is asked every few seconds from the loop that also reaps and stops phases.
    client = PrometheusClient(where.prometheus_url, timeout_s=5.0)
    try:
        client.build_info()
    except Exception as exc:
        raise UnreachableError(f"Prometheus at {where.prometheus_url}: {exc}") from None
    gate = GamedayGate(client, slos, plan.gate, started_at=time.time())
    load: list[dict[str, Any]] = []
    unhealthy = gate.preflight(time.time())
    if not unhealthy and prepare is not None:
        plan, load = prepare(plan)
        gate.started_at = time.time()  # what the gameday spends starts now, not with the calibration
    game = Gameday(plan, where, gate, run_id, folder, listener=listener or Listener())
    outcome = game.run(unhealthy or None)
    say("collecting the report from Prometheus")
    try:
        doc = document(game, outcome, slos, folder, client)
    except (OpenbellError, KeyboardInterrupt) as exc:
        # The verdict stands whatever happens to the plots: a report without them, saying why.
        doc = document(game, outcome, slos, folder, None)
        doc["report_error"] = f"plots and budgets could not be read from Prometheus: {exc!r}"
        doc["verdict"]["reasons"] = [*doc["verdict"]["reasons"], f"(report: {doc['report_error']})"]
    doc["load"] = load  # what each calibrated load phase's scale was set from
    write_report(doc, folder)
    return doc, outcome.exit_code


def document(game: Gameday, outcome: Any, slos: list[SLO], folder: Path,
             client: PrometheusClient | None) -> dict[str, Any]:
    """The report's data; without a client (Prometheus gone), the verdict, phases and events alone."""
    from openbell.gameday import collect

    start, end = game.started_at, game.finished_at
    scrape = _scrape_interval(game.where)
    step = collect.step_for(end - start + collect.LEAD_S, scrape)
    specs = collect.platform_charts(slos, scrape) + collect.burn_charts(slos, game.plan.gate.severity)
    charts = [collect.read_chart(client, s, start - collect.LEAD_S, end, step) for s in specs] if client else []
    last = game.last_gate
    final_reasons = list(last.reasons) if last is not None and last.outcome == "fail" else []
    spend = list(last.figures.get("spend", [])) if last is not None else []
    # Once the gate fails nothing asks it again, so the last verdict is the one that stopped the gameday.
    outcomes = collect.final_outcomes(final_reasons, slos, spend)
    return {
        "schema": "openbell/gameday/v1", "gameday": game.plan.name, "description": game.plan.description,
        "plan": str(game.plan.path), "target": game.where.target, "run_id": game.run_id,
        "started_at": start, "finished_at": end, "duration_s": round(end - start, 3),
        "verdict": {"outcome": outcome.verdict, "exit_code": outcome.exit_code, "reason": outcome.reason,
                    "reasons": outcome.reasons},
        "gate": {"severity": game.plan.gate.severity, "interval_s": game.plan.gate.interval_s,
                 "max_budget_consumed": game.plan.gate.max_budget_consumed,
                 "unhealthy_at_start": [b.to_dict() for b in game.unhealthy], "checks": len(game.gate_checks),
                 "last": last.to_dict() if last is not None else None},
        "phases": [r.to_dict(folder) for r in game.runs],
        "events": [e.to_dict() for e in sorted(game.events, key=lambda e: e.at)],
        "charts": charts,
        "slos": collect.slo_table(game.gate, outcomes, end, folder) if client else [],
        "alerts": collect.fired_alerts(client, slos, start, end, step, folder) if client else [],
        "artifacts": {"json": "gameday.json", "junit": "junit.xml", "html": "index.html",
                      "logs": {r.phase.name: os.path.relpath(r.log, folder) for r in game.runs if r.log is not None}},
    }


def _scrape_interval(where: Where) -> float:
    if where.target != "sandbox" or where.home is None:
        return 15.0
    from openbell.targets.platform import Sandbox

    return Sandbox(where.home).scrape_interval_s() or 1.0


def write_report(doc: dict[str, Any], folder: Path) -> None:
    import json

    from openbell.report import junit
    from openbell.report.page import write_report as write_html

    (folder / "gameday.json").write_text(json.dumps(doc, indent=2) + "\n")
    cases = []
    for p in doc["phases"]:
        outcome = {"pass": "pass", "not_run": "skipped", "skipped": "skipped"}.get(p["outcome"], "fail")
        cases.append(junit.Case(f"{p['name']} ({p['kind']})", f"gameday.{doc['gameday']}", outcome,
                                p["reason"] or p["outcome"], time_s=p["duration_s"] or 0.0))
    v = doc["verdict"]
    suite = f"gameday.{doc['gameday']}"
    unhealthy = v["outcome"] == "unhealthy"
    cases.insert(0, junit.Case("platform healthy before the gameday", suite, "fail" if unhealthy else "pass",
                               "; ".join(v["reasons"]) if unhealthy else "nothing burning at the start"))
    if unhealthy:
        cases.append(junit.Case("SLO gate", suite, "skipped", "not asked: the gameday did not start"))
    else:
        cases.append(junit.Case("SLO gate", suite,
                                "fail" if any(r.startswith("SLO gate") for r in v["reasons"]) else "pass",
                                "; ".join(r for r in v["reasons"] if r.startswith("SLO gate")) or
                                f"held over {doc['gate']['checks']} checks"))
    (folder / "junit.xml").write_text(junit.render(f"openbell gameday {doc['gameday']}", cases))
    write_html(doc, folder)
