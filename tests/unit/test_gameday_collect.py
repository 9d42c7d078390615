"""What the report collects per SLO (gameday/collect.py)."""

from __future__ import annotations

from pathlib import Path

from openbell.gameday.collect import final_outcomes

ROOT = Path(__file__).resolve().parents[2]


def test_final_outcomes_per_slo() -> None:
    from openbell.slo.loader import load_slos

    slos = load_slos([ROOT / "slo"])
    spend = [{"slo": s.name, "error_ratio": 0.0} for s in slos if s.name != "analytics-query-latency"]
    out = final_outcomes(["api/api-errors: page 1h/5m: burn rate 20x"], slos, spend)
    assert out["api-errors"] == "fail"
    assert out["analytics-query-latency"] == "inconclusive"
    assert out["gateway-push-latency"] == "pass"
