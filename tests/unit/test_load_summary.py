"""k6's summary export read (load/summary.py)."""

from __future__ import annotations

from typing import Any

from openbell.load import summary

EXPORT: dict[str, Any] = {"metrics": {
    "ws_push_latency_ms": {"p(50)": 8.0, "p(95)": 31.5, "p(99)": 73.2, "thresholds": {"p(99)<50": True}},
    "http_req_duration{kind:page}": {"p(95)": 120.0, "p(99)": 180.0, "thresholds": {"p(95)<400": False}},
    "http_req_failed": {"passes": 0, "fails": 900, "value": 0, "thresholds": {"rate<0.0001": False}},
    "http_reqs": {"count": 900, "rate": 30.0},
    "ws_messages": {"count": 12000, "rate": 400.0},
    "ws_seq_gaps": {"count": 0, "rate": 0},
    "vus_max": {"value": 40, "min": 40, "max": 40},
}}


def test_summary_export_gives_figures_and_which_threshold_failed_with_the_observed_value() -> None:
    parsed = summary.parse(EXPORT)
    assert parsed.figures["push_latency_p99_ms"] == 73.2
    assert parsed.figures["ws_messages_per_s"] == 400.0 and parsed.figures["http_failure_ratio"] == 0
    assert [(t.metric, t.expression, t.observed) for t in parsed.failed] == [
        ("ws_push_latency_ms", "p(99)<50", 73.2)]
    assert {t.expression: t.passed for t in parsed.thresholds}["rate<0.0001"] is True


def test_the_share_of_the_stream_each_sampled_figure_saw_is_reported() -> None:
    export = {"metrics": {**EXPORT["metrics"],
                          "ws_push_latency_ms": {**EXPORT["metrics"]["ws_push_latency_ms"], "count": 3000},
                          "ws_records_checked": {"count": 1200, "rate": 40.0}}}
    figures = summary.parse(export).figures
    assert figures["push_latency_samples"] == 3000 and figures["push_latency_sampled_share"] == 0.25
    assert figures["ws_records_checked"] == 1200 and figures["seq_checked_share"] == 0.1
    assert "seq_checked_share" not in summary.parse(EXPORT).figures  # an older script: nothing claimed
