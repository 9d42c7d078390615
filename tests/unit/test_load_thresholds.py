"""SLO -> k6 thresholds (load/thresholds.py)."""

from __future__ import annotations

from pathlib import Path

from openbell.load.thresholds import thresholds_for
from openbell.slo.loader import load_slos

ROOT = Path(__file__).resolve().parents[2]


def test_platform_slos_become_push_latency_page_latency_and_error_rate_thresholds() -> None:
    assert thresholds_for(load_slos([ROOT / "slo"])) == {
        "ws_push_latency_ms": ["p(99)<50"],
        "http_req_duration{kind:page}": ["p(95)<400"],
        "http_req_failed{kind:page}": ["rate<0.0001"],
    }
