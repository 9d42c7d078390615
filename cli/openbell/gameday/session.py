"""A gameday run, start to report: the gate's preflight, the calibrated load (`prepare`), the orchestrator, then
the report folder (gameday.json, junit.xml, index.html) from what it did and what Prometheus saw meanwhile.
`openbell gameday` (commands/gameday.py) parses, shows progress and renders; everything else is here."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openbell.errors import OpenbellError, UnreachableError
from openbell.gameday.document import GamedayDocument, GateSummary
from openbell.gameday.events import Listener

if TYPE_CHECKING:
    from openbell.gameday.core import Outcome
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
        doc = document(game, outcome, slos, folder, None).without_prometheus(repr(exc))
    doc = dataclasses.replace(doc, load=tuple(load))  # what each calibrated load phase's scale was set from
    write_report(doc, folder)
    return doc.to_json(), outcome.exit_code


def document(game: Gameday, outcome: Outcome, slos: list[SLO], folder: Path,
             client: PrometheusClient | None) -> GamedayDocument:
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
    rules = game.plan.gate
    return GamedayDocument(
        game.plan.name, game.plan.description, str(game.plan.path), game.where.target, game.run_id, start, end,
        outcome,
        GateSummary(rules.severity, rules.interval_s, rules.max_budget_consumed,
                    tuple(b.to_dict() for b in game.unhealthy), len(game.gate_checks), last),
        tuple(r.to_dict(folder) for r in game.runs), tuple(game.events), tuple(charts),
        tuple(collect.slo_table(game.gate, outcomes, end, folder)) if client else (),
        tuple(collect.fired_alerts(client, slos, start, end, step, folder)) if client else (),
        {r.phase.name: os.path.relpath(r.log, folder) for r in game.runs if r.log is not None})


def _scrape_interval(where: Where) -> float:
    if where.target != "sandbox" or where.home is None:
        return 15.0
    from openbell.targets.platform import Sandbox

    return Sandbox(where.home).scrape_interval_s() or 1.0


def write_report(doc: GamedayDocument, folder: Path) -> None:
    """gameday.json, junit.xml and index.html in `folder`."""
    import json

    from openbell.report import junit
    from openbell.report.page import write_report as write_html

    data = doc.to_json()
    (folder / "gameday.json").write_text(json.dumps(data, indent=2) + "\n")
    (folder / "junit.xml").write_text(junit.render(f"openbell gameday {doc.gameday}", doc.junit_cases()))
    write_html(data, folder)
