"""Window pairs and burn-rate figures against the SRE Workbook's tables (chapter 5, Alerting on SLOs)."""

import pytest

from openbell.slo.burn import budget_remaining, burn_rate, default_min_events
from openbell.slo.windows import min_period_s, window_pairs

DAY = 86400.0


def test_thirty_day_pairs_match_the_workbook():
    pairs = [(p.severity, p.long_window_s, p.short_window_s, p.burn_rate) for p in window_pairs(30 * DAY)]
    assert pairs == [
        ("page", 3600, 300, 14.4),
        ("page", 6 * 3600, 1800, 6),
        ("ticket", DAY, 7200, 3),
        ("ticket", 3 * DAY, 6 * 3600, 1),
    ]


def test_budget_consumed_when_each_pair_fires_is_2_5_10_10_percent():
    consumed = [round(p.budget_consumed(30 * DAY), 6) for p in window_pairs(30 * DAY)]
    assert consumed == [0.02, 0.05, 0.10, 0.10]


def test_detection_time_for_a_total_outage_at_999_matches_the_workbook():
    # Workbook: at 99.9%, a 100% error rate fires the 1h/14.4x alert after 0.864 minutes (51.84 s).
    budget = 0.001
    detection = [p.detection_time_s(budget) for p in window_pairs(30 * DAY)]
    assert detection == pytest.approx([51.84, 129.6, 259.2, 259.2])


def test_pairs_that_need_more_than_100_percent_errors_never_fire():
    page_1h = window_pairs()[0]
    assert page_1h.detection_time_s(0.1) is None  # 90% objective: 14.4 x 10% > 100%


def test_other_periods_scale_windows_and_keep_burn_rates_and_budget_shares():
    for days in (7, 28, 90):
        pairs = window_pairs(days * DAY)
        assert [p.burn_rate for p in pairs] == [14.4, 6, 3, 1]
        assert [round(p.budget_consumed(days * DAY), 3) for p in pairs] == [0.02, 0.05, 0.10, 0.10]
    seven = window_pairs(7 * DAY)[0]
    assert (seven.long_window_s, seven.short_window_s) == (840, 70)


def test_min_period_keeps_the_shortest_window_at_one_second():
    assert min_period_s() == pytest.approx(30 * DAY / 300)
    assert window_pairs(min_period_s())[0].short_window_s == 1


def test_burn_rate_and_budget_remaining():
    assert burn_rate(0.0144, 0.001) == pytest.approx(14.4)
    assert budget_remaining(0.0005, 0.001) == pytest.approx(0.5)
    assert budget_remaining(0.002, 0.001) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        burn_rate(0.1, 0)


def test_default_min_events_is_where_one_bad_event_alone_stays_under_the_threshold():
    n = default_min_events(14.4, 0.001)
    assert n == 70
    assert 1 / n <= 14.4 * 0.001 < 1 / (n - 1)
