"""The gate's decision on plain values: no data is never a pass."""

import math

import pytest

from openbell.slo.evaluate import GroupKey, Reading, SLOReadings, decide, verdict_of
from openbell.slo.model import SLO, Alerting, LatencySLI, RatioSLI, ThresholdSLI

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


LAG_999 = SLO(service="enricher", name="lag", objective_ratio=0.999,
              sli=ThresholdSLI(gauge="lag_seconds", bound=0.05))
PUSH_99 = SLO(service="gateway", name="push", objective_ratio=0.99,
              sli=LatencySLI(histogram="push_seconds", threshold_s=0.05, buckets_s=(0.01, 0.05, 0.1)))


def young(slo, samples, ratio):
    """Every window of a young history holds the same samples: the history is shorter than the shortest."""
    ratios = {w: Reading({G: ratio}) for w in (300.0, 3600.0, 1800.0, 21600.0)}
    return SLOReadings(slo, ratios, {}, Reading({G: ratio}),
                       {w: Reading({G: float(samples)}) for w in (3600.0, 21600.0)})


def test_one_bad_sample_on_a_young_history_does_not_page_a_threshold_slo():
    # 40 one-second samples, one of them over the bound: 2.5% bad, past both page thresholds (1.44%, 0.6%).
    results = decide(young(LAG_999, 40, 1 / 40))
    assert results[0].outcome == "pass"
    page_1h = results[0].pairs[0]
    assert page_1h.min_samples == 70 and page_1h.samples == 40
    assert "too young a history" in page_1h.reason


def test_a_threshold_slo_out_of_bounds_on_enough_history_still_pages():
    results = decide(young(LAG_999, 200, 0.5))
    assert results[0].outcome == "fail"
    assert "burn rate" in results[0].pairs[0].reason


def test_a_latency_slo_needs_as_many_scrapes_as_one_bad_scrape_cannot_cross():
    # 99% objective: 1 / (14.4 x 1%) -> 7 intervals (8 scrapes) for the 1h pair, 1 / (6 x 1%) -> 17 (18).
    results = decide(young(PUSH_99, 10, 0.2))
    page_1h, page_6h = results[0].pairs
    assert (page_1h.min_samples, page_6h.min_samples) == (8, 18)
    assert page_1h.outcome == "fail" and page_6h.outcome == "pass"


def test_ratio_slis_keep_their_event_guard_and_get_no_sample_guard():
    results = decide(readings(0.5, 0.02))
    assert all(p.min_samples is None for p in results[0].pairs)
    assert results[0].outcome == "fail"
