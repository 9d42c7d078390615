"""The gameday's HTML report: one static page (inline CSS and SVG, no script, no network) from gameday.json.

Top to bottom: the verdict banner (`id="verdict"`, `data-outcome`), the phases table and a Gantt-style
timeline with the events, the charts grouped by their `group` (each an `<svg class="chart">` with
`data-chart` and `data-points`, the number of finite points drawn), the SLO budget table, the alerts
and the artifacts. Times show as m:ss from the run's start.

Palette (fixed, so that tests can look for these colours in a screenshot):
  outcomes     pass #1a7f37, fail #cf222e, interrupted #9a6700, error #57606a, stopped #bc4c00,
               unhealthy #8250df (burning before the gameday), inconclusive #9a6700, skipped #8c959f,
               not_run #afb8c1 (verdict banner, badges, Gantt bars)
  series       #2f81f7 blue, #e16f24 orange, #8250df purple, #1b7c83 teal, #d6336c pink, #6b8e23 olive,
               #8a5a2b brown, #3d5a80 slate (in order, per chart)
  thresholds   #e5534b coral, #d4a72c gold, #6e7781 grey (dashed)
  events       critical #cf222e, warning #bf8700, info #6e7781; promoted #1a7f37, gate #0969da
  phase bands  load #54aeff, canary #a475f9, chaos #fb8f44, slo #4ac26b, other #8c959f (light fills)
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

OUTCOME_COLOURS: dict[str, str] = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "interrupted": "#9a6700",
    "error": "#57606a",
    "stopped": "#bc4c00",
    "unhealthy": "#8250df",
    "inconclusive": "#9a6700",
    "skipped": "#8c959f",
    "not_run": "#afb8c1",
}
UNKNOWN_COLOUR = "#57606a"
SERIES_COLOURS = ("#2f81f7", "#e16f24", "#8250df", "#1b7c83", "#d6336c", "#6b8e23", "#8a5a2b", "#3d5a80")
THRESHOLD_COLOURS = ("#e5534b", "#d4a72c", "#6e7781")
SEVERITY_COLOURS = {"critical": "#cf222e", "warning": "#bf8700", "info": "#6e7781"}
EVENT_KIND_COLOURS = {
    "rollback": "#cf222e",
    "stop": "#cf222e",
    "safeguard": "#bf8700",
    "fault": "#bf8700",
    "promoted": "#1a7f37",
    "gate": "#0969da",
}
KIND_COLOURS = {"load": "#54aeff", "canary": "#a475f9", "chaos": "#fb8f44", "slo": "#4ac26b"}
OTHER_KIND_COLOUR = "#8c959f"
TIMES = "\u00d7"  # the multiplication sign: burn rates read "14.4" + TIMES

# Events drawn as diamonds on the timeline; other events (steps) are thin ticks, phase-start/end none.
MARKED_EVENTS = frozenset(EVENT_KIND_COLOURS)
UNMARKED_EVENTS = frozenset({"phase-start", "phase-end"})
# A phase covering at least this share of a chart's time axis (load in the background) gets no band.
BACKGROUND_SHARE = 0.9


# ---------------------------------------------------------------------------------------------- values


def _num(value: Any) -> float | None:
    """A finite float, or None (null, NaN, infinities, strings, booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _sig(x: float, digits: int = 3) -> str:
    """`x` with about `digits` significant digits, thousands separated, no exponent, no trailing zeros."""
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:,.{min(decimals, 12)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt(value: Any, unit: str = "") -> str:
    """A value with its unit for tables and legends; a dash when unknown."""
    v = _num(value)
    if v is None:
        return "—"
    if unit == "ratio":
        return f"{_sig(v * 100)}%"
    if unit == "%":
        return f"{_sig(v)}%"
    if unit == "x":
        return f"{_sig(v)}{TIMES}"
    return f"{_sig(v)} {unit}".rstrip()


def _compact(x: float) -> str:
    """A short tick label: 1.5k, 20M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return _sig(x / div) + suffix
    return _sig(x)


def _tick_label(v: float, unit: str) -> str:
    if unit == "ratio":
        return _sig(v * 100) + "%"
    if unit == "%":
        return _sig(v) + "%"
    if unit == "x":
        return _compact(v) + TIMES
    return _compact(v)


def _percent(value: Any) -> str:
    v = _num(value)
    return "—" if v is None else f"{_sig(v * 100, 4)}%"


def _clock(t: Any) -> str:
    v = _num(t)
    return "—" if v is None else datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rel(t: Any, origin: float) -> str:
    """`t` as m:ss from `origin` (negative before it); a dash when unknown."""
    v = _num(t)
    if v is None:
        return "—"
    d = v - origin
    m, s = divmod(round(abs(d)), 60)
    return f"{'-' if d < -0.5 else ''}{m}:{s:02d}"


def _duration(seconds: Any) -> str:
    v = _num(seconds)
    if v is None:
        return "—"
    if v < 60:
        return f"{v:.1f} s" if v < 10 else f"{v:.0f} s"
    total = round(v)
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    return f"{total // 3600}h {total % 3600 // 60:02d}m"


def _slug(value: Any) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", str(value).lower()).strip("-") or "x"


def _safe_href(target: Any) -> str | None:
    """`target` if it is a relative path or an http(s) URL (never javascript: and the like)."""
    if not isinstance(target, str) or not target.strip() or any(ord(c) < 32 for c in target):
        return None
    lowered = target.strip().lower()
    if lowered.startswith(("http://", "https://")):
        return target.strip()
    head = re.split(r"[/?#]", lowered, maxsplit=1)[0]
    return None if ":" in head else target.strip()


def _link(target: Any, text: Any = None) -> str:
    label = _esc(target if text is None else text)
    href = _safe_href(target)
    return f'<a href="{_esc(href)}">{label}</a>' if href else label


def _list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key)
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _outcome_colour(outcome: Any) -> str:
    return OUTCOME_COLOURS.get(str(outcome), UNKNOWN_COLOUR)


def _badge(outcome: Any) -> str:
    text = "not run" if outcome == "not_run" else str(outcome or "unknown")
    return f'<span class="badge" style="background:{_outcome_colour(outcome)}">{_esc(text)}</span>'


# ------------------------------------------------------------------------------------------------ time


@dataclass(frozen=True)
class Span:
    """A time interval [t0, t1] (epoch seconds) mapped onto a horizontal pixel range."""

    t0: float
    t1: float

    def x(self, t: float, left: float, width: float) -> float:
        return left + (t - self.t0) / (self.t1 - self.t0) * width

    def widened(self, times: Iterable[float]) -> Span:
        ts = list(times)
        t0, t1 = min([self.t0, *ts]), max([self.t1, *ts])
        return Span(t0, t1 if t1 > t0 else t0 + 1.0)


def _phase_times(phase: dict[str, Any], end: float) -> tuple[float, float] | None:
    """A phase's [start, end]; a phase that started but has no end (interrupted) runs to `end`."""
    start = _num(phase.get("started_at"))
    if start is None:
        return None
    finish = _num(phase.get("finished_at"))
    return start, max(start, end if finish is None else finish)


def _run_span(doc: dict[str, Any]) -> Span:
    """The run's time axis: started_at..finished_at, else what the phases and events cover."""
    known = [_num(doc.get("started_at")), _num(doc.get("finished_at"))]
    known += [_num(p.get(k)) for p in _list(doc, "phases") for k in ("started_at", "finished_at")]
    known += [_num(e.get("at")) for e in _list(doc, "events")]
    times = [t for t in known if t is not None]
    t0 = _num(doc.get("started_at"))
    t0 = t0 if t0 is not None else min(times, default=0.0)
    t1 = _num(doc.get("finished_at"))
    t1 = t1 if t1 is not None else max(times, default=t0)
    return Span(t0, t1 if t1 > t0 else t0 + 1.0)


def _time_ticks(span: Span, origin: float, max_ticks: int = 8) -> list[float]:
    """Round m:ss ticks (relative to `origin`) inside the span."""
    length = span.t1 - span.t0
    steps = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 14400, 43200, 86400)
    step = next((s for s in steps if length / s <= max_ticks), 86400 * math.ceil(length / 86400 / max_ticks))
    k = math.ceil((span.t0 - origin) / step - 1e-9)
    ticks = []
    while origin + k * step <= span.t1 + 1e-9:
        ticks.append(origin + k * step)
        k += 1
    return ticks


# ------------------------------------------------------------------------------------------------ page

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

GANTT_W, GANTT_LEFT, GANTT_RIGHT, ROW_H = 1280, 210, 24, 28


def _event_colour(event: dict[str, Any]) -> str:
    kind = str(event.get("kind"))
    if event.get("severity") == "critical":
        return SEVERITY_COLOURS["critical"]
    return EVENT_KIND_COLOURS.get(kind) or SEVERITY_COLOURS.get(str(event.get("severity")), "#6e7781")


def _gantt_x(span: Span, t: float) -> float:
    return span.x(t, GANTT_LEFT, GANTT_W - GANTT_LEFT - GANTT_RIGHT)


def _marker(event: dict[str, Any], x: float, y: float, origin: float, height: float) -> str:
    """A diamond for what matters (faults, safeguards, rollbacks...), a thin tick for steps.

    A critical event also gets a dashed guide down the whole timeline.
    """
    tip = f"{_rel(event.get('at'), origin)} {event.get('kind')}: {event.get('message') or ''}"
    colour = _event_colour(event)
    if str(event.get("kind")) not in MARKED_EVENTS:
        shape = f'<rect x="{x - 1:.1f}" y="{y - 11:.1f}" width="2" height="22" fill="#57606a"/>'
        return f"<g><title>{_esc(tip)}</title>{shape}</g>"
    guide = ""
    if event.get("severity") == "critical":
        guide = (f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height:.1f}" stroke="{colour}" stroke-width="1" '
                 'stroke-dasharray="3 3"/>')
    shape = (f'<path d="M{x:.1f} {y - 8:.1f}l7 8-7 8-7-8z" fill="{colour}" stroke="#fff" stroke-width="2" '
             'paint-order="stroke"/>')
    return f"<g><title>{_esc(tip)}</title>{guide}{shape}</g>"


def _gantt_axis(span: Span, origin: float, height: float) -> str:
    out = []
    for t in _time_ticks(span, origin, 12):
        x = _gantt_x(span, t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height:.1f}" stroke="#eaeef2"/>'
                   f'<text x="{x:.1f}" y="{height + 15:.1f}" text-anchor="middle" font-size="11" '
                   f'fill="#59636e">{_rel(t, origin)}</text>')
    return "".join(out)


def _gantt_bar(phase: dict[str, Any], row: int, span: Span, origin: float) -> str:
    """A phase's row: its name, a bar in its outcome's colour, and the outcome and duration beside it."""
    y = row * ROW_H
    outcome = str(phase.get("outcome") or "unknown").replace("_", " ")
    label = (f'<text x="8" y="{y + 18}" font-size="12" font-weight="600" fill="#1f2328">'
             f'{_esc(phase.get("name"))}<tspan fill="#59636e" font-weight="400"> · {_esc(phase.get("kind"))}'
             "</tspan></text>")
    times = _phase_times(phase, span.t1)
    if times is None:
        return label + (f'<text x="{GANTT_LEFT + 4}" y="{y + 18}" font-size="11" font-style="italic" '
                        f'fill="#8c959f">{_esc(outcome)}</text>')
    x0, x1 = _gantt_x(span, times[0]), _gantt_x(span, times[1])
    x1 = max(x1, x0 + 3.0)
    tip = f"{phase.get('name')}: {phase.get('outcome')} {_rel(times[0], origin)} → {_rel(times[1], origin)}"
    text = f"{outcome} · {_duration(times[1] - times[0])}"
    colour = _outcome_colour(phase.get("outcome"))
    need = len(text) * 6.5 + 12
    tx, anchor, fill = ((x1 + 6, "start", colour) if GANTT_W - x1 > need else (x0 - 6, "end", colour)
                        if x0 - GANTT_LEFT > need else (x0 + 7, "start", "#fff"))
    return label + (
        f'<g><title>{_esc(tip)}</title><rect x="{x0:.1f}" y="{y + 6}" width="{x1 - x0:.1f}" height="16" rx="4" '
        f'fill="{colour}"/><text x="{tx:.1f}" y="{y + 18}" text-anchor="{anchor}" font-size="11" font-weight="600" '
        f'fill="{fill}">{_esc(text)}</text></g>'
    )


def _gantt(doc: dict[str, Any], span: Span, origin: float) -> str:
    """Phases as bars on the run's time axis, one row each, with their events on them."""
    phases = _list(doc, "phases")
    rows = {str(p.get("name")): i for i, p in enumerate(phases)}
    events = [e for e in _list(doc, "events") if _num(e.get("at")) is not None and e.get("kind") not in UNMARKED_EVENTS]
    loose = [e for e in events if str(e.get("phase")) not in rows]
    n_rows = len(phases) + (1 if loose else 0)
    if n_rows == 0:
        return ""
    span = span.widened(_num(e.get("at")) or span.t0 for e in events)
    height = n_rows * ROW_H
    parts = [_gantt_axis(span, origin, height)]
    parts += [_gantt_bar(p, i, span, origin) for i, p in enumerate(phases)]
    if loose:
        parts.append(f'<text x="8" y="{len(phases) * ROW_H + 18}" font-size="12" fill="#59636e">run events</text>')
    steps = [e for e in events if e.get("kind") not in MARKED_EVENTS]
    for e in steps + [e for e in events if e.get("kind") in MARKED_EVENTS]:  # diamonds over ticks
        row = rows.get(str(e.get("phase")), len(phases))
        parts.append(_marker(e, _gantt_x(span, _num(e.get("at")) or span.t0), row * ROW_H + 14, origin, height))
    return (f'<svg class="gantt" viewBox="0 0 {GANTT_W} {height + 22}" role="img" '
            f'aria-label="Timeline of phases and events">{"".join(parts)}</svg>')


def _gantt_legend() -> str:
    outcomes = ("pass", "fail", "stopped", "interrupted", "error", "skipped")
    keys = [f'<span><i style="border-color:{OUTCOME_COLOURS[o]}"></i>{o}</span>' for o in outcomes]
    keys += [f'<span style="color:{c}">◆</span><span>{k}</span>' for k, c in EVENT_KIND_COLOURS.items()]
    return f'<div class="legend">{"".join(keys)}<span>│ step</span></div>'


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

CHART_W, WIDE_CHART_W, CHART_H = 640, 1300, 250  # viewBox sizes: half-width and full-width cards
CHART_LEFT, CHART_RIGHT, CHART_BOTTOM, LANE_H = 56, 14, 24, 13


@dataclass(frozen=True)
class Frame:
    """Where the plot sits in a chart's SVG (viewBox units): below `lanes` rows of phase labels."""

    width: float
    lanes: int

    @property
    def left(self) -> float:
        return CHART_LEFT

    @property
    def right(self) -> float:
        return self.width - CHART_RIGHT

    @property
    def top(self) -> float:
        return 8 + max(self.lanes, 1) * LANE_H  # the first row also holds the unit

    @property
    def bottom(self) -> float:
        return CHART_H - CHART_BOTTOM

    def x(self, span: Span, t: float) -> float:
        return span.x(t, self.left, self.right - self.left)


@dataclass(frozen=True)
class YScale:
    """The value axis: linear or log10, with its ticks."""

    lo: float
    hi: float
    log: bool
    ticks: tuple[float, ...]

    def y(self, v: float, frame: Frame) -> float:
        """`v`'s height in the frame, clamped to the axis."""
        v = min(max(v, self.lo), self.hi)
        if self.log:
            lo, hi, v = math.log10(self.lo), math.log10(self.hi), math.log10(v)
        else:
            lo, hi = self.lo, self.hi
        return frame.bottom - (v - lo) / (hi - lo) * (frame.bottom - frame.top)


def _nice_step(raw: float) -> float:
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))


def _linear_scale(values: list[float], unit: str = "") -> YScale:
    """From 0 (or below, for negative values) to a round number a little above the largest value.

    A share (ratio up to 1, percentage up to 100) stops at 100%.
    """
    lo, hi = min(min(values, default=0.0), 0.0), max(values, default=1.0)
    full = {"ratio": 1.0, "%": 100.0}.get(unit)
    if hi > 0:  # headroom: a line or threshold at the maximum stays off the frame
        hi = min(hi * 1.05, full) if full is not None and hi <= full else hi * 1.05
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    step = _nice_step((hi - lo) / 5)
    lo_n, hi_n = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    ticks = tuple(round(lo_n + i * step, 12) for i in range(round((hi_n - lo_n) / step) + 1))
    return YScale(lo_n, hi_n, False, ticks)


def _log_scale(values: list[float]) -> YScale:
    """Whole decades around the positive values."""
    positive = [v for v in values if v > 0]
    lo_e = math.floor(math.log10(min(positive, default=0.1)))
    hi_e = max(math.ceil(math.log10(max(positive, default=10.0))), lo_e + 1)
    every = max(1, math.ceil((hi_e - lo_e) / 6))
    return YScale(10.0**lo_e, 10.0**hi_e, True, tuple(10.0**e for e in range(lo_e, hi_e + 1, every)))


Segment = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Series:
    """A series' drawable points, split into runs at the gaps."""

    label: str
    colour: str
    segments: tuple[Segment, ...]

    @property
    def points(self) -> list[tuple[float, float]]:
        return [p for seg in self.segments for p in seg]


def _segments(points: Any, log: bool) -> tuple[Segment, ...]:
    """Consecutive drawable (t, v) points; a null/NaN value (or <= 0 on a log scale) breaks the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points if isinstance(points, list) else []:
        pair = point if isinstance(point, list | tuple) and len(point) >= 2 else (None, None)
        t, v = _num(pair[0]), _num(pair[1])
        if t is None or v is None or (log and v <= 0):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((t, v))
    return tuple(tuple(run) for run in runs if run)


def _series(chart: dict[str, Any]) -> list[Series]:
    log = bool(chart.get("log_scale"))
    out = []
    for i, s in enumerate(_list(chart, "series")):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        out.append(Series(str(s.get("label") or f"series {i + 1}"), colour, _segments(s.get("points"), log)))
    return out


def _thresholds(chart: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(label, value, colour) of the thresholds that can be drawn."""
    out = []
    for i, th in enumerate(_list(chart, "thresholds")):
        v = _num(th.get("value"))
        if v is not None and not (chart.get("log_scale") and v <= 0):
            out.append((str(th.get("label") or ""), v, THRESHOLD_COLOURS[i % len(THRESHOLD_COLOURS)]))
    return out


@dataclass(frozen=True)
class Band:
    """A phase's shaded span on the charts, with the lane its label sits in."""

    name: str
    kind: str
    t0: float
    t1: float
    lane: int


def _label_w(text: str) -> float:
    return len(text) * 6.0 + 8


def _bands(phases: list[dict[str, Any]], span: Span) -> list[Band]:
    """Phases to shade (not those covering nearly the whole run), labels laid out in non-overlapping lanes.

    Lanes are worked out on a half-width chart, where labels take the most time: they also fit the wide ones.
    """
    frame = Frame(CHART_W, 0)
    bands: list[Band] = []
    lane_ends: list[float] = []
    spans = [(p, _phase_times(p, span.t1)) for p in phases]
    for phase, times in sorted(((p, t) for p, t in spans if t), key=lambda pt: pt[1][0]):
        if times[1] - times[0] >= BACKGROUND_SHARE * (span.t1 - span.t0):
            continue
        name = str(phase.get("name") or "")
        x0 = _label_x(frame.x(span, times[0]), name, frame)
        lane = next((i for i, end in enumerate(lane_ends) if end <= x0), len(lane_ends))
        lane_ends[lane:lane + 1] = [x0 + _label_w(name)]
        bands.append(Band(name, str(phase.get("kind") or ""), times[0], times[1], lane))
    return bands


def _label_x(x: float, text: str, frame: Frame) -> float:
    """A band label's left edge: at the band's start, pulled left so that it stays inside the chart."""
    return min(x, frame.width - 2 - _label_w(text))


def _band_svg(bands: list[Band], span: Span, frame: Frame) -> str:
    out = []
    for b in bands:
        colour = KIND_COLOURS.get(b.kind, OTHER_KIND_COLOUR)
        x0, x1 = frame.x(span, max(b.t0, span.t0)), frame.x(span, min(b.t1, span.t1))
        ly = 11 + b.lane * LANE_H
        lx = _label_x(x0, b.name, frame)
        out.append(
            f"<g><title>{_esc(b.name)} ({_esc(b.kind)})</title>"
            f'<rect x="{x0:.1f}" y="{frame.top:.1f}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{frame.bottom - frame.top:.1f}" fill="{colour}" fill-opacity="0.12"/>'
            f'<rect x="{lx:.1f}" y="{ly - 9:.1f}" width="3" height="11" rx="1" fill="{colour}"/>'
            f'<text x="{lx + 6:.1f}" y="{ly:.1f}" font-size="10" fill="#59636e">{_esc(b.name)}</text></g>'
        )
    return "".join(out)


def _series_svg(series: list[Series], span: Span, scale: YScale, frame: Frame) -> str:
    out = []
    for s in series:
        for seg in s.segments:
            xy = [(frame.x(span, t), scale.y(v, frame)) for t, v in seg]
            if len(xy) == 1:
                out.append(f'<circle cx="{xy[0][0]:.1f}" cy="{xy[0][1]:.1f}" r="2.5" fill="{s.colour}"/>')
                continue
            d = "M" + "L".join(f"{x:.1f} {y:.1f}" for x, y in xy)
            out.append(f'<path d="{d}" fill="none" stroke="{s.colour}" stroke-width="2" '
                       f'stroke-linejoin="round" stroke-linecap="round"><title>{_esc(s.label)}</title></path>')
    return "".join(out)


def _threshold_svg(thresholds: list[tuple[str, float, str]], scale: YScale, frame: Frame) -> str:
    out = []
    for label, value, colour in thresholds:
        y = scale.y(value, frame)
        out.append(
            f'<line x1="{frame.left:.1f}" x2="{frame.right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            'stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text x="{frame.right - 4:.1f}" y="{y - 4:.1f}" text-anchor="end" font-size="10.5" font-weight="600" '
            f'fill="{colour}" stroke="#fff" stroke-width="3" paint-order="stroke">{_esc(label)}</text>'
        )
    return "".join(out)


def _axes_svg(scale: YScale, span: Span, origin: float, unit: str, frame: Frame) -> str:
    out = []
    for v in scale.ticks:
        y = scale.y(v, frame)
        out.append(f'<line x1="{frame.left}" x2="{frame.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>'
                   f'<text x="{frame.left - 6}" y="{y + 3.5:.1f}" text-anchor="end" font-size="10.5" '
                   f'fill="#59636e">{_esc(_tick_label(v, unit))}</text>')
    for t in _time_ticks(span, origin, 8 if frame.width <= CHART_W else 16):
        x = frame.x(span, t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.bottom}" y2="{frame.bottom + 4}" stroke="#8c959f"/>'
                   f'<text x="{x:.1f}" y="{frame.bottom + 16}" text-anchor="middle" font-size="10.5" '
                   f'fill="#59636e">{_rel(t, origin)}</text>')
    out.append(f'<line x1="{frame.left}" x2="{frame.right}" y1="{frame.bottom}" y2="{frame.bottom}" stroke="#8c959f"/>')
    if unit and unit not in ("ratio", "%", "x"):
        out.append(f'<text x="{frame.left - 6}" y="{frame.top - LANE_H + 3}" text-anchor="end" '
                   f'font-size="10" fill="#8c959f">{_esc(unit)}</text>')
    return "".join(out)


def _chart_svg(chart: dict[str, Any], span: Span, origin: float, bands: list[Band], frame: Frame) -> str:
    """One line chart; `data-points` is the number of points it drew."""
    series = _series(chart)
    thresholds = _thresholds(chart)
    points = [p for s in series for p in s.points]
    span = span.widened(t for t, _ in points)
    values = [v for _, v in points] + [v for _, v, _ in thresholds]
    unit = str(chart.get("unit") or "")
    scale = _log_scale(values) if chart.get("log_scale") else _linear_scale(values, unit)
    parts = [
        _band_svg(bands, span, frame),
        _axes_svg(scale, span, origin, unit, frame),
        _threshold_svg(thresholds, scale, frame),
        _series_svg(series, span, scale, frame),
    ]
    if not points:
        parts.append(f'<text class="no-data" x="{(frame.left + frame.right) / 2:.1f}" '
                     f'y="{(frame.top + frame.bottom) / 2:.1f}" text-anchor="middle" font-size="15" font-weight="600" '
                     'fill="#8c959f">no data</text>')
    return (f'<svg class="chart" data-chart="{_esc(chart.get("id"))}" data-points="{len(points)}" '
            f'viewBox="0 0 {frame.width} {CHART_H}" role="img" aria-label="{_esc(chart.get("title"))}">'
            f'{"".join(parts)}</svg>')


def _legend(chart: dict[str, Any], series: list[Series]) -> str:
    unit = str(chart.get("unit") or "")
    items = []
    for s in series:
        values = [v for _, v in s.points]
        stats = (f'<span class="muted">max {_esc(_fmt(max(values), unit))} · last {_esc(_fmt(values[-1], unit))}'
                 "</span>" if values else '<span class="muted">no data</span>')
        items.append(f'<span><i style="border-color:{s.colour}"></i>{_esc(s.label)} {stats}</span>')
    for label, value, colour in _thresholds(chart):
        items.append(f'<span><i class="dash" style="border-color:{colour}"></i>{_esc(label or _fmt(value, unit))}'
                     "</span>")
    return f'<div class="legend">{"".join(items)}</div>'


def _chart_card(chart: dict[str, Any], span: Span, origin: float, bands: list[Band], frame: Frame) -> str:
    wide = " wide" if frame.width > CHART_W else ""
    scale = '<span class="muted small">log scale</span>' if chart.get("log_scale") else ""
    note = f'<p class="note">{_esc(chart.get("note"))}</p>' if chart.get("note") else ""
    return (
        f'<div class="card chart-card{wide}" id="chart-{_esc(_slug(chart.get("id")))}"><div class="chart-head">'
        f'<h3>{_esc(chart.get("title") or chart.get("id"))}</h3>{scale}</div>'
        f"{_legend(chart, _series(chart))}{_chart_svg(chart, span, origin, bands, frame)}{note}</div>"
    )


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
