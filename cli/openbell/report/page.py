"""The gameday's HTML report: one static page (inline CSS and SVG, no script, no network) from gameday.json.

Top to bottom: the verdict banner (`id="verdict"`, `data-outcome`), the phases table and a Gantt-style
timeline with the events, the charts grouped by their `group` (report/charts.py), the SLO budget table, the
alerts and the artifacts. Times show as m:ss from the run's start.

The colours are report/style.py's fixed palette.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from openbell.report.charts import (
    CHART_W,
    UNMARKED_EVENTS,
    WIDE_CHART_W,
    Frame,
    Span,
    _bands,
    _chart_card,
    _event_colour,
    _gantt,
    _gantt_legend,
    _run_span,
)
from openbell.report.style import (
    _badge,
    _clock,
    _dict,
    _duration,
    _esc,
    _fmt,
    _link,
    _list,
    _num,
    _outcome_colour,
    _percent,
    _rel,
    _sig,
    _slug,
)

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f6f8fa;color:#1f2328;font:14px/1.45 -apple-system,"Segoe UI","Noto Sans",
"DejaVu Sans",Helvetica,Arial,sans-serif}
main{max-width:1360px;margin:0 auto;padding:20px 24px 40px}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
h2{font-size:18px;margin:28px 0 10px;font-weight:600}
h3{font-size:14px;margin:0;font-weight:600}
.verdict{color:#fff;border-radius:10px;padding:22px 28px;display:flex;gap:32px;align-items:center;
flex-wrap:wrap;box-shadow:0 1px 3px rgba(31,35,40,.2)}
.verdict-word{font-size:44px;font-weight:800;letter-spacing:.04em;line-height:1}
.verdict-main{flex:1 1 520px;min-width:0}
.verdict-reason{font-size:19px;font-weight:500;margin-top:8px;overflow-wrap:anywhere}
.verdict-plan{font-size:13px;opacity:.92;margin-top:6px}.verdict a{color:#fff;text-decoration:underline}
.verdict-meta{display:grid;grid-template-columns:auto auto;gap:2px 14px;font-size:13px;margin:0}
.verdict-meta dt{opacity:.8}.verdict-meta dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}
.reasons{margin:10px 0 0;padding:10px 16px 10px 34px;background:#fff;border:1px solid #d0d7de;
border-left-width:6px;border-radius:8px}
.reasons li{margin:2px 0;overflow-wrap:anywhere}
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0 0}
.kpi{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:8px 14px;min-width:130px}
.kpi b{display:block;font-size:20px;font-variant-numeric:tabular-nums}.kpi.bad{border-left:4px solid #cf222e}
.kpi.bad b{color:#cf222e}
.kpi span{color:#59636e;font-size:12px}
nav{margin:16px 0 0;font-size:13px;color:#59636e}nav a{margin-right:14px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 16px;break-inside:avoid}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;font-weight:600;color:#59636e;border-bottom:1px solid #d0d7de;padding:6px 8px;
white-space:nowrap}
td{padding:6px 8px;border-bottom:1px solid #eaeef2;vertical-align:top;overflow-wrap:anywhere}
.events td{padding:3px 8px}
tr:last-child td{border-bottom:0}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#59636e}.small{font-size:12px}
.badge{display:inline-block;color:#fff;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;
white-space:nowrap}
.kind{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;background:#eaeef2;color:#3d444d}
.fig{display:inline-block;margin:2px 8px 0 0;font-size:12px;color:#59636e;white-space:nowrap}
.fig b{color:#1f2328;font-weight:600}
.ev-warning td{background:#fff8c5}.ev-critical td{background:#ffebe9}.ev-bound td{color:#8c959f}
.events{max-width:100%}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:4px 0 2px;font-size:12px;color:#3d444d}
.legend i{display:inline-block;width:14px;height:0;border-top:3px solid;vertical-align:middle;
margin-right:5px;border-radius:2px}
.legend i.dash{border-top-style:dashed;border-top-width:2px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px}.wide{grid-column:1/-1}
.chart-head{display:flex;justify-content:space-between;gap:8px;align-items:baseline}
svg{display:block;width:100%;height:auto}
svg text{font-family:inherit}
.note{margin:4px 0 0;font-size:12px;color:#59636e}
.bar{display:inline-block;width:70px;height:8px;background:#eaeef2;border-radius:4px;vertical-align:middle;
margin-right:6px;overflow:hidden}.bar i{display:block;height:100%}
.empty{color:#59636e;font-style:italic;margin:0}
footer{margin-top:28px;font-size:13px;color:#59636e}footer a{margin-right:12px}
@media (max-width:900px){.grid{grid-template-columns:minmax(0,1fr)}}
@media print{body{background:#fff}main{max-width:none;padding:0}.card{border-color:#bbb}nav{display:none}
.verdict,.badge,.bar i{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def render_html(doc: dict[str, Any]) -> str:
    """The whole report page for one gameday document."""
    span = _run_span(doc)
    origin = span.t0
    verdict = _dict(doc.get("verdict"))
    outcome = str(verdict.get("outcome") or "unknown")
    title = f"{outcome.upper()} · {doc.get('gameday') or 'gameday'} · openbell gameday"
    body = "".join([
        _banner(doc, origin),
        _kpis(doc),
        _nav(doc),
        _phases_section(doc, origin),
        _timeline_section(doc, span, origin),
        _charts_section(doc, span, origin),
        _slos_section(doc),
        _alerts_section(doc, origin),
        _footer(doc),
    ])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head>\n"
        f"<body><main>\n{body}</main></body></html>\n"
    )


def write_report(doc: dict[str, Any], directory: Path) -> Path:
    """Write `index.html` into `directory` (created if needed) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index.html"
    path.write_text(render_html(doc), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- banner


def _banner(doc: dict[str, Any], origin: float) -> str:
    verdict = _dict(doc.get("verdict"))
    outcome = str(verdict.get("outcome") or "unknown")
    # The headline reason is said once: the list holds the others.
    headline = str(verdict.get("reason") or "")
    reasons = [r for r in verdict.get("reasons") or [] if r and str(r) not in headline]
    meta = [
        ("Target", _esc(doc.get("target") or "—")),
        ("Run", _esc(doc.get("run_id") or "—")),
        ("Started", _esc(_clock(doc.get("started_at")))),
        ("Finished", _esc(_clock(doc.get("finished_at")))),
        ("Wall time", _esc(_duration(doc.get("duration_s")))),
        ("Exit code", _esc(verdict.get("exit_code", "—"))),
    ]
    plan = f"Gameday <b>{_esc(doc.get('gameday') or '—')}</b>"
    if doc.get("plan"):
        plan += f" · plan {_link(doc.get('plan'))}"
    if doc.get("description"):
        plan += f" — {_esc(doc.get('description'))}"
    items = "".join(f"<li>{_esc(r)}</li>" for r in reasons)
    return (
        f'<header id="verdict" class="verdict" data-outcome="{_esc(outcome)}" '
        f'style="background:{_outcome_colour(outcome)}">'
        f'<div class="verdict-main"><div class="verdict-word">{_esc(outcome.upper())}</div>'
        f'<div class="verdict-reason">{_esc(verdict.get("reason") or "no reason given")}</div>'
        f'<div class="verdict-plan">{plan}</div>{_load_notes(doc)}</div>'
        f'<dl class="verdict-meta">{"".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in meta)}</dl></header>\n'
        + (f'<ul class="reasons" id="reasons" style="border-left-color:{_outcome_colour(outcome)}">{items}</ul>\n'
           if items else "")
    )


def _load_notes(doc: dict[str, Any]) -> str:
    """What each calibrated load ran at, of what this machine sustains: the headroom the gameday left."""
    out = []
    for note in _list(doc, "load"):
        capacity = _num(note.get("capacity_scale"))
        scale = _num(note.get("scale"))
        if capacity is None or scale is None:
            continue
        when = _esc(time.strftime("%Y-%m-%d %H:%M", time.gmtime(_num(note.get("measured_at")) or 0)))
        kept = ", kept" if note.get("cached") else ", just now"
        out.append(
            f'<div class="verdict-plan" data-load="{_esc(note.get("phase"))}">Load {_esc(note.get("phase"))}: '
            f"scale {_esc(f'{scale:g}')}, {_percent(scale / capacity)} of {'at least ' if note.get('capped') else ''}"
            f"{_esc(f'{capacity:g}')}, the largest scale every SLO held at on this machine (calibrated {when}Z"
            f"{kept}): {_percent(note.get('headroom'))} headroom left</div>")
    return "".join(out)


def _kpis(doc: dict[str, Any]) -> str:
    """Counts at a glance; a tile that shows trouble is marked red."""
    phases, slos, events = _list(doc, "phases"), _list(doc, "slos"), _list(doc, "events")
    passed = sum(1 for p in phases if p.get("outcome") == "pass")
    slo_met = sum(1 for s in slos if s.get("outcome") == "pass")
    slo_failed = sum(1 for s in slos if s.get("outcome") == "fail")
    alerts = len(_list(doc, "alerts"))
    rollbacks = sum(1 for e in events if e.get("kind") == "rollback")
    faults = sum(1 for e in events if e.get("kind") == "fault")
    failed = sum(1 for p in phases if p.get("outcome") in ("fail", "error"))
    tiles = [
        (f"{passed}/{len(phases)}", "phases passed", failed > 0),
        (f"{slo_met}/{len(slos)}", "SLOs met", slo_failed > 0),
        (str(alerts), "alerts fired", alerts > 0),
        (str(faults), "faults injected", False),
        (str(rollbacks), "rollbacks", rollbacks > 0),
    ]
    html = "".join(f'<div class="kpi{" bad" if bad else ""}"><b>{v}</b><span>{k}</span></div>' for v, k, bad in tiles)
    return f'<div class="kpis">{html}</div>\n'


def _groups(doc: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Charts by `group`, groups in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for chart in _list(doc, "charts"):
        groups.setdefault(str(chart.get("group") or "Other"), []).append(chart)
    return list(groups.items())


def _nav(doc: dict[str, Any]) -> str:
    links = [("phases", "Phases"), ("timeline", "Timeline")]
    links += [(f"group-{_slug(name)}", name) for name, _ in _groups(doc)]
    links += [("slos", "SLO budgets"), ("alerts", "Alerts"), ("artifacts", "Artifacts")]
    return "<nav>" + "".join(f'<a href="#{_esc(a)}">{_esc(t)}</a>' for a, t in links) + "</nav>\n"


# ---------------------------------------------------------------------------------------------- phases


def _figures(figures: Any) -> str:
    out = []
    for key, value in _dict(figures).items():
        shown = _esc(value) if isinstance(value, str) else _esc(_fmt(value))
        out.append(f'<span class="fig">{_esc(key)} <b>{shown}</b></span>')
    return "".join(out)


def _phase_row(phase: dict[str, Any], origin: float) -> str:
    log = phase.get("log")
    log_link = f' <span class="small">({_link(log, "log")})</span>' if log else ""
    desc = f'<div class="muted small">{_esc(phase.get("description"))}</div>' if phase.get("description") else ""
    figures = _figures(phase.get("figures"))
    return (
        f'<tr data-phase="{_esc(phase.get("name"))}"><td><b>{_esc(phase.get("name"))}</b>{log_link}{desc}</td>'
        f'<td><span class="kind">{_esc(phase.get("kind") or "—")}</span></td>'
        f"<td>{_badge(phase.get('outcome'))}</td>"
        f'<td class="num">{_rel(phase.get("started_at"), origin)}</td>'
        f'<td class="num">{_duration(phase.get("duration_s"))}</td>'
        f"<td>{_esc(phase.get('reason') or '')}{'<div>' + figures + '</div>' if figures else ''}</td></tr>"
    )


def _phases_section(doc: dict[str, Any], origin: float) -> str:
    phases = _list(doc, "phases")
    if not phases:
        return '<section id="phases"><h2>Phases</h2><p class="empty">No phase in this run.</p></section>\n'
    rows = "".join(_phase_row(p, origin) for p in phases)
    return (
        '<section id="phases"><h2>Phases</h2><div class="card"><table><thead><tr><th>Phase</th><th>Kind</th>'
        '<th>Outcome</th><th>Start</th><th>Duration</th><th style="width:48%">Reason and figures</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>\n"
    )


# -------------------------------------------------------------------------------------------- timeline


def _event_row(event: dict[str, Any], origin: float) -> str:
    severity = str(event.get("severity") or "info")
    cls = f' class="ev-{severity}"' if severity in ("warning", "critical") else ""
    if not cls and event.get("kind") in UNMARKED_EVENTS:
        cls = ' class="ev-bound"'
    colour = _event_colour(event)
    return (
        f'<tr{cls}><td class="num">{_rel(event.get("at"), origin)}</td>'
        f'<td>{_esc(event.get("phase") or "—")}</td>'
        f'<td><span class="kind" style="color:{colour}">{_esc(event.get("kind") or "—")}</span></td>'
        f"<td>{_esc(event.get('message') or '')}</td></tr>"
    )


def _timeline_section(doc: dict[str, Any], span: Span, origin: float) -> str:
    events = _list(doc, "events")
    gantt = _gantt(doc, span, origin)
    rows = "".join(_event_row(e, origin) for e in events)
    table = (
        '<table class="events"><thead><tr><th style="width:60px">Time</th><th style="width:190px">Phase</th>'
        f'<th style="width:110px">Kind</th><th>Message</th></tr></thead><tbody>{rows}</tbody></table>'
        if rows else '<p class="empty">No event recorded.</p>'
    )
    return (
        '<section id="timeline"><h2>Timeline</h2>'
        f'<div class="card">{gantt}{_gantt_legend() if gantt else ""}</div>'
        f'<div class="card" style="margin-top:12px">{table}</div></section>\n'
    )


# ---------------------------------------------------------------------------------------------- charts


def _charts_section(doc: dict[str, Any], span: Span, origin: float) -> str:
    """The charts, two a row under their group's heading; an odd group's last chart takes the whole row."""
    groups = _groups(doc)
    if not groups:
        return '<section id="charts"><h2>Charts</h2><p class="empty">No chart in this run.</p></section>\n'
    bands = _bands(_list(doc, "phases"), span)
    lanes = max((b.lane + 1 for b in bands), default=0)
    out = []
    for name, charts in groups:
        cards = "".join(
            _chart_card(c, span, origin, bands, Frame(WIDE_CHART_W if i == len(charts) - 1 and i % 2 == 0 else CHART_W,
                                                      lanes))
            for i, c in enumerate(charts))
        out.append(f'<section id="group-{_esc(_slug(name))}"><h2>{_esc(name)}</h2><div class="grid">{cards}</div>'
                   "</section>\n")
    return '<div id="charts">' + "".join(out) + "</div>\n"


# ------------------------------------------------------------------------------------------ SLOs, alerts


def _bar(fraction: Any, colour: str) -> str:
    v = _num(fraction)
    if v is None:
        return ""
    return f'<span class="bar"><i style="width:{min(max(v, 0.0), 1.0) * 100:.1f}%;background:{colour}"></i></span>'


def _slo_row(slo: dict[str, Any]) -> str:
    remaining = _num(slo.get("budget_remaining"))
    remaining_colour = "#1a7f37" if remaining is None or remaining > 0.25 else "#bf8700" if remaining > 0 else "#cf222e"
    note = f'<div class="muted small">{_esc(slo.get("note"))}</div>' if slo.get("note") else ""
    service = f'<span class="muted small"> · {_esc(slo.get("service"))}</span>' if slo.get("service") else ""
    period = _num(slo.get("period_s"))
    period_text = f' <span class="muted small">/ {_sig(period / 86400)}d</span>' if period else ""
    runbook = _link(slo.get("runbook"), "runbook") if slo.get("runbook") else '<span class="muted">—</span>'
    gated = slo.get("gated")
    return (
        f'<tr data-slo="{_esc(slo.get("name"))}"><td><b>{_esc(slo.get("name"))}</b>{service}{note}</td>'
        f'<td class="num">{_percent(slo.get("objective"))}{period_text}</td>'
        f'<td>{"yes" if gated else "no" if gated is not None else "—"}</td>'
        f'<td class="num">{_fmt(slo.get("error_ratio"), "ratio")}</td>'
        f'<td class="num">{_fmt(slo.get("burn_rate"), "x")}</td>'
        f'<td class="num">{_bar(slo.get("budget_consumed"), "#bf8700")}{_percent(slo.get("budget_consumed"))}</td>'
        f'<td class="num">{_bar(remaining, remaining_colour)}{_percent(remaining)}</td>'
        f"<td>{_badge(slo.get('outcome'))}</td><td>{runbook}</td></tr>"
    )


def _slos_section(doc: dict[str, Any]) -> str:
    slos = _list(doc, "slos")
    if not slos:
        return '<section id="slos"><h2>SLO budgets</h2><p class="empty">No SLO evaluated.</p></section>\n'
    rows = "".join(_slo_row(s) for s in slos)
    return (
        '<section id="slos"><h2>SLO budgets</h2><div class="card"><table><thead><tr><th>SLO</th><th>Objective</th>'
        "<th>Gated</th><th>Error ratio</th><th>Mean burn rate</th><th>Budget used by the gameday</th>"
        "<th>Budget remaining</th><th>Outcome</th><th>Runbook</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        '<p class="note">Budget used: share of the period\'s error budget consumed during the gameday.</p>'
        "</div></section>\n"
    )


def _alert_row(alert: dict[str, Any], origin: float) -> str:
    severity = str(alert.get("severity") or "—")
    colour = "#cf222e" if severity in ("page", "critical") else "#bf8700"
    runbook = _link(alert.get("runbook"), "runbook") if alert.get("runbook") else '<span class="muted">—</span>'
    when = f"{_rel(alert.get('first_at'), origin)} → {_rel(alert.get('last_at'), origin)}"
    return (
        f'<tr data-alert="{_esc(alert.get("name"))}"><td><b>{_esc(alert.get("name"))}</b></td>'
        f'<td><span class="badge" style="background:{colour}">{_esc(severity)}</span></td>'
        f'<td>{_esc(alert.get("slo") or "—")}</td><td class="num">{when}</td>'
        f"<td>{_esc(alert.get('summary') or '')}</td><td>{runbook}</td></tr>"
    )


def _alerts_section(doc: dict[str, Any], origin: float) -> str:
    alerts = _list(doc, "alerts")
    if not alerts:
        return ('<section id="alerts"><h2>Alerts</h2><div class="card"><p class="empty">No alert fired.</p></div>'
                "</section>\n")
    rows = "".join(_alert_row(a, origin) for a in alerts)
    return (
        '<section id="alerts"><h2>Alerts</h2><div class="card"><table><thead><tr><th>Alert</th><th>Severity</th>'
        '<th>SLO</th><th>Fired</th><th>Summary</th><th>Runbook</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>\n"
    )


def _footer(doc: dict[str, Any]) -> str:
    artifacts = _dict(doc.get("artifacts"))
    links = [_link(artifacts.get(k), name) for k, name in (("json", "gameday.json"), ("junit", "JUnit XML"))
             if artifacts.get(k)]
    links += [_link(path, f"{phase}.log") for phase, path in _dict(artifacts.get("logs")).items() if path]
    listed = "".join(f"<span>{x}</span> " for x in links) or '<span class="empty">none</span>'
    return (
        f'<footer id="artifacts"><b>Artifacts</b>: {listed}<br>'
        f'<span class="small">{_esc(doc.get("schema") or "")} · generated by openbell gameday</span></footer>\n'
    )
