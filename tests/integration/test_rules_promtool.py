"""Generated rules under Debian's promtool: `check rules` and `test rules` suites built from the maths.

Each suite replays minutes-to-hours of synthetic series through the real Prometheus rule engine
and asserts when the burn alerts fire and resolve, using the detection times the model predicts.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from openbell.slo.loader import load_slos
from openbell.slo.model import SLO, Alerting, LatencySLI, RatioSLI, ThresholdSLI
from openbell.slo.rules import min_samples_for
from openbell.slo.windows import window_pairs
from tests.promtool import check_rules, counter, gauge, run_rule_tests, write_rules

pytestmark = pytest.mark.prometheus

REPO = Path(__file__).resolve().parents[2]
STEP = 10  # seconds between samples and between rule evaluations
HISTORY = 90 * 60 // STEP  # 90 minutes of healthy history before the outage (steps)
RATE = 20.0  # events per step (2/s)

# Fixed annotations so that promtool can compare alerts exactly; the templates are checked elsewhere.
ANNOTATIONS = {"summary": "s", "description": "d"}


def _alerting(**kw: object) -> Alerting:
    return Alerting(**{"ticket": False, "min_events": 0, "annotations": ANNOTATIONS, **kw})  # type: ignore[arg-type]


RATIO_999 = SLO(service="checkout", name="checkout-availability", objective_ratio=0.999,
                sli=RatioSLI(total='rate(req_total{job="checkout"}[{{.window}}])',
                             bad='rate(req_total{job="checkout", code="500"}[{{.window}}])'),
                alerting=_alerting())
LATENCY_99 = SLO(service="push", name="push-latency", objective_ratio=0.99,
                 sli=LatencySLI(histogram="push_seconds", threshold_s=0.05, buckets_s=(0.01, 0.05, 0.1),
                                selector='job="push"'),
                 alerting=_alerting())
THRESHOLD_999 = SLO(service="pipe", name="pipe-lag", objective_ratio=0.999,
                    sli=ThresholdSLI(gauge='lag_seconds{job="pipe"}', bound=0.05), alerting=_alerting())


def _alert(name: str, eval_s: int, firing: list[dict[str, str]] | None = None) -> dict[str, object]:
    case: dict[str, object] = {"eval_time": f"{eval_s}s", "alertname": name}
    case["exp_alerts"] = [{"exp_labels": labels, "exp_annotations": ANNOTATIONS} for labels in (firing or [])]
    return case


def _page_labels(slo: SLO, **extra: str) -> dict[str, str]:
    return {"severity": "page", "slo": slo.name, "service": slo.service, **slo.labels, **extra}


def _first_eval_at_or_after(t_s: float) -> int:
    return int(math.ceil(t_s / STEP) * STEP)


def _ratio_series(outage_steps: int, recovery_steps: int) -> list[dict[str, str]]:
    ok = [RATE] * HISTORY + [0.0] * outage_steps + [RATE] * recovery_steps
    bad = [0.0] * HISTORY + [RATE] * outage_steps + [0.0] * recovery_steps
    return [{"series": 'req_total{job="checkout", code="200"}', "values": counter(ok)},
            {"series": 'req_total{job="checkout", code="500"}', "values": counter(bad)}]


def _outage_start_s() -> int:
    # The first bad increment lands between sample HISTORY-1 and sample HISTORY.
    return (HISTORY - 1) * STEP


def test_platform_rules_pass_promtool_check(tmp_path):
    rules = write_rules(tmp_path, load_slos([REPO / "slo"]))
    proc = check_rules(rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_page_alert_fires_within_detection_time_of_a_total_outage_and_resolves(tmp_path):
    slo = RATIO_999
    rules = write_rules(tmp_path, [slo])
    page = window_pairs()[0]
    detection = page.detection_time_s(slo.error_budget)
    assert detection == pytest.approx(51.84)
    outage_steps, recovery_steps = 20 * 60 // STEP, 45 * 60 // STEP
    t0 = _outage_start_s()
    fire_by = _first_eval_at_or_after(t0 + detection + STEP)
    recovered_at = t0 + outage_steps * STEP
    # After recovery the 1h/5m pair clears once 5m of clean data are in; the 6h/30m pair after 30m.
    resolved_by = _first_eval_at_or_after(recovered_at + max(p.short_window_s for p in window_pairs()[:2]) + STEP)
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": _ratio_series(outage_steps, recovery_steps),
        "alert_rule_test": [
            _alert(slo.alert_name, t0 - STEP),
            _alert(slo.alert_name, fire_by, [_page_labels(slo)]),
            _alert(slo.alert_name, recovered_at, [_page_labels(slo)]),
            _alert(slo.alert_name, resolved_by),
        ],
    }], STEP)


def test_page_alert_does_not_fire_before_the_detection_time(tmp_path):
    slo = RATIO_999
    rules = write_rules(tmp_path, [slo])
    detection = window_pairs()[0].detection_time_s(slo.error_budget)
    assert detection is not None
    t0 = _outage_start_s()
    too_early = int(math.floor((t0 + detection * 0.5) / STEP) * STEP)
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": _ratio_series(12, 0),
        "alert_rule_test": [_alert(slo.alert_name, too_early)],
    }], STEP)


def test_error_ratio_equal_to_the_budget_never_pages(tmp_path):
    slo = RATIO_999
    rules = write_rules(tmp_path, [slo])
    steps = 7 * 3600 // STEP
    # 1 bad in every 1000 events: burn rate exactly 1 for 7 hours.
    ok = [999.0] * steps
    bad = [1.0] * steps
    series = [{"series": 'req_total{job="checkout", code="200"}', "values": counter(ok)},
              {"series": 'req_total{job="checkout", code="500"}', "values": counter(bad)}]
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [_alert(slo.alert_name, h * 3600) for h in (1, 2, 4, 6, 7)],
        "promql_expr_test": [{
            "expr": 'slo:sli_error:ratio_rate1h{slo="checkout-availability"}',
            "eval_time": "2h",
            "exp_samples": [{"labels": 'slo:sli_error:ratio_rate1h{slo="checkout-availability", service="checkout"}',
                             "value": 0.001}],
        }],
    }], STEP)


def test_low_traffic_guard_keeps_a_trickle_of_errors_from_paging(tmp_path):
    # The default guard: 70 events in the 1h window for the 14.4x pair at 99.9%.
    guarded = SLO(service="checkout", name="checkout-availability", objective_ratio=0.999,
                  sli=RATIO_999.sli, alerting=_alerting(min_events=None))
    rules = write_rules(tmp_path, [guarded])
    # One request a minute, all failing, for 40 minutes after a quiet hour: 100% errors but 40 events/h.
    quiet = 3600 // STEP
    steps = 40 * 60 // STEP
    trickle = [1.0 if i % 6 == 0 else 0.0 for i in range(steps)]
    series = [{"series": 'req_total{job="checkout", code="200"}', "values": counter([0.0] * (quiet + steps))},
              {"series": 'req_total{job="checkout", code="500"}', "values": counter([0.0] * quiet + trickle)}]
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [_alert(guarded.alert_name, quiet * STEP + 30 * 60)],
    }], STEP)


def test_latency_sli_pages_when_requests_slow_down(tmp_path):
    slo = LATENCY_99
    rules = write_rules(tmp_path, [slo])
    outage, recovery = 15 * 60 // STEP, 40 * 60 // STEP
    fast = [RATE] * HISTORY + [0.0] * outage + [RATE] * recovery
    total = [RATE] * (HISTORY + outage + recovery)
    series = [
        {"series": 'push_seconds_bucket{job="push", le="0.01"}', "values": counter(fast)},
        {"series": 'push_seconds_bucket{job="push", le="0.05"}', "values": counter(fast)},
        {"series": 'push_seconds_bucket{job="push", le="0.1"}', "values": counter(total)},
        {"series": 'push_seconds_bucket{job="push", le="+Inf"}', "values": counter(total)},
        {"series": 'push_seconds_count{job="push"}', "values": counter(total)},
    ]
    detection = window_pairs()[0].detection_time_s(slo.error_budget)
    assert detection == pytest.approx(518.4)
    t0 = _outage_start_s()
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [
            _alert(slo.alert_name, t0 - STEP),
            _alert(slo.alert_name, _first_eval_at_or_after(t0 + detection + STEP), [_page_labels(slo)]),
            _alert(slo.alert_name, t0 + (outage + recovery - 1) * STEP),  # resolved 39 minutes after recovery
        ],
    }], STEP)


def test_threshold_sli_pages_when_the_gauge_stays_out_of_bounds(tmp_path):
    slo = THRESHOLD_999
    rules = write_rules(tmp_path, [slo])
    outage, recovery = 10 * 60 // STEP, 40 * 60 // STEP
    lag = [0.01] * HISTORY + [0.5] * outage + [0.01] * recovery
    detection = window_pairs()[0].detection_time_s(slo.error_budget)
    assert detection is not None
    t0 = HISTORY * STEP  # a gauge is out of bounds from its first bad sample
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": [{"series": 'lag_seconds{job="pipe", partition="0"}', "values": gauge(lag)},
                         {"series": 'lag_seconds{job="pipe", partition="1"}', "values": gauge([0.01] * len(lag))}],
        "alert_rule_test": [
            _alert(slo.alert_name, t0 - STEP),
            _alert(slo.alert_name, _first_eval_at_or_after(t0 + detection + STEP), [_page_labels(slo)]),
            _alert(slo.alert_name, t0 + (outage + recovery - 1) * STEP),  # resolved 39 minutes after recovery
        ],
    }], STEP)


def test_grouped_slo_pages_only_for_the_burning_group(tmp_path):
    slo = SLO(service="push", name="push-latency", objective_ratio=0.99, sli=LATENCY_99.sli,
              group_by=("exchange",), alerting=_alerting())
    rules = write_rules(tmp_path, [slo])
    outage = 15 * 60 // STEP
    series = []
    for exchange, broken in (("NYSE", False), ("LSE", True)):
        fast = [RATE] * HISTORY + [0.0 if broken else RATE] * outage
        total = [RATE] * (HISTORY + outage)
        for le, values in (("0.05", fast), ("+Inf", total)):
            series.append({"series": f'push_seconds_bucket{{job="push", exchange="{exchange}", le="{le}"}}',
                           "values": counter(values)})
        series.append({"series": f'push_seconds_count{{job="push", exchange="{exchange}"}}', "values": counter(total)})
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [_alert(slo.alert_name, (HISTORY + outage) * STEP - STEP,
                                   [_page_labels(slo, exchange="LSE")])],
    }], STEP)


def test_slow_burn_opens_a_ticket_but_does_not_page(tmp_path):
    slo = SLO(service="checkout", name="checkout-availability", objective_ratio=0.999, sli=RATIO_999.sli,
              alerting=_alerting(ticket=True))
    rules = write_rules(tmp_path, [slo])
    steps = 4 * 3600 // STEP
    # 0.4% errors: burn 4x, above the 3x ticket pair and far below the 6x and 14.4x page pairs.
    series = [{"series": 'req_total{job="checkout", code="200"}', "values": counter([996.0] * steps)},
              {"series": 'req_total{job="checkout", code="500"}', "values": counter([4.0] * steps)}]
    ticket = {"severity": "ticket", "slo": slo.name, "service": slo.service}
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [_alert(slo.alert_name, 3 * 3600, [ticket])],
    }], STEP)


def test_sli_absent_alert_fires_when_metrics_are_missing(tmp_path):
    slo = RATIO_999
    rules = write_rules(tmp_path, [slo])
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": [{"series": 'unrelated_total{job="x"}', "values": counter([1.0] * 120)}],
        "alert_rule_test": [
            _alert(slo.absent_alert_name, 5 * 60),
            _alert(slo.absent_alert_name, 11 * 60, [{"severity": "ticket", "slo": slo.name, "service": slo.service}]),
        ],
    }], STEP)


def test_good_query_keeps_paging_when_the_good_series_vanishes(tmp_path):
    """A restart into a broken state: the success series is never exported again, every request fails."""
    slo = SLO(service="checkout", name="checkout-good", objective_ratio=0.995, alerting=_alerting(),
              sli=RatioSLI(total='rate(co_total{job="co"}[{{.window}}])',
                           good='rate(co_total{job="co", result="ok"}[{{.window}}])'))
    rules = write_rules(tmp_path, [slo])
    outage = 60 * 60 // STEP
    ok_values = counter([RATE] * HISTORY)  # ends at the restart: no more samples
    series = [{"series": 'co_total{job="co", result="ok"}', "values": ok_values},
              {"series": 'co_total{job="co", result="error"}', "values": counter([0.0] * HISTORY + [RATE] * outage)}]
    t_end = (HISTORY + outage - 1) * STEP
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [_alert(slo.alert_name, t, [_page_labels(slo)])
                            for t in (HISTORY * STEP + 40 * 60, t_end)],
    }], STEP)


def test_slos_whose_names_join_alike_get_distinct_rule_groups(tmp_path):
    a = SLO(service="api", name="gateway-errors", objective_ratio=0.999, sli=RATIO_999.sli)
    b = SLO(service="api-gateway", name="errors", objective_ratio=0.999, sli=RATIO_999.sli)
    proc = check_rules(write_rules(tmp_path, [a, b]))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_threshold_period_recording_does_not_quantise_the_budget(tmp_path):
    """One 20-minute breach spends 20 minutes of bad time wherever it falls against any step grid."""
    slo = THRESHOLD_999
    rules = write_rules(tmp_path, [slo])
    step = 60  # coarser than the other suites: this one only reads the 30-day recording
    span = 6 * 3600 // step
    cases = []
    for offset_min in (60, 77, 89):
        lag = [0.5 if offset_min <= i < offset_min + 20 else 0.01 for i in range(span)]
        cases.append({
            "interval": f"{step}s",
            "input_series": [{"series": 'lag_seconds{job="pipe"}', "values": gauge(lag)}],
            "promql_expr_test": [{
                "expr": 'round(slo:sli_error:ratio_rate4w2d{slo="pipe-lag"} * (5 * 3600 + 55 * 60) / 60)',
                "eval_time": f"{(span - 1) * step}s",
                # 20 minutes bad in the data the 30d window holds so far (minus the first 5m window)
                "exp_samples": [{"labels": '{slo="pipe-lag", service="pipe"}', "value": 20}],
            }],
        })
    run_rule_tests(tmp_path, rules, cases, step)


def test_one_bad_sample_on_a_young_history_does_not_page(tmp_path):
    # A platform a minute old: its lag gauge is out of bounds for one 10 s sample. Over that young history
    # the bad share is ~9%, past every threshold, but no more evidence exists than that one sample.
    slo = THRESHOLD_999
    rules = write_rules(tmp_path, [slo])
    lag = [0.01] * 5 + [0.5] + [0.01] * 12
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": [{"series": 'lag_seconds{job="pipe", partition="0"}', "values": gauge(lag)}],
        "alert_rule_test": [_alert(slo.alert_name, t) for t in (60, 90, 120, 170)],
    }], STEP)


def test_an_outage_from_birth_pages_once_the_window_holds_enough_samples(tmp_path):
    # Out of bounds from the first sample: the 1h pair needs 70 subquery steps (4 s apart at 1h) of history,
    # so it fires at 280 s and not before, however bad the ratio.
    slo = THRESHOLD_999
    rules = write_rules(tmp_path, [slo])
    step_s = 4  # the threshold subquery's resolution over one hour
    first = min_samples_for(slo, window_pairs()[0])
    assert first == 70
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": [{"series": 'lag_seconds{job="pipe", partition="0"}', "values": gauge([0.5] * 40)}],
        "alert_rule_test": [
            _alert(slo.alert_name, 270),
            _alert(slo.alert_name, _first_eval_at_or_after((first - 1) * step_s), [_page_labels(slo)]),
        ],
    }], STEP)


def test_one_slow_scrape_on_a_young_history_does_not_page_a_latency_slo(tmp_path):
    slo = LATENCY_99
    rules = write_rules(tmp_path, [slo])
    # A new gateway: its counters start at 0; the third scrape interval is all slow pushes.
    fast = [0.0] + [RATE] * 2 + [0.0] + [RATE] * 8
    total = [0.0] + [RATE] * 11
    series = [
        {"series": 'push_seconds_bucket{job="push", le="0.05"}', "values": counter(fast)},
        {"series": 'push_seconds_bucket{job="push", le="+Inf"}', "values": counter(total)},
        {"series": 'push_seconds_count{job="push"}', "values": counter(total)},
    ]
    run_rule_tests(tmp_path, rules, [{
        "interval": f"{STEP}s",
        "input_series": series,
        # 1 slow interval of 4, 5, 6: 25-17% bad, past 14.4% for the 1h pair, which needs 8 scrapes (7 intervals).
        "alert_rule_test": [_alert(slo.alert_name, t) for t in (40, 50, 60, 70)],
    }], STEP)
