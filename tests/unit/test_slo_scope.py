"""An SLO scoped to one version's series (slo/scope.py)."""

from __future__ import annotations

from pathlib import Path

from openbell.slo.loader import load_slos
from openbell.slo.promql import error_ratio
from openbell.slo.scope import inject, scope, selects_job

ROOT = Path(__file__).resolve().parents[2]


def test_scoping_adds_the_matcher_to_every_selector() -> None:
    expr = 'sum(rate(gateway_ws_handshakes_total{job="gateway", result="error"}[{{.window}}]))'
    assert inject(expr, 'role="canary"') == (
        'sum(rate(gateway_ws_handshakes_total{job="gateway", result="error", role="canary"}[{{.window}}]))')
    assert inject("sum(rate(x[5m])) / sum by (le) (rate(y{}[5m]))", 'r="c"') == (
        'sum(rate(x{r="c"}[5m])) / sum by (le) (rate(y{r="c"}[5m]))')
    assert inject("1 - avg(up)", 'r="c"') is None
    assert inject('sum(rate({__name__="x"}[5m]))', 'r="c"') is None
    assert inject('sum(rate(x{route=~"/v1/{id}"}[5m]))', 'r="c"') is None
    by_name = {s.name: s for s in load_slos([ROOT / "slo"])}
    latency = scope(by_name["gateway-push-latency"], 'role="canary"')
    assert latency is not None and 'role="canary"' in error_ratio(latency, 60)
    availability = scope(by_name["gateway-availability"], 'role="canary"')
    assert availability is not None and error_ratio(availability, 60).count('role="canary"') == 3
    assert selects_job(by_name["api-errors"], "gateway") and selects_job(by_name["gateway-availability"], "gateway")
    assert not selects_job(by_name["ledger-write-availability"], "gateway")
