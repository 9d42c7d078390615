"""Sloth specs (``version: prometheus/v1``, and the ``sloth.slok.dev/v1`` PrometheusServiceLevel
custom resource) loaded into the openbell model, so teams can migrate without rewriting SLOs.

Sloth's events and raw SLIs map onto RatioSLI; plugins are Sloth-specific and refused.
"""

from __future__ import annotations

from typing import Any

from openbell.slo.model import SLO, Alerting, RatioSLI
from openbell.slo.reader import Node
from openbell.slo.validate import FieldPaths, check_slo


def load_sloth(source: str, doc: dict[str, Any]) -> list[SLO]:
    root = Node(source, "", doc)
    if root.has("version"):
        root.raw("version")
        spec = root
    else:
        root.raw("apiVersion")
        root.raw("kind")
        meta = root.node("metadata")
        assert meta is not None
        for key in ("name", "namespace", "labels", "annotations"):
            meta.raw(key, None)
        meta.done()
        spec = root.node("spec")  # type: ignore[assignment]
        assert spec is not None
    service = spec.text("service")
    global_labels = spec.str_map("labels")
    out: list[SLO] = []
    for path, raw in spec.items("slos"):
        item = Node(source, path, raw)
        objective = item.number("objective")
        if not 0 < objective < 100:
            item.raw("name", None)
            raise item.error("objective", f"expected a percentage in (0, 100), got {objective:g}")
        slo = SLO(
            service=str(service),
            name=str(item.text("name")),
            description=str(item.text("description", "")),
            objective_ratio=round(objective / 100.0, 12),
            labels={**global_labels, **item.str_map("labels")},
            sli=_sli(item),
            alerting=_alerting(item.node("alerting", None)),
            source=source,
        )
        item.raw("id", None)
        item.done()
        check_slo(slo, FieldPaths(name=f"{path}.name", objective=f"{path}.objective", labels=f"{path}.labels",
                                  queries=f"{path}.sli.events"))
        out.append(slo)
    if spec is not root:
        spec.done()
    root.done()
    return out


def _pick(node: Node, *keys: str) -> str | None:
    found = [k for k in keys if node.has(k)]
    return str(node.text(found[0])) if found else None


def _sli(item: Node) -> RatioSLI:
    sli = item.node("sli")
    assert sli is not None
    if sli.has("plugin"):
        sli.raw("plugin")
        raise sli.error("plugin", "Sloth SLI plugins are not supported; expected events or raw")
    if sli.has("events"):
        events = sli.node("events")
        assert events is not None
        bad = _pick(events, "error_query", "errorQuery")
        total = _pick(events, "total_query", "totalQuery")
        if bad is None or total is None:
            raise events.error("error_query", "expected error_query and total_query")
        events.done()
        out = RatioSLI(total=total, bad=bad)
    elif sli.has("raw"):
        raw = sli.node("raw")
        assert raw is not None
        query = _pick(raw, "error_ratio_query", "errorRatioQuery")
        if query is None:
            raise raw.error("error_ratio_query", "is required")
        raw.done()
        out = RatioSLI(total=None, error_ratio=query)
    else:
        raise item.error("sli", "expected events or raw")
    sli.done()
    return out


def _alerting(node: Node | None) -> Alerting:
    if node is None:
        return Alerting()
    page_on, page_labels, page_ann = _severity(node, "page_alert", "pageAlert")
    ticket_on, ticket_labels, ticket_ann = _severity(node, "ticket_alert", "ticketAlert")
    out = Alerting(
        page=page_on,
        ticket=ticket_on,
        name=node.text("name", None),
        labels=node.str_map("labels"),
        page_labels=page_labels,
        ticket_labels=ticket_labels,
        annotations=node.str_map("annotations"),
        page_annotations=page_ann,
        ticket_annotations=ticket_ann,
    )
    node.done()
    return out


def _severity(node: Node, *keys: str) -> tuple[bool, dict[str, str], dict[str, str]]:
    found = [k for k in keys if node.has(k)]
    if not found:
        return True, {}, {}
    sev = node.node(found[0])
    assert sev is not None
    on = not sev.flag("disable", False)
    labels, annotations = sev.str_map("labels"), sev.str_map("annotations")
    sev.done()
    return on, labels, annotations
