"""The report's charts, drawn as inline SVG (no script, no library): the time axis shared by the page's timeline
and every chart, the Gantt-style phase timeline with its event markers, and the line charts with linear or log
scales, threshold lines and the phases as background bands. Each chart is an `<svg class="chart">` with
`data-chart` and `data-points` (the number of finite points drawn)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from openbell.report.style import (
    EVENT_KIND_COLOURS,
    KIND_COLOURS,
    OTHER_KIND_COLOUR,
    OUTCOME_COLOURS,
    SERIES_COLOURS,
    SEVERITY_COLOURS,
    THRESHOLD_COLOURS,
    _duration,
    _esc,
    _fmt,
    _list,
    _num,
    _outcome_colour,
    _rel,
    _slug,
    _tick_label,
)

# Events drawn as diamonds on the timeline; other events (steps) are thin ticks, phase-start/end none.
MARKED_EVENTS = frozenset(EVENT_KIND_COLOURS)


UNMARKED_EVENTS = frozenset({"phase-start", "phase-end"})


# A phase covering at least this share of a chart's time axis (load in the background) gets no band.
BACKGROUND_SHARE = 0.9


# ---------------------------------------------------------------------------------------------- values


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
