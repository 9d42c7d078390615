"""SLO model -> Prometheus recording and alerting rules (plain dicts, ready to dump as YAML).

One rule group per SLO, ``openbell-slo/<service>/<name>``, recordings first and alerts last, so the
alerts always read recordings of the same evaluation. Naming scheme (documented in slo/README.md):
- recording ``slo:sli_error:ratio_rate<window>``        SLI error ratio over each window used
- recording ``slo:objective:ratio``, ``slo:error_budget:ratio``
- recording ``slo:period_error_budget_remaining:ratio``  budget left over the compliance period
- alert ``<CamelName>ErrorBudgetBurn`` with ``severity`` page or ticket (both pairs of a severity OR-ed)
- alert ``<CamelName>SLIAbsent`` when the SLI cannot be computed (its metrics are missing)
Every series carries ``slo`` and ``service`` labels (plus the spec's labels and groupBy labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openbell.durations import human_duration, promql_duration
from openbell.slo.burn import default_min_events
from openbell.slo.model import SLO, ThresholdSLI
from openbell.slo.promql import error_ratio, event_rate, sample_count
from openbell.slo.windows import WindowPair, window_pairs, windows_used


@dataclass(frozen=True)
class RuleOptions:
    """`runbook_base_url` prefixes each runbook's file name in the alerts' runbook_url."""

    runbook_base_url: str = "runbooks/"


def error_metric(window_s: float) -> str:
    return f"slo:sli_error:ratio_rate{promql_duration(window_s)}"


def selector(slo: SLO) -> str:
    return f'{{slo="{slo.name}", service="{slo.service}"}}'


def _fmt(value: float) -> str:
    return f"{value:.12g}"


def runbook_url(slo: SLO, options: RuleOptions) -> str | None:
    if slo.runbook is None:
        return None
    name = slo.runbook.replace("\\", "/").rsplit("/", 1)[-1]
    base = options.runbook_base_url
    return f"{base}{'' if base.endswith('/') or not base else '/'}{name}"


def generate(slos: list[SLO], options: RuleOptions = RuleOptions()) -> dict[str, Any]:
    """Rule groups for Prometheus' rule_files (``{"groups": [...]}``), one group per SLO."""
    return {"groups": [slo_group(slo, options) for slo in slos]}


def as_prometheus_rule(rules: dict[str, Any], name: str = "openbell-slos",
                       namespace: str | None = None) -> dict[str, Any]:
    """The same groups wrapped as a prometheus-operator PrometheusRule object."""
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "openbell"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": metadata,
            "spec": rules}


def slo_group(slo: SLO, options: RuleOptions = RuleOptions()) -> dict[str, Any]:
    pairs = window_pairs(slo.period_s)
    severities = {s for s, on in (("page", slo.alerting.page), ("ticket", slo.alerting.ticket)) if on}
    # The fastest short window is always recorded: the SLIAbsent alert and dashboards watch it even
    # when only tickets are enabled.
    windows = sorted({pairs[0].short_window_s, *windows_used(pairs, severities)})
    base_labels = {"slo": slo.name, "service": slo.service, **slo.labels}

    sli_rules = [{"record": error_metric(w), "expr": error_ratio(slo, w), "labels": dict(base_labels)}
                 for w in windows]
    if isinstance(slo.sli, ThresholdSLI):
        # A month-long subquery is costly on every evaluation; the time-weighted mean of the fastest
        # recording is the same share of bad time (to within one short window at the edges).
        period_expr = f"avg_over_time({error_metric(windows[0])}{selector(slo)}[{promql_duration(slo.period_s)}])"
    else:
        period_expr = error_ratio(slo, slo.period_s)
    sli_rules.append({"record": error_metric(slo.period_s), "expr": period_expr, "labels": dict(base_labels)})
    meta_rules = [
        {"record": "slo:objective:ratio", "expr": f"vector({_fmt(slo.objective_ratio)})", "labels": dict(base_labels)},
        {"record": "slo:error_budget:ratio", "expr": f"vector({_fmt(slo.error_budget)})", "labels": dict(base_labels)},
        {"record": "slo:period_error_budget_remaining:ratio",
         "expr": f"1 - {error_metric(slo.period_s)}{selector(slo)} / {_fmt(slo.error_budget)}",
         "labels": dict(base_labels)},
    ]
    alerts: list[dict[str, Any]] = []
    for severity in ("page", "ticket"):
        if severity not in severities:
            continue
        sev_pairs = [p for p in pairs if p.severity == severity]
        alerts.append(_burn_alert(slo, severity, sev_pairs, options))
    if slo.alerting.absent:
        alerts.append(_absent_alert(slo, windows[0], options))
    return {"name": group_name(slo), "rules": [*sli_rules, *meta_rules, *alerts]}


def group_name(slo: SLO) -> str:
    """Unique per (service, name): '/' cannot occur in either, so no two SLOs share a group."""
    return f"openbell-slo/{slo.service}/{slo.name}"


def min_events_for(slo: SLO, pair: WindowPair) -> int:
    if slo.alerting.min_events is not None:
        return slo.alerting.min_events
    return default_min_events(pair.burn_rate, slo.error_budget)


def min_samples_for(slo: SLO, pair: WindowPair) -> int | None:
    """Fewest samples the long window must hold before the pair may fire, for SLIs whose evidence comes a
    sample at a time (latency: a scrape; threshold: a subquery step): the count at which one bad sample
    alone can no longer cross the threshold, as `min_events` is for events. On a history younger than that
    (a platform seconds old) one slow second would otherwise page. None for ratio SLIs."""
    if slo.sli.kind == "ratio":
        return None
    n = default_min_events(pair.burn_rate, slo.error_budget)
    # A latency SLI's rate rests on the intervals between scrapes: one fewer than the scrapes.
    return n + 1 if slo.sli.kind == "latency" else n


def pair_condition(slo: SLO, pair: WindowPair) -> str:
    """Both windows of the pair above its threshold, with enough evidence: events for event SLIs, samples
    for latency and threshold SLIs."""
    threshold = _fmt(pair.error_ratio_threshold(slo.error_budget))
    sel = selector(slo)
    cond = (f"{error_metric(pair.long_window_s)}{sel} > {threshold}\n"
            f"and\n{error_metric(pair.short_window_s)}{sel} > {threshold}")
    on = ", ".join(slo.group_by)
    rate = event_rate(slo, pair.long_window_s)
    min_events = min_events_for(slo, pair)
    if rate is not None and min_events > 0:
        cond += f"\nand on({on})\n({rate}) * {_fmt(pair.long_window_s)} >= {min_events}"
    samples, min_samples = sample_count(slo, pair.long_window_s), min_samples_for(slo, pair)
    if samples is not None and min_samples:
        cond += f"\nand on({on})\n({samples}) >= {min_samples}"
    return cond


def _annotations(slo: SLO, options: RuleOptions, summary: str, description: str,
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    out = {"summary": summary, "description": description}
    url = runbook_url(slo, options)
    if url:
        out["runbook_url"] = url
    out.update(slo.alerting.annotations)
    out.update(extra or {})
    return out


def _burn_alert(slo: SLO, severity: str, pairs: list[WindowPair], options: RuleOptions) -> dict[str, Any]:
    expr = "\nor\n".join(f"(\n{pair_condition(slo, p)}\n)" for p in pairs)
    windows = "; ".join(
        f"{p.burn_rate:g}x over {human_duration(p.long_window_s)} and {human_duration(p.short_window_s)}"
        for p in pairs)
    extra = slo.alerting.page_labels if severity == "page" else slo.alerting.ticket_labels
    labels = {"severity": severity, **slo.alerting.labels, **extra}
    group = "".join(f" {{{{ $labels.{g} }}}}" for g in slo.group_by)
    return {
        "alert": slo.alert_name,
        "expr": expr,
        "labels": labels,
        "annotations": _annotations(
            slo, options,
            summary=f"{slo.service} {slo.name}{group}: error budget burning too fast ({severity})",
            description=(f"{slo.service} {slo.name}{group} is failing its {slo.objective_percent:g}% objective over "
                         f"{human_duration(slo.period_s)}: error ratio {{{{ $value | humanizePercentage }}}} over the "
                         f"long window, burning beyond {windows}."),
            extra=slo.alerting.page_annotations if severity == "page" else slo.alerting.ticket_annotations,
        ),
    }


def _absent_alert(slo: SLO, window_s: float, options: RuleOptions) -> dict[str, Any]:
    return {
        "alert": slo.absent_alert_name,
        "expr": f"absent({error_metric(window_s)}{selector(slo)})",
        "for": promql_duration(slo.alerting.absent_for_s),
        # absent() keeps only the selector's labels: add the spec's own so routing by team still works.
        "labels": {"severity": "ticket", **slo.labels, **slo.alerting.labels},
        "annotations": _annotations(
            slo, options,
            summary=f"{slo.service} {slo.name}: SLI cannot be computed",
            description=(f"No {error_metric(window_s)} series for {slo.name} for "
                         f"{human_duration(slo.alerting.absent_for_s)}: its metrics are missing, so its burn "
                         "alerts cannot fire. Check the exporter's scrape target and the SLI query."),
        ),
    }
