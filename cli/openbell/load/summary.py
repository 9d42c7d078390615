"""k6's end-of-test summary (`--summary-export`) -> figures and threshold results. Pure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openbell.errors import SpecError

TREND_STATS = "avg,min,med,max,p(50),p(90),p(95),p(99),p(99.9),count"
"""The trend statistics asked of k6 (its default stops at p(95); the SLOs need p(99); count: how many samples)."""

# The figures a load verdict reports, when the run produced them: (k6 metric, statistic, figure name).
FIGURES = (
    ("vus_max", "value", "vus_max"),
    ("iterations", "count", "iterations"),
    ("http_reqs", "count", "http_requests"),
    ("http_reqs", "rate", "http_requests_per_s"),
    ("http_req_failed", "value", "http_failure_ratio"),
    ("http_req_failed{kind:page}", "value", "page_failure_ratio"),
    ("http_req_duration{kind:page}", "p(95)", "page_latency_p95_ms"),
    ("http_req_duration{kind:page}", "p(99)", "page_latency_p99_ms"),
    ("ws_sessions", "count", "ws_sessions"),
    ("ws_connect_errors", "count", "ws_connect_errors"),
    ("ws_messages", "count", "ws_messages"),
    ("ws_messages", "rate", "ws_messages_per_s"),
    ("ws_seq_gaps", "count", "ws_seq_gaps"),
    ("ws_frame_gaps", "count", "ws_frame_gaps"),
    ("ws_push_latency_ms", "p(50)", "push_latency_p50_ms"),
    ("ws_push_latency_ms", "p(95)", "push_latency_p95_ms"),
    ("ws_push_latency_ms", "p(99)", "push_latency_p99_ms"),
    ("ws_push_latency_ms", "count", "push_latency_samples"),
    ("ws_records_checked", "count", "ws_records_checked"),
    ("client_delay_ms", "p(50)", "client_delay_p50_ms"),
    ("client_delay_ms", "p(99)", "client_delay_p99_ms"),
)

_EXPR = re.compile(r"^\s*([a-z]+(?:\(\d+(?:\.\d+)?\))?)\s*(<=|>=|<|>|==|!=)\s*(-?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class ThresholdResult:
    """One k6 threshold: which metric, the expression, whether it held, and the observed statistic."""

    metric: str
    expression: str
    passed: bool
    observed: float | None


@dataclass(frozen=True)
class LoadSummary:
    figures: dict[str, float]
    thresholds: list[ThresholdResult]

    @property
    def failed(self) -> list[ThresholdResult]:
        return [t for t in self.thresholds if not t.passed]


def _stat(values: dict[str, Any], stat: str) -> float | None:
    # Rate metrics report their ratio as "value"; thresholds call it "rate".
    key = "value" if stat == "rate" and "rate" not in values else stat
    raw = values.get(key)
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None


def parse(doc: dict[str, Any]) -> LoadSummary:
    metrics: dict[str, dict[str, Any]] = doc.get("metrics") or {}
    figures = {}
    for metric, stat, name in FIGURES:
        value = _stat(metrics.get(metric, {}), stat)
        if value is not None:
            figures[name] = round(value, 4)
    # The traders observe by sample (loadprofiles/lib/trader.js): say how much of the stream each figure saw.
    received = figures.get("ws_messages")
    if received:
        for part, share in (("push_latency_samples", "push_latency_sampled_share"),
                            ("ws_records_checked", "seq_checked_share")):
            if part in figures:
                figures[share] = round(figures[part] / received, 4)
    results = []
    for metric, values in sorted(metrics.items()):
        # In k6's export a threshold maps to whether it *failed*.
        for expression, failed in (values.get("thresholds") or {}).items():
            match = _EXPR.match(expression)
            observed = _stat(values, match.group(1)) if match else None
            results.append(ThresholdResult(metric, expression, not failed, observed))
    return LoadSummary(figures, results)


def read(path: Path) -> LoadSummary:
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise SpecError(str(path), "", f"not a k6 summary export ({exc})") from exc
