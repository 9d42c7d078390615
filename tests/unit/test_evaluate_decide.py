"""The gate's decision on plain values: no data is never a pass."""

import math

import pytest

from openbell.slo.evaluate import GroupKey, Reading, SLOReadings, decide, verdict_of
from openbell.slo.model import SLO, Alerting, RatioSLI

SLO_999 = SLO(service="svc", name="avail", objective_ratio=0.999,
              sli=RatioSLI(total="t_total", bad="b_total"), alerting=Alerting(min_events=0))
G: GroupKey = ()


def readings(r5m, r1h, r30m=0.0, r6h=0.0, events=None, slo=SLO_999):
    vals = {300.0: r5m, 3600.0: r1h, 1800.0: r30m, 21600.0: r6h}
    ratios = {w: (Reading({G: v}) if v is not None else Reading({})) for w, v in vals.items()}
    ev = {w: Reading({G: events}) for w in (3600.0, 21600.0)} if events is not None else {}
    return SLOReadings(slo, ratios, ev, Reading({G: 0.0}))


def outcome(r):
    return verdict_of(decide(r), [r.slo]).outcome


def test_both_windows_above_threshold_fails():
    assert outcome(readings(0.5, 0.02)) == "fail"


def test_short_window_recovered_passes():
    assert outcome(readings(0.0, 0.02)) == "pass"


def test_no_series_at_all_is_inconclusive():
    r = SLOReadings(SLO_999, {w: Reading({}) for w in (300.0, 3600.0, 1800.0, 21600.0)}, {}, Reading({}))
    v = verdict_of(decide(r), [SLO_999])
    assert v.outcome == "inconclusive"
    assert "no data" in " ".join(v.reasons)


def test_nan_from_zero_traffic_is_inconclusive_not_pass():
    v = verdict_of(decide(readings(math.nan, math.nan, math.nan, math.nan)), [SLO_999])
    assert v.outcome == "inconclusive"
    assert "no events (0/0)" in " ".join(v.reasons)


def test_one_known_window_under_threshold_rules_the_pair_out():
    assert outcome(readings(None, 0.0001, 0.0, 0.0)) == "pass"


def test_query_error_is_inconclusive_with_its_message():
    r = readings(0.5, 0.02)
    r.error_ratios[3600.0] = Reading(error="Prometheus query timed out: boom")
    r.error_ratios[21600.0] = Reading(error="Prometheus query timed out: boom")
    v = verdict_of(decide(r), [SLO_999])
    assert v.outcome == "inconclusive"
    assert "timed out" in " ".join(v.reasons)


def test_low_traffic_guard_turns_a_burn_into_a_pass_with_reason():
    guarded = SLO(service="svc", name="avail", objective_ratio=0.999, sli=RatioSLI(total="t", bad="b"))
    r = readings(1.0, 1.0, 1.0, 1.0, events=12.0, slo=guarded)
    results = decide(r)
    assert results[0].outcome == "pass"
    assert "too little traffic" in results[0].pairs[0].reason


def test_figures_carry_burn_rates():
    results = decide(readings(0.5, 0.02))
    page_1h = results[0].pairs[0]
    assert page_1h.long_burn_rate == pytest.approx(20.0)
    assert page_1h.short_burn_rate == pytest.approx(500.0)
    assert page_1h.burn_rate_threshold == 14.4
