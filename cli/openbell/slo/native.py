"""The native spec format, ``apiVersion: openbell/v1``, ``kind: SLO``. See slo/README.md."""

from __future__ import annotations

from typing import Any

from openbell.slo.model import SLI, SLO, Alerting, LatencySLI, RatioSLI, ThresholdSLI
from openbell.slo.reader import Node

API_VERSION = "openbell/v1"
_OPS = ("<=", "<", ">=", ">")
_AGGREGATIONS = ("max", "min", "avg", "sum")


def load_native(source: str, doc: dict[str, Any]) -> SLO:
    root = Node(source, "", doc)
    root.raw("apiVersion")
    root.raw("kind")
    meta = root.node("metadata")
    assert meta is not None
    name = meta.text("name")
    labels = meta.str_map("labels")
    meta.done()
    spec = root.node("spec")
    assert spec is not None
    objective = spec.number("objective")
    if not 0 < objective < 100:
        raise spec.error("objective", f"expected a percentage in (0, 100) such as 99.95, got {objective:g}")
    slo = SLO(
        service=spec.text("service"),
        name=name,
        description=spec.text("description", ""),
        objective_ratio=round(objective / 100.0, 12),
        period_s=spec.duration_s("period", 30 * 86400.0, bare_seconds=False),
        labels=labels,
        runbook=spec.text("runbook", None),
        group_by=tuple(spec.str_list("groupBy")),
        sli=_sli(spec),
        alerting=_alerting(spec.node("alerting", None)),
        source=source,
    )
    spec.done()
    root.done()
    return slo


def _sli(spec: Node) -> SLI:
    sli = spec.node("sli")
    assert sli is not None
    kinds = [k for k in ("ratio", "latency", "threshold") if sli.has(k)]
    if len(kinds) != 1:
        raise spec.error("sli", "expected exactly one of ratio, latency or threshold")
    body = sli.node(kinds[0])
    assert body is not None
    out: SLI
    if kinds[0] == "ratio":
        ratio = RatioSLI(total=body.text("total"), bad=body.text("bad", None), good=body.text("good", None))
        if (ratio.bad is None) == (ratio.good is None):
            raise body.error("bad", "expected exactly one of bad or good (PromQL), beside total")
        out = ratio
    elif kinds[0] == "latency":
        buckets = [float(b) for _, b in _numbers(body, "buckets")]
        out = LatencySLI(
            histogram=body.text("histogram"),
            threshold_s=body.duration_s("threshold"),
            buckets_s=tuple(buckets),
            selector=body.text("selector", "").strip().strip("{}"),
        )
    else:
        op = body.text("op", "<=")
        if op not in _OPS:
            raise body.error("op", f"expected one of {', '.join(_OPS)}, got {op!r}")
        aggregation = body.text("aggregation", "max")
        if aggregation not in _AGGREGATIONS:
            raise body.error("aggregation", f"expected one of {', '.join(_AGGREGATIONS)}, got {aggregation!r}")
        out = ThresholdSLI(gauge=body.text("gauge"), bound=body.number("bound"), op=op,
                           aggregation=aggregation)
    body.done()
    sli.done()
    return out


def _numbers(node: Node, key: str) -> list[tuple[str, float]]:
    out = []
    for path, item in node.items(key):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise node.error(key, f"expected a list of numbers (seconds), {path} is {item!r}")
        out.append((path, float(item)))
    if not out:
        raise node.error(key, "expected the histogram's bucket bounds (le), in seconds")
    return out


def _alerting(node: Node | None) -> Alerting:
    if node is None:
        return Alerting()
    min_events = node.number("minEvents", None)
    if min_events is not None and (min_events < 0 or min_events != int(min_events)):
        raise node.error("minEvents", f"expected a whole number of events >= 0, got {min_events:g}")
    out = Alerting(
        page=node.flag("page", True),
        ticket=node.flag("ticket", True),
        name=node.text("name", None),
        labels=node.str_map("labels"),
        page_labels=node.str_map("pageLabels"),
        ticket_labels=node.str_map("ticketLabels"),
        annotations=node.str_map("annotations"),
        min_events=None if min_events is None else int(min_events),
        absent=node.flag("absent", True),
        absent_for_s=node.duration_s("absentFor", 600.0, bare_seconds=False),
    )
    node.done()
    return out
