"""OpenSLO v1 documents: kind SLO with an inline indicator, or SLO + SLI pairs by reference.

Supported: ratioMetric (good or bad over total, counters or rates) and thresholdMetric on a
Prometheus metric source; rolling time windows; targets as `target` (0-1) or `targetPercent`.
Each objective of an SLO becomes one openbell SLO.
"""

from __future__ import annotations

import re
from typing import Any

from openbell.durations import parse_duration_s
from openbell.errors import SpecError
from openbell.slo.model import SLI, SLO, Alerting, RatioSLI, ThresholdSLI
from openbell.slo.reader import Node
from openbell.slo.validate import FieldPaths, check_slo

API_VERSION = "openslo/v1"
_OPS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
# OpenSLO's own shorthand adds calendar-ish units; rolling windows take their usual length.
_OPENSLO_UNITS = {"M": 30 * 86400.0, "Q": 90 * 86400.0, "Y": 365 * 86400.0}
# Fields OpenSLO defines that do not change how openbell evaluates an SLO.
_IGNORED_SPEC = ("alertPolicies",)
_IGNORED_META = ("displayName", "annotations")


def sli_name(source: str, doc: dict[str, Any]) -> str:
    meta = Node(source, "metadata", doc.get("metadata"))
    return str(meta.text("name"))


def load_openslo_slo(source: str, doc: dict[str, Any], slis: dict[str, tuple[str, dict[str, Any]]]) -> list[SLO]:
    root = Node(source, "", doc)
    root.raw("apiVersion")
    root.raw("kind")
    meta = root.node("metadata")
    assert meta is not None
    name = str(meta.text("name"))
    labels = _labels(meta)
    for key in _IGNORED_META:
        meta.raw(key, None)
    meta.done()
    spec = root.node("spec")
    assert spec is not None
    service = spec.text("service")
    description = spec.text("description", "")
    for key in _IGNORED_SPEC:
        spec.raw(key, None)

    if spec.has("indicator") == spec.has("indicatorRef"):
        raise spec.error("indicator", "expected exactly one of indicator (inline SLI) or indicatorRef")
    if spec.has("indicator"):
        sli_doc: Any = spec.raw("indicator")
        sli_source, sli_path = source, spec.field("indicator")
    else:
        ref = spec.text("indicatorRef")
        if ref not in slis:
            known = ", ".join(sorted(slis)) or "none"
            raise spec.error("indicatorRef", f"no SLI named {ref!r} was loaded (known: {known})")
        sli_source, sli_doc = slis[ref]
        sli_path = ""
    budgeting = spec.text("budgetingMethod", "Occurrences")
    if budgeting not in ("Occurrences", "Timeslices", "RatioTimeslices"):
        raise spec.error("budgetingMethod", f"expected Occurrences, Timeslices or RatioTimeslices, got {budgeting!r}")
    period_s = _time_window(spec)

    out: list[SLO] = []
    objectives = list(spec.items("objectives"))
    if not objectives:
        raise spec.error("objectives", "expected at least one objective")
    for path, raw_obj in objectives:
        obj = Node(source, path, raw_obj)
        obj.raw("displayName", None)
        if obj.has("target") == obj.has("targetPercent"):
            raise obj.error("target", "expected exactly one of target (0-1) or targetPercent (0-100)")
        if obj.has("target"):
            target, field = obj.number("target"), obj.field("target")
            if not 0 < target < 1:
                raise obj.error("target", f"expected a fraction in (0, 1) such as 0.9995, got {target:g}")
        else:
            target, field = round(obj.number("targetPercent") / 100.0, 12), obj.field("targetPercent")
            if not 0 < target < 1:
                raise obj.error("targetPercent", "expected a percentage in (0, 100)")
        op = obj.text("op", None)
        value = obj.number("value", None)
        for key in ("timeSliceTarget", "timeSliceWindow", "compositeWeight"):
            obj.raw(key, None)
        if obj.has("indicator") or obj.has("indicatorRef"):
            raise obj.error("indicator", "per-objective indicators (composite SLOs) are not supported")
        obj.done()
        sli = _indicator(sli_source, sli_path, sli_doc, op, value, obj, budgeting, spec)
        slo_name = name if len(objectives) == 1 else f"{name}-{len(out) + 1}"
        slo = SLO(service=str(service), name=slo_name, description=str(description), objective_ratio=target,
                  period_s=period_s, labels=labels, sli=sli, alerting=Alerting(), source=source)
        check_slo(slo, FieldPaths(objective=field, period="spec.timeWindow[0].duration",
                                  queries="spec.indicator.spec.ratioMetric"))
        out.append(slo)
    spec.done()
    root.done()
    return out


def _labels(meta: Node) -> dict[str, str]:
    raw = meta.raw("labels", {})
    if not isinstance(raw, dict):
        raise meta.error("labels", "expected a mapping")
    # OpenSLO allows a list of values per label; Prometheus labels take one.
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[str(key)] = str(value)
    return out


def _time_window(spec: Node) -> float:
    windows = list(spec.items("timeWindow", []))
    if not windows:
        return 30 * 86400.0
    if len(windows) > 1:
        raise spec.error("timeWindow", "expected exactly one time window")
    path, raw = windows[0]
    window = Node(spec.source, path, raw)
    text = window.text("duration")
    rolling = window.flag("isRolling", True)
    window.raw("calendar", None)
    window.done()
    if not rolling:
        raise window.error("isRolling", "calendar-aligned windows are not supported; expected isRolling: true")
    match = re.fullmatch(r"(\d+)([MQY])", text.strip())
    try:
        return int(match.group(1)) * _OPENSLO_UNITS[match.group(2)] if match else parse_duration_s(text)
    except ValueError as exc:
        raise window.error("duration", str(exc)) from None


def _indicator(source: str, path: str, doc: Any, op: str | None, value: float | None, obj: Node,
               budgeting: str, slo_spec: Node) -> SLI:
    root = Node(source, path, doc)
    if root.has("apiVersion"):
        root.raw("apiVersion")
        root.raw("kind")
    meta = root.node("metadata", None)
    if meta is not None:
        meta.raw("name", None)
        for key in ("displayName", "labels", "annotations"):
            meta.raw(key, None)
        meta.done()
    spec = root.node("spec")
    assert spec is not None
    spec.raw("description", None)
    out: SLI
    if spec.has("ratioMetric") == spec.has("thresholdMetric"):
        raise spec.error("ratioMetric", "expected exactly one of ratioMetric or thresholdMetric")
    if spec.has("ratioMetric"):
        if budgeting != "Occurrences":
            raise slo_spec.error("budgetingMethod", "openbell evaluates ratio SLIs by Occurrences")
        ratio = spec.node("ratioMetric")
        assert ratio is not None
        counter = ratio.flag("counter", True)
        if ratio.has("raw") or ratio.has("rawType"):
            raise ratio.error("raw", "raw ratio metrics are not supported; expected good or bad, and total")
        if ratio.has("good") == ratio.has("bad"):
            raise ratio.error("good", "expected exactly one of good or bad, beside total")
        which = "good" if ratio.has("good") else "bad"
        query = _query(ratio, which, counter)
        total = _query(ratio, "total", counter)
        ratio.done()
        out = RatioSLI(total=total, good=query if which == "good" else None, bad=query if which == "bad" else None)
    else:
        metric = spec.node("thresholdMetric")
        assert metric is not None
        gauge = _source_query(metric, "metricSource")
        metric.done()
        if op is None or value is None:
            raise obj.error("op", "a thresholdMetric objective needs op (lt, lte, gt, gte) and value")
        if op not in _OPS:
            raise obj.error("op", f"expected one of lt, lte, gt, gte, got {op!r}")
        out = ThresholdSLI(gauge=gauge, bound=value, op=_OPS[op])  # type: ignore[arg-type]
    spec.done()
    root.done()
    return out


def _query(ratio: Node, key: str, counter: bool) -> str:
    node = ratio.node(key)
    assert node is not None
    query = _source_query(node, "metricSource")
    node.done()
    if not counter and "{{" not in query:
        # Already a rate (or any per-second value): average it over the window.
        return f"avg_over_time(({query})[{{{{.window}}}}:])"
    return query


def _source_query(node: Node, key: str) -> str:
    src = node.node(key)
    assert src is not None
    src.raw("metricSourceRef", None)
    kind = src.text("type", "Prometheus")
    if str(kind).lower() != "prometheus":
        raise src.error("type", f"openbell evaluates SLOs on Prometheus; expected type Prometheus, got {kind!r}")
    body = src.node("spec")
    assert body is not None
    keys = [k for k in ("query", "promql") if body.has(k)]
    if len(keys) != 1:
        raise SpecError(body.source, body.field("query"), "expected a PromQL query")
    query = str(body.text(keys[0]))
    body.done()
    src.done()
    return query
