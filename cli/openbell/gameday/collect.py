"""What the report plots and tabulates, read back from Prometheus over the gameday's span.

Every chart is a range query over [start - lead, end] at a step that keeps a few hundred points; a query
that fails leaves its chart empty (the report says "no data") rather than failing the report. The queries
use the platform's own series (the gateway's, HAProxy's through the SLIs, the enricher's lag) and, for
error ratios and burn rates, the SLO engine's own PromQL — the numbers the gate judged.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openbell.errors import OpenbellError
from openbell.gameday.gate import GamedayGate
from openbell.metrics.prometheus import PrometheusClient
from openbell.slo.evaluate import evaluate
from openbell.slo.model import SLO, LatencySLI, RatioSLI, ThresholdSLI
from openbell.slo.promql import error_ratio
from openbell.slo.windows import window_pairs

LEAD_S = 30.0  # a little of what came before, so the start of the gameday is visible
MAX_POINTS = 400


@dataclass(frozen=True)
class ChartSpec:
    id: str
    title: str
    unit: str
    group: str
    queries: tuple[tuple[str, str], ...]  # (label or "{label}" template, PromQL)
    thresholds: tuple[tuple[str, float], ...] = ()
    note: str = ""
    log_scale: bool = False  # for what spans decades (latency and lag in an outage)


def step_for(span_s: float, scrape_s: float) -> float:
    return max(scrape_s, 1.0, math.ceil(span_s / MAX_POINTS))


def rate_window(scrape_s: float) -> str:
    return f"{max(10, round(scrape_s * 5))}s"


def platform_charts(slos: list[SLO], scrape_s: float) -> list[ChartSpec]:
    """Load, latency, canary share and Kafka charts (the gateway's and the enricher's series)."""
    w = rate_window(scrape_s)
    g = 'job="gateway"'
    push = next((s for s in slos if isinstance(s.sli, LatencySLI)
                 and s.sli.histogram == "gateway_push_latency_seconds"), None)
    page = next((s for s in slos if isinstance(s.sli, LatencySLI)
                 and s.sli.histogram == "http_request_duration_seconds"), None)
    lag = next((s for s in slos if s.name == "kafka-consumer-lag"), None)
    pct = [(f"p{q}", f"1000 * histogram_quantile({q / 100:g}, sum by (le) "
             f"(rate(gateway_push_latency_seconds_bucket{{{g}}}[{w}])))") for q in (50, 95, 99)]
    return [
        ChartSpec("traders", "Traders connected (WebSocket sessions)", "users", "Load",
                  (("sessions", f"sum(gateway_connections{{{g}}})"),)),
        ChartSpec("throughput", "Messages pushed and REST requests per second", "msg/s", "Load",
                  (("WebSocket messages/s", f"sum(rate(gateway_messages_sent_total{{{g}}}[{w}]))"),
                   ("REST requests/s", f"sum(rate(http_requests_total{{job=~\"gateway|ledger\"}}[{w}]))"))),
        ChartSpec("push-latency", "Push latency percentiles (exchange -> WebSocket send)", "ms", "Latency",
                  tuple(pct), _threshold(push, "SLO"), "log scale: a broker loss delays ticks by seconds",
                  log_scale=True),
        ChartSpec("rest-latency", "REST latency p95", "ms", "Latency",
                  (("p95", "1000 * histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
                           f"{{job=~\"gateway|ledger\"}}[{w}])))"),), _threshold(page, "SLO")),
        ChartSpec("canary-share", "Traffic share per gateway version (messages pushed)", "%", "Canary",
                  (("{version}", f"100 * sum by (version) (rate(gateway_messages_sent_total{{{g}}}[{w}])) / "
                                 f"scalar(sum(rate(gateway_messages_sent_total{{{g}}}[{w}])))"),)),
        ChartSpec("consumer-lag", "Enricher consumer lag (worst partition)", "s", "Kafka",
                  (("enricher lag", 'max(enricher_consumer_lag_seconds{job="enricher"})'),),
                  _bound(lag)),
        ChartSpec("gateway-lag", "Gateways' Kafka lag", "records", "Kafka",
                  (("{instance}", f"sum by (instance) (gateway_kafka_lag_records{{{g}}})"),)),
    ]


def _bound(slo: SLO | None) -> tuple[tuple[str, float], ...]:
    """The lag SLO's bound, drawn on the lag gauge: a threshold SLI's own, or a time-over-bound ratio's `bound`
    label (slo/kafka-consumer-lag.yaml)."""
    bound = None
    if slo is not None and isinstance(slo.sli, ThresholdSLI):
        bound = slo.sli.bound
    elif slo is not None and isinstance(slo.sli, RatioSLI) and slo.sli.bad:
        found = re.search(r'\bbound="([0-9.eE+-]+)"', slo.sli.bad)
        bound = float(found.group(1)) if found else None
    return () if bound is None else ((f"SLO {bound * 1000:g} ms", bound),)


def _threshold(slo: SLO | None, label: str) -> tuple[tuple[str, float], ...]:
    if slo is None or not isinstance(slo.sli, LatencySLI):
        return ()
    ms = slo.sli.threshold_s * 1000
    return ((f"{label} {ms:g} ms", ms),)


def burn_charts(slos: list[SLO], severity: str) -> list[ChartSpec]:
    """Per SLO: its burn rate over each alert window, with the burn-rate thresholds drawn."""
    out = []
    for slo in slos:
        pairs = [p for p in window_pairs(slo.period_s) if severity == "ticket" or p.severity == "page"]
        windows = sorted({w for p in pairs for w in (p.short_window_s, p.long_window_s)})
        queries = tuple((_human(w), f"max(({error_ratio(slo, w)})) / {slo.error_budget!r}") for w in windows)
        thresholds = tuple(sorted({(f"{p.severity} {p.burn_rate:g}x ({_human(p.long_window_s)}/"
                                    f"{_human(p.short_window_s)})", p.burn_rate) for p in pairs},
                                  key=lambda t: -t[1]))
        out.append(ChartSpec(f"burn-{slo.name}", f"{slo.name}: burn rate per window", "x", "Errors and burn",
                             queries, thresholds, slo.description))
    out.append(ChartSpec("error-ratios", "Error ratio per SLO (shortest alert window)", "ratio", "Errors and burn",
                         tuple((s.name, f"max(({error_ratio(s, _shortest(s))}))") for s in slos)))
    return out


def _shortest(slo: SLO) -> float:
    return min(p.short_window_s for p in window_pairs(slo.period_s))


def _human(seconds: float) -> str:
    from openbell.durations import human_duration

    return human_duration(seconds)


def read_chart(client: PrometheusClient, spec: ChartSpec, start: float, end: float, step: float) -> dict[str, Any]:
    series: list[dict[str, Any]] = []
    errors: list[str] = []
    for label, query in spec.queries:
        try:
            found = client.query_range(query, start, end, step)
        except OpenbellError as exc:
            errors.append(f"{label}: {exc}")
            continue
        for s in sorted(found, key=lambda s: sorted(s.labels.items())):
            name = label.format(**{k: s.labels.get(k, "") for k in _fields(label)}) if "{" in label else label
            series.append({"label": name or label, "points": [[t, _finite(v)] for t, v in s.points]})
    note = spec.note + (" (" + "; ".join(errors) + ")" if errors else "")
    return {"id": spec.id, "title": spec.title, "unit": spec.unit, "group": spec.group, "series": series,
            "thresholds": [{"label": lbl, "value": v} for lbl, v in spec.thresholds], "note": note.strip(),
            "log_scale": spec.log_scale}


def _fields(template: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def slo_table(gate: GamedayGate, final: dict[str, str], end: float, report_dir: Path) -> list[dict[str, Any]]:
    """Per SLO: what the gameday spent (error ratio over its span, burn rate, share of the period budget)."""
    rows = []
    remaining: dict[str, float | None] = {}
    try:
        _, results = evaluate(gate.client, gate.slos, "page", at=end)
        for r in results:
            prev = remaining.get(r.slo.name)
            value = r.budget_remaining
            if value is not None and (prev is None or value < prev):
                remaining[r.slo.name] = value
    except OpenbellError:
        pass
    for slo in gate.slos:
        spend = gate.spend(slo, end).to_dict()
        rows.append({
            "name": slo.name, "service": slo.service, "objective": slo.objective_ratio, "period_s": slo.period_s,
            "error_budget": slo.error_budget, "gated": True, "error_ratio": spend["error_ratio"],
            "burn_rate": spend["burn_rate"], "budget_consumed": spend["budget_consumed"],
            "budget_remaining": remaining.get(slo.name), "outcome": final.get(slo.name, "inconclusive"),
            "runbook": runbook_link(slo, report_dir), "note": _note(remaining.get(slo.name))})
    return rows


def _note(remaining: float | None) -> str | None:
    if remaining is not None and remaining < 0:
        return ("budget remaining is over the history Prometheus holds (since the platform started), not a full "
                "period: a young sandbox overstates it")
    return None


def runbook_link(slo: SLO, report_dir: Path) -> str | None:
    """The SLO's runbook as a path relative to the report (it opens from the repository's build folder)."""
    if not slo.runbook:
        return None
    if "://" in slo.runbook:
        return slo.runbook
    base = Path(slo.source).parent if slo.source else Path("slo")
    path = (base / slo.runbook).resolve()
    return os.path.relpath(path, report_dir.resolve())


def fired_alerts(client: PrometheusClient, slos: list[SLO], start: float, end: float, step: float,
                 report_dir: Path) -> list[dict[str, Any]]:
    """Every alert that was firing at some point of the gameday, with its SLO's runbook."""
    try:
        found = client.query_range('ALERTS{alertstate="firing"}', start, end, step)
    except OpenbellError:
        return []
    by_alert = {name: s for s in slos for name in s.alert_names()}
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for s in found:  # one series per label set (per group of a grouped SLO): one row per alert and severity
        times = [t for t, v in s.points if math.isfinite(v) and v > 0]
        if not times:
            continue
        name, severity = s.labels.get("alertname", ""), s.labels.get("severity", "")
        slo = by_alert.get(name) or next((x for x in slos if x.name == s.labels.get("slo")), None)
        row = merged.setdefault((name, severity), {
            "name": name, "severity": severity, "slo": slo.name if slo else s.labels.get("slo"),
            "first_at": min(times), "last_at": max(times), "runbook": runbook_link(slo, report_dir) if slo else None,
            "summary": f"{name} fired" + (f" for {slo.name}: {slo.description}" if slo else "")})
        row["first_at"], row["last_at"] = min(row["first_at"], *times), max(row["last_at"], *times)
    return sorted(merged.values(), key=lambda a: a["first_at"])


def final_outcomes(gate_reasons: list[str], slos: list[SLO], spend: list[dict[str, Any]]) -> dict[str, str]:
    """Pure: per SLO, fail when the last gate's failing reasons name it, inconclusive without data, else pass."""
    out: dict[str, str] = {}
    by_name = {s["slo"]: s for s in spend}
    for slo in slos:
        named = any(r.startswith((f"{slo.service}/{slo.name}", f"{slo.name}:")) for r in gate_reasons)
        has_data = (by_name.get(slo.name) or {}).get("error_ratio") is not None
        out[slo.name] = "fail" if named else ("pass" if has_data else "inconclusive")
    return out
