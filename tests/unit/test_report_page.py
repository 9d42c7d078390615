"""The gameday's HTML report on synthetic documents: verdicts, phases, charts with gaps, escaping."""

from __future__ import annotations

import copy
import html
import math
import random
import re
import zlib
from pathlib import Path
from typing import Any

import pytest

from openbell.report.page import render_html, write_report
from openbell.report.style import TIMES
from tests.chromium import count_colour, png_pixels

T0 = 1795000000.0  # 2026-11-18 11:06:40 UTC; the sample run lasts 210 s
PHASES = [  # name, kind, start, end (seconds from T0)
    ("market-open", "load", 0, 210),
    ("canary-at-the-bell", "canary", 30, 110),
    ("gateway-replica-loss", "chaos", 115, 150),
    ("kafka-broker-loss", "chaos", 150, 185),
    ("slo-status", "slo", 195, 205),
]


def _points(fn: Any, step: float = 5.0, end: float = 210.0) -> list[list[float | None]]:
    return [[T0 + i * step, fn(i * step)] for i in range(int(end / step) + 1)]


def _latency(q: float, canary_bad: bool) -> Any:
    def fn(t: float) -> float | None:
        if 118 <= t <= 126:  # the scrape missed while a gateway restarted
            return None
        spike = 9.0 * math.exp(-((t - 120) / 12) ** 2) + 6.0 * math.exp(-((t - 160) / 10) ** 2)
        if canary_bad and 40 <= t <= 72:  # the faulty canary's share of the traffic is slow
            spike += 17.5 * (t - 40) / 32
        return round(q * (4.0 + 0.8 * math.sin(t / 17) + spike), 3)
    return fn


def _charts(outcome: str) -> list[dict[str, Any]]:
    bad = outcome == "fail"

    def users(t: float) -> float:
        return round(min(t / 30, 1.0) * 200)

    def share(t: float) -> float:
        if bad:
            return 0.0 if t < 40 or t > 71 else 0.1 if t < 60 else 0.25
        return 0.0 if t < 40 else 0.1 if t < 60 else 0.25 if t < 80 else 0.5 if t < 105 else 1.0 if t < 112 else 0.0

    return [
        {"id": "users", "title": "Virtual users", "unit": "users", "group": "Load",
         "series": [{"label": "users", "points": _points(users)}], "thresholds": []},
        {"id": "msg-rate", "title": "Messages pushed", "unit": "msg/s", "group": "Load",
         "series": [{"label": "delivered", "points": _points(lambda t: round(users(t) * 22.5 + 40 * math.sin(t)))},
                    {"label": "published", "points": _points(lambda t: round(users(t) * 22.7))}],
         "thresholds": []},
        {"id": "push-latency", "title": "Push latency percentiles", "unit": "ms", "group": "Latency",
         "series": [{"label": "p50", "points": _points(_latency(1.0, bad))},
                    {"label": "p95", "points": _points(_latency(2.2, bad))},
                    {"label": "p99", "points": _points(_latency(3.1, bad))}],
         "thresholds": [{"label": "SLO 50 ms", "value": 50.0}]},
        {"id": "error-ratio", "title": "Error ratio (5m)", "unit": "ratio", "group": "Errors and burn",
         "series": [{"label": "gateway",
                     "points": _points(lambda t: 0.0004 + 0.004 * math.exp(-((t - 122) / 8) ** 2))}],
         "thresholds": [{"label": "budget 0.1%", "value": 0.001}]},
        {"id": "burn-rate", "title": "Burn rate per window", "unit": "x", "group": "Errors and burn", "log_scale": True,
         "series": [{"label": "5m", "points": _points(lambda t: 0.4 + 4.0 * math.exp(-((t - 122) / 8) ** 2))},
                    {"label": "1h", "points": _points(lambda t: 0.3 + 0.02 * t)}],
         "thresholds": [{"label": "page 14.4x", "value": 14.4}, {"label": "ticket 6x", "value": 6.0}],
         "note": "Multiwindow burn rates of gateway-push-latency; the alert pages above 14.4x."},
        {"id": "canary-share", "title": "Traffic share per version", "unit": "ratio", "group": "Canary",
         "series": [{"label": "stable", "points": _points(lambda t: 1 - share(t), 2.0)},
                    {"label": "canary", "points": _points(share, 2.0)}],
         "thresholds": []},
        {"id": "consumer-lag", "title": "Consumer lag", "unit": "records", "group": "Kafka",
         "series": [{"label": "feed-enricher", "points": _points(
             lambda t: round(30 + 900 * math.exp(-((t - 158) / 9) ** 2)))}],
         "thresholds": [{"label": "lag budget 1k", "value": 1000.0}]},
    ]


def _events(outcome: str) -> list[dict[str, Any]]:
    events = []
    for name, _kind, start, end in PHASES:
        events.append({"at": T0 + start, "phase": name, "kind": "phase-start", "message": f"{name} started",
                       "severity": "info"})
        events.append({"at": T0 + end, "phase": name, "kind": "phase-end", "message": f"{name} ended",
                       "severity": "info"})
    for at, weight in ((40, 10), (60, 25), (80, 50))[:2 if outcome == "fail" else 3]:
        events.append({"at": T0 + at, "phase": "canary-at-the-bell", "kind": "step",
                       "message": f"canary weight {weight}%", "severity": "info"})
    events += [
        {"at": T0 + 117, "phase": "gateway-replica-loss", "kind": "fault", "message": "killed gateway-1 (SIGKILL)",
         "severity": "warning"},
        {"at": T0 + 152, "phase": "kafka-broker-loss", "kind": "fault", "message": "stopped broker 2",
         "severity": "warning"},
        {"at": T0 + 133, "phase": "gateway-replica-loss", "kind": "safeguard",
         "message": "gateway-1 back after 16 s", "severity": "info"},
    ]
    if outcome == "fail":
        events += [
            {"at": T0 + 70, "phase": "canary-at-the-bell", "kind": "gate",
             "message": "push latency p99 61 ms > 50 ms", "severity": "critical"},
            {"at": T0 + 71, "phase": "canary-at-the-bell", "kind": "rollback",
             "message": "canary rolled back to v1.8.2", "severity": "critical"},
        ]
    else:
        events.append({"at": T0 + 105, "phase": "canary-at-the-bell", "kind": "promoted",
                       "message": "v1.9.0 promoted", "severity": "info"})
    return sorted(events, key=lambda e: e["at"])


VERDICTS = {
    "pass": ({"outcome": "pass", "exit_code": 0, "reason": "every phase passed and no gated SLO burned too fast",
              "reasons": []}),
    "fail": ({"outcome": "fail", "exit_code": 1, "reason": "canary-at-the-bell failed its gate: rolled back",
              "reasons": ["canary-at-the-bell: push latency p99 61 ms > 50 ms at 1:10",
                          "gateway-push-latency burned 16.2x its budget over 5m"]}),
    "interrupted": ({"outcome": "interrupted", "exit_code": 130,
                     "reason": "interrupted (Ctrl-C) during kafka-broker-loss",
                     "reasons": ["the sandbox was left healthy"]}),
}


def sample_doc(outcome: str = "pass") -> dict[str, Any]:
    """A realistic gameday document: five phases over 3m30s, seven charts, four SLOs."""
    phases = []
    for name, kind, start, end in PHASES:
        phase_outcome = "pass"
        if outcome == "fail" and kind == "canary":
            phase_outcome = "fail"
        phases.append({"name": name, "kind": kind, "description": f"the {name} phase", "outcome": phase_outcome,
                       "reason": "", "started_at": T0 + start, "finished_at": T0 + end, "duration_s": end - start,
                       "exit_code": 0 if phase_outcome == "pass" else 1, "figures": {"events": 3, "p99 ms": 18.26},
                       "log": f"phases/{name}.log"})
    phases[0]["figures"] = {"users": 200, "messages": 912345, "dropped": 0}
    if outcome == "fail":
        phases[1]["reason"] = "push latency p99 61 ms > 50 ms: rolled back"
    doc: dict[str, Any] = {
        "schema": "openbell/gameday/v1", "gameday": "opening-bell",
        "description": "NYSE open: load, a canary at the bell, gateway and broker loss",
        "plan": "gamedays/opening-bell.yaml", "target": "sandbox", "run_id": "20261122T120301Z",
        "started_at": T0, "finished_at": T0 + 210, "duration_s": 210.0,
        "verdict": copy.deepcopy(VERDICTS.get(outcome, VERDICTS["pass"])),
        "phases": phases, "events": _events(outcome), "charts": _charts(outcome),
        "slos": [
            {"name": "gateway-push-latency", "service": "gateway", "objective": 0.99, "period_s": 2592000,
             "error_budget": 0.01, "gated": True, "budget_consumed": 0.0012, "burn_rate": 0.9, "error_ratio": 0.009,
             "budget_remaining": 0.97, "outcome": "pass", "runbook": "runbooks/gateway-push-latency.md", "note": None},
            {"name": "gateway-availability", "service": "gateway", "objective": 0.999, "period_s": 2592000,
             "error_budget": 0.001, "gated": True, "budget_consumed": 0.0046, "burn_rate": 2.1,
             "error_ratio": 0.0021, "budget_remaining": 0.81, "outcome": "fail" if outcome == "fail" else "pass",
             "runbook": "runbooks/gateway-availability.md", "note": None},
            {"name": "ledger-write-latency", "service": "ledger", "objective": 0.995, "period_s": 2592000,
             "error_budget": 0.005, "gated": False, "budget_consumed": None, "burn_rate": None, "error_ratio": None,
             "budget_remaining": None, "outcome": "inconclusive", "runbook": None, "note": "no traffic"},
        ],
        "alerts": [],
        "artifacts": {"json": "gameday.json", "junit": "junit.xml", "html": "index.html",
                      "logs": {name: f"phases/{name}.log" for name, *_ in PHASES}},
    }
    doc["verdict"]["outcome"] = outcome
    if outcome == "fail":
        doc["alerts"] = [{"name": "SLOBurnGatewayPushLatencyPage", "severity": "page", "slo": "gateway-push-latency",
                          "first_at": T0 + 72, "last_at": T0 + 96, "runbook": "runbooks/gateway-push-latency.md",
                          "summary": "gateway-push-latency is burning its budget 16x too fast"}]
    if outcome == "interrupted":
        doc["finished_at"], doc["duration_s"] = T0 + 160, 160.0
        phases[0]["finished_at"] = phases[0]["duration_s"] = None
        phases[0]["outcome"] = "interrupted"
        phases[3].update(outcome="interrupted", finished_at=None, duration_s=None)
        phases[4].update(outcome="not_run", started_at=None, finished_at=None, duration_s=None, figures=None,
                         log=None)
        doc["events"] = [e for e in doc["events"] if e["at"] <= T0 + 160]
        for chart in doc["charts"]:
            for series in chart["series"]:
                series["points"] = [p for p in series["points"] if p[0] <= T0 + 160]
    return doc


def finite_points(chart: dict[str, Any]) -> int:
    """What the report should draw: points with a finite time and value (and > 0 on a log scale)."""
    n = 0
    for series in chart["series"]:
        for t, v in series["points"]:
            ok = t is not None and v is not None and math.isfinite(t) and math.isfinite(v)
            n += ok and (not chart.get("log_scale") or v > 0)
    return n


def data_points(page: str) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r'data-chart="([^"]*)" data-points="(\d+)"', page)}


def _chart(doc: dict[str, Any], chart_id: str) -> dict[str, Any]:
    return next(c for c in doc["charts"] if c["id"] == chart_id)


def _svg(page: str, chart_id: str) -> str:
    start = page.index(f'data-chart="{chart_id}"')
    return page[start:page.index("</svg>", start)]


# --------------------------------------------------------------------------------------------- verdict


@pytest.mark.parametrize("outcome,word,colour", [
    ("pass", "PASS", "#1a7f37"), ("fail", "FAIL", "#cf222e"), ("interrupted", "INTERRUPTED", "#9a6700"),
])
def test_the_verdict_comes_first_in_its_colour(outcome: str, word: str, colour: str) -> None:
    doc = sample_doc(outcome)
    page = render_html(doc)
    banner = re.search(r'<header id="verdict"[^>]*>', page)
    assert banner, "no verdict banner"
    assert f'data-outcome="{outcome}"' in banner.group(0) and f"background:{colour}" in banner.group(0)
    assert f'<div class="verdict-word">{word}</div>' in page
    assert doc["verdict"]["reason"] in page
    body = page[page.index("<body>"):]
    order = [body.index(marker) for marker in ('id="verdict"', 'id="phases"', 'id="timeline"', 'id="charts"',
                                               'id="slos"', 'id="alerts"', 'id="artifacts"')]
    assert order == sorted(order)
    assert body.index('id="verdict"') < body.index("<table")


def test_a_failed_run_lists_its_reasons_and_the_rollback() -> None:
    doc = sample_doc("fail")
    page = render_html(doc)
    reasons = page[page.index('id="reasons"'):page.index("</ul>")]
    for reason in doc["verdict"]["reasons"]:
        assert f"<li>{html.escape(reason)}</li>" in reasons
    row = re.search(r'<tr data-phase="canary-at-the-bell">.*?</tr>', page)
    assert row and "background:#cf222e" in row.group(0) and "rolled back" in row.group(0)
    assert "1:11 rollback: canary rolled back to v1.8.2" in page  # the Gantt marker's tooltip, at m:ss
    assert 'fill="#cf222e" stroke="#fff"' in page  # ... drawn as a red diamond
    assert 'stroke="#cf222e" stroke-width="1" stroke-dasharray="3 3"' in page  # with a guide down the timeline
    assert '<tr class="ev-critical"><td class="num">1:11</td>' in page


def test_the_reason_of_a_failure_is_said_once_at_the_top_not_in_every_row() -> None:
    doc = sample_doc("fail")
    why = "SLO gate: gateway/gateway-push-latency{exchange=XLON}: page 6h/30m: burn rate 7.1x exceeds 6x"
    doc["verdict"].update(reason=why, reasons=[why, "kafka-broker-loss: stopped"])
    for phase in doc["phases"]:
        if phase["outcome"] != "pass":
            phase["reason"] = "stopped with the gameday"
    page = render_html(doc)
    assert page.count(html.escape(why)) == 1
    assert page.index(html.escape(why)) < page.index('id="phases"')
    assert "<li>kafka-broker-loss: stopped</li>" in page


def test_an_unhealthy_platform_has_its_own_outcome_and_colour() -> None:
    doc = sample_doc("fail")
    line = ("gateway/gateway-push-latency{exchange=XLON}: page 6h/30m: burn rate 7.1x; burning since 14:02:11Z "
            "(3m 10s ago); runbook runbooks/gateway-push-latency.md")
    doc["verdict"] = {"outcome": "unhealthy", "exit_code": 1, "reason": f"unhealthy before the gameday: {line}",
                      "reasons": [line]}
    page = render_html(doc)
    assert 'data-outcome="unhealthy"' in page and "background:#8250df" in page
    assert page.count(html.escape(line)) == 1


def test_a_calibrated_load_says_what_it_ran_at_of_what_the_machine_sustains() -> None:
    doc = sample_doc("pass")
    doc["load"] = [{"phase": "market-open", "profile": "nyse-open", "scale": 0.0011, "capacity_scale": 0.0022,
                    "capped": False, "capacity_fraction": 0.5, "headroom": 0.5, "measured_at": 1764770400.0,
                    "cached": True}]
    page = render_html(doc)
    line = re.search(r'<div class="verdict-plan" data-load="market-open">(.*?)</div>', page)
    assert line is not None
    assert line.group(1) == ("Load market-open: scale 0.0011, 50% of 0.0022, the largest scale every SLO held at on "
                             "this machine (calibrated 2025-12-03 14:00Z, kept): 50% headroom left")


def test_an_error_verdict_is_grey_and_an_unknown_one_does_not_break_the_page() -> None:
    doc = sample_doc("pass")
    doc["verdict"] = {"outcome": "error", "exit_code": 3, "reason": "the sandbox did not come up", "reasons": []}
    assert 'data-outcome="error" style="background:#57606a"' in render_html(doc)
    doc["verdict"] = {"outcome": "weird"}
    page = render_html(doc)
    assert 'data-outcome="weird"' in page and "WEIRD" in page and "no reason given" in page


def test_the_header_shows_utc_clock_times_and_the_wall_time() -> None:
    page = render_html(sample_doc("pass"))
    assert "2026-11-18 11:06:40 UTC" in page and "2026-11-18 11:10:10 UTC" in page
    assert "<dd>3m 30s</dd>" in page and "<dd>20261122T120301Z</dd>" in page and "<dd>sandbox</dd>" in page


# ---------------------------------------------------------------------------------------------- phases


def test_phases_show_relative_starts_durations_and_figures() -> None:
    page = render_html(sample_doc("pass"))
    row = re.search(r'<tr data-phase="gateway-replica-loss">.*?</tr>', page)
    assert row
    assert '<td class="num">1:55</td><td class="num">35 s</td>' in row.group(0)
    assert '<span class="fig">p99 ms <b>18.3</b></span>' in row.group(0)
    assert '<span class="fig">messages <b>912,345</b></span>' in page
    assert '<a href="phases/gateway-replica-loss.log">log</a>' in row.group(0)


def test_an_interrupted_run_shows_unfinished_and_unrun_phases() -> None:
    doc = sample_doc("interrupted")
    page = render_html(doc)
    row = re.search(r'<tr data-phase="slo-status">.*?</tr>', page)
    assert row and ">not run</span>" in row.group(0) and "<td class=\"num\">—</td>" in row.group(0)
    assert "<dd>2m 40s</dd>" in page
    # The unfinished broker-loss phase is drawn up to the end of the run; the unrun one as a note.
    assert "kafka-broker-loss: interrupted 2:30 → 2:40" in page
    assert 'font-style="italic" fill="#8c959f">not run</text>' in page


@pytest.mark.parametrize("figures", [None, {}, {"users": None, "mode": "<b>steady</b>", "rate": float("nan")}])
def test_empty_or_null_figures(figures: Any) -> None:
    doc = sample_doc("pass")
    doc["phases"][2]["figures"] = figures
    page = render_html(doc)
    row = re.search(r'<tr data-phase="gateway-replica-loss">.*?</tr>', page)
    assert row
    if figures:
        assert '<span class="fig">users <b>—</b></span>' in row.group(0)
        assert '<span class="fig">rate <b>—</b></span>' in row.group(0)
        assert "&lt;b&gt;steady&lt;/b&gt;" in row.group(0)
    else:
        assert 'class="fig"' not in row.group(0)


def test_events_are_listed_at_m_ss_and_step_events_are_ticks() -> None:
    page = render_html(sample_doc("pass"))
    assert ('<tr><td class="num">1:00</td><td>canary-at-the-bell</td><td><span class="kind" style="color:#6e7781">'
            "step</span></td><td>canary weight 25%</td></tr>") in page
    assert '<tr class="ev-warning"><td class="num">1:57</td>' in page
    assert "<title>1:00 step: canary weight 25%</title><rect" in page
    assert "phase-start:" not in page  # phase bounds are the bars themselves


# ---------------------------------------------------------------------------------------------- charts


def test_each_chart_reports_the_points_it_drew_grouped_in_order() -> None:
    doc = sample_doc("pass")
    page = render_html(doc)
    assert data_points(page) == {c["id"]: finite_points(c) for c in doc["charts"]}
    headings = re.findall(r'<section id="group-[^"]*"><h2>([^<]*)</h2>', page)
    assert headings == ["Load", "Latency", "Errors and burn", "Canary", "Kafka"]
    assert page.count('<svg class="chart"') == len(doc["charts"])


def test_null_and_nan_values_leave_gaps_in_the_line() -> None:
    doc = sample_doc("pass")
    chart = _chart(doc, "push-latency")
    chart["series"][0]["points"][3][1] = float("nan")
    chart["series"][0]["points"][4][0] = None
    page = render_html(doc)
    assert data_points(page)["push-latency"] == finite_points(chart)
    svg = _svg(page, "push-latency")
    p50 = re.findall(r'<path d="([^"]*)" fill="none" stroke="#2f81f7"', svg)
    assert len(p50) == 3  # 0:00-0:10, 0:25-1:55, 2:10-3:30


def test_a_lone_point_between_gaps_is_still_drawn() -> None:
    doc = sample_doc("pass")
    doc["charts"] = [{"id": "lone", "title": "Lone", "unit": "ms", "group": "Latency",
                      "series": [{"label": "p99", "points": [[T0, None], [T0 + 50, 12.0], [T0 + 60, math.nan]]}]}]
    page = render_html(doc)
    assert data_points(page) == {"lone": 1}
    assert '<circle cx="' in _svg(page, "lone")


@pytest.mark.parametrize("series", [[], [{"label": "p99", "points": []}],
                                    [{"label": "p99", "points": [[T0, None], [T0 + 5, float("nan")], [None, 3]]}]])
def test_a_chart_without_data_says_so(series: list[dict[str, Any]]) -> None:
    doc = sample_doc("pass")
    doc["charts"][2]["series"] = series
    page = render_html(doc)
    assert data_points(page)["push-latency"] == 0
    assert ">no data</text>" in _svg(page, "push-latency")


def test_thresholds_are_dashed_labelled_lines_inside_the_axis() -> None:
    page = render_html(sample_doc("pass"))
    svg = _svg(page, "push-latency")
    assert 'stroke="#e5534b" stroke-width="1.5" stroke-dasharray="6 4"' in svg
    assert ">SLO 50 ms</text>" in svg
    ticks = [float(v) for v in re.findall(r'text-anchor="end" font-size="10.5" fill="#59636e">([\d.]+)</text>', svg)]
    assert max(ticks) > 50  # the y axis goes past the threshold although the data stay below it


def test_time_ticks_and_units() -> None:
    page = render_html(sample_doc("pass"))
    svg = _svg(page, "error-ratio")
    for tick in ("0:00", "1:00", "2:00", "3:00"):
        assert f">{tick}</text>" in svg
    assert re.search(r">0\.\d+%</text>", svg), "ratios read as percentages"
    assert ">records</text>" in _svg(page, "consumer-lag")


def test_a_share_stops_at_100_percent() -> None:
    svg = _svg(render_html(sample_doc("pass")), "canary-share")
    assert ">100%</text>" in svg and ">120%</text>" not in svg and ">125%</text>" not in svg


def test_log_scale_uses_decades_and_drops_non_positive_values() -> None:
    doc = sample_doc("pass")
    chart = _chart(doc, "burn-rate")
    chart["series"][0]["points"][0][1] = 0.0
    chart["series"][0]["points"][1][1] = -1.0
    page = render_html(doc)
    svg = _svg(page, "burn-rate")
    assert data_points(page)["burn-rate"] == finite_points(chart)
    for tick in ("0.1", "1", "10", "100"):
        assert f">{tick}{TIMES}</text>" in svg
    assert "log scale" in page


def test_phase_bands_shade_the_charts_except_for_background_phases() -> None:
    page = render_html(sample_doc("pass"))
    svg = _svg(page, "users")
    for name in ("canary-at-the-bell", "gateway-replica-loss", "kafka-broker-loss", "slo-status"):
        assert f"<title>{name} (" in svg
    assert "<title>market-open (" not in svg  # load in the background, all run long


def test_the_legend_shows_the_last_and_max_values() -> None:
    page = render_html(sample_doc("pass"))
    assert "users <span class=\"muted\">max 200 users · last 200 users</span>" in page


# ----------------------------------------------------------------------------------------- SLOs, alerts


def test_the_slo_table() -> None:
    page = render_html(sample_doc("fail"))
    row = re.search(r'<tr data-slo="gateway-push-latency">.*?</tr>', page)
    assert row
    runbook = '<a href="runbooks/gateway-push-latency.md">runbook'
    for cell in ("99%", "yes", "0.9%", f"0.9{TIMES}", "0.12%", "97%", runbook):
        assert cell in row.group(0)
    row = re.search(r'<tr data-slo="ledger-write-latency">.*?</tr>', page)
    assert row and "inconclusive" in row.group(0) and "no traffic" in row.group(0) and "—" in row.group(0)
    assert re.search(r'<tr data-slo="gateway-availability">.*?99\.9%.*?background:#cf222e">fail', page)


def test_alerts_link_their_runbooks() -> None:
    page = render_html(sample_doc("fail"))
    row = re.search(r'<tr data-alert="SLOBurnGatewayPushLatencyPage">.*?</tr>', page)
    assert row and ">page</span>" in row.group(0) and "1:12 → 1:36" in row.group(0)
    assert '<a href="runbooks/gateway-push-latency.md">runbook</a>' in row.group(0)


def test_no_alert_fired() -> None:
    page = render_html(sample_doc("pass"))
    assert "No alert fired." in page[page.index('id="alerts"'):]


def test_the_footer_links_the_artifacts() -> None:
    page = render_html(sample_doc("pass"))
    footer = page[page.index('id="artifacts"'):]
    for href in ("gameday.json", "junit.xml", "phases/market-open.log", "phases/slo-status.log"):
        assert f'<a href="{href}">' in footer


# -------------------------------------------------------------------------------------------- hostility


def test_hostile_strings_are_escaped_and_scripts_never_linked() -> None:
    doc = sample_doc("fail")
    evil = '<script>alert("x")</script>'
    doc["verdict"]["reason"] = evil
    doc["verdict"]["reasons"] = [evil, "a & b"]
    doc["verdict"]["outcome"] = 'fail" onmouseover="alert(1)'
    doc["phases"][1]["name"] = '"><img src=x onerror=alert(1)>'
    doc["phases"][1]["figures"] = {"<k>": "<v>"}
    doc["events"][0]["message"] = evil
    doc["charts"][0]["title"] = evil
    doc["charts"][0]["id"] = 'x" onload="alert(1)'
    doc["charts"][0]["series"][0]["label"] = evil
    doc["charts"][2]["thresholds"][0]["label"] = evil
    doc["charts"][3]["group"] = evil
    doc["slos"][0]["runbook"] = "javascript:alert(1)"
    doc["alerts"][0]["runbook"] = " JavaScript:alert(1)"
    doc["artifacts"]["json"] = "data:text/html,<script>alert(1)</script>"
    page = render_html(doc)
    assert "<script" not in page.lower() and "<img" not in page
    assert 'href="javascript' not in page.lower() and 'href=" javascript' not in page.lower()
    assert 'href="data:' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert 'data-outcome="fail&quot; onmouseover=&quot;alert(1)"' in page
    assert "<li>a &amp; b</li>" in page


def test_a_minimal_document_renders() -> None:
    page = render_html({})
    assert 'data-outcome="unknown"' in page and "No phase in this run." in page and "No alert fired." in page
    assert "No chart in this run." in page and "No SLO evaluated." in page


def test_write_report(tmp_path: Path) -> None:
    path = write_report(sample_doc("pass"), tmp_path / "nested" / "report")
    assert path == tmp_path / "nested" / "report" / "index.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# ------------------------------------------------------------------------- the screenshot reader (tests/)


def _png(width: int, rows: list[bytes], colour: int) -> bytes:
    """An 8-bit PNG whose row y uses filter y % 5: a reference encoder for the decoder in tests/chromium.py."""
    bpp = 3 if colour == 2 else 4
    raw, prev = bytearray(), bytes(width * bpp)
    for y, row in enumerate(rows):
        kind = y % 5
        out = bytearray()
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c
            out.append((x - (0, a, b, (a + b) // 2, paeth)[kind]) & 0xFF)
        raw += bytes([kind]) + out
        prev = row

    def chunk(tag: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + tag + body + zlib.crc32(tag + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + len(rows).to_bytes(4, "big") + bytes([8, colour, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(
        b"IEND", b"")


@pytest.mark.parametrize("colour", [2, 6])
def test_png_pixels_undoes_every_filter(tmp_path: Path, colour: int) -> None:
    rng = random.Random(colour)
    width, height, bpp = 37, 23, 3 if colour == 2 else 4
    rows = [bytes(rng.choice((0, 7, 128, 200, 255, rng.randrange(256))) for _ in range(width * bpp))
            for _ in range(height)]
    path = tmp_path / "x.png"
    path.write_bytes(_png(width, rows, colour))
    w, h, decoded = png_pixels(path)
    assert (w, h) == (width, height)
    rgb = [row if bpp == 3 else bytes(v for i, v in enumerate(row) if i % 4 != 3) for row in rows]
    assert decoded == rgb


def test_count_colour_within_a_tolerance_and_a_box(tmp_path: Path) -> None:
    red, near, white = bytes((207, 34, 46)), bytes((200, 40, 50)), bytes((255, 255, 255))
    rows = [red * 4 + white * 6, near * 4 + white * 6, white * 10]
    path = tmp_path / "x.png"
    path.write_bytes(_png(10, rows, 2))
    pixels = png_pixels(path)
    assert count_colour(pixels, "#cf222e", tolerance=0) == 4
    assert count_colour(pixels, "#cf222e", tolerance=8) == 8
    assert count_colour(path, (255, 255, 255), tolerance=0) == 22
    assert count_colour(pixels, "#cf222e", tolerance=8, box=(2, 1, 100, 100)) == 2
    assert count_colour(pixels, "#cf222e", box=(50, 50, 5, 5)) == 0
