"""The canary judge's statistics (canary/judge.py) against values worked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from openbell.canary.judge import JudgeMetric, binomial_sf, decide_scoped, judge_metric, mann_whitney, ranks
from openbell.slo.loader import load_slos

ROOT = Path(__file__).resolve().parents[2]


def test_ranks_average_ties() -> None:
    assert ranks([10.0, 20.0, 20.0, 5.0]) == [2.0, 3.5, 3.5, 1.0]


def test_mann_whitney_matches_the_textbook() -> None:
    low, high = [float(v) for v in range(1, 9)], [float(v) for v in range(9, 17)]
    test = mann_whitney(low, high)
    # n1 = n2 = 8, U = 0: z = (32 - 0.5) / sqrt(8*8*17/12) = 3.308, one-sided p = 4.70e-4 (scipy agrees).
    assert test.u == 0.0 and test.p_less == pytest.approx(4.695e-4, rel=1e-3) and test.p_greater > 0.99
    assert test.shift == -8.0
    assert mann_whitney([1.0] * 5, [1.0] * 9).p_greater == 1.0  # all tied: no evidence


LATENCY = JudgeMetric("push_latency_mean", "q", "ms", relative_tolerance=0.25, absolute_tolerance=5.0, min_samples=8)


def test_the_judge_needs_samples_significance_and_effect() -> None:
    stable = [4.0 + 0.1 * (i % 7) for i in range(20)]
    assert judge_metric(LATENCY, [90.0] * 5, stable).outcome == "inconclusive"
    worse = judge_metric(LATENCY, [85.0 + (i % 3) for i in range(10)], stable)
    assert worse.outcome == "fail" and worse.p_value is not None and worse.p_value < 1e-3 and "worse" in worse.reason
    # Significant but harmless: +1 ms on 4 ms is under the 5 ms absolute tolerance.
    slight = judge_metric(LATENCY, [5.0 + 0.1 * (i % 7) for i in range(20)], stable)
    assert slight.outcome == "pass" and slight.p_value is not None and slight.p_value < 1e-3
    nan = judge_metric(LATENCY, [math.nan] * 20, stable)
    assert nan.outcome == "inconclusive" and nan.canary_samples == 0


def test_binomial_tail_is_exact_on_small_cases() -> None:
    assert binomial_sf(0, 10, 0.3) == 1.0
    assert binomial_sf(11, 10, 0.3) == 0.0
    assert binomial_sf(10, 10, 0.5) == pytest.approx(0.5 ** 10)
    assert binomial_sf(2, 3, 0.5) == pytest.approx(0.5)
    assert binomial_sf(2, 67, 0.00144) == pytest.approx(0.0043, rel=0.05)


def test_a_canary_burning_far_above_the_page_threshold_fails_on_few_events() -> None:
    api = load_slos([ROOT / "slo" / "api-errors.yaml"])[0]  # 99.99%: slowest page threshold 6x, 0.06%
    # A 5% error canary probed at 5 requests a second: its second error is evidence (p < 0.01).
    assert decide_scoped("api", api, 25, 2 / 122, 122, stable_ratio=0.0).outcome == "fail"
    assert decide_scoped("api", api, 20, 3 / 60, 60).outcome == "fail"
    assert decide_scoped("api", api, 20, 0.0, 60).outcome == "pass"
    assert decide_scoped("api", api, 20, 1 / 60, 60).outcome == "pass"  # one error: not yet evidence
    assert decide_scoped("api", api, 20, None, 0).outcome is None
    # The whole platform burning alike is the fleet gate's business, not the canary's fault.
    alike = decide_scoped("api", api, 20, 3 / 60, 60, stable_ratio=0.04)
    assert alike.outcome == "pass" and "not the canary's doing" in alike.reason
    assert decide_scoped("api", api, 20, 3 / 60, 60, stable_ratio=0.001).outcome == "fail"


def test_the_sequential_scoped_burn_fails_only_when_surely_above_the_page_threshold() -> None:
    from openbell.canary.judge import decide_scoped_sequential

    api = load_slos([ROOT / "slo" / "api-errors.yaml"])[0]  # 99.99%: slowest page threshold 6x, 0.06%
    # 5 errors in 160 requests, at the judge's alpha split over some 50 sequences: surely above 0.06%.
    assert decide_scoped_sequential("api", api, 20, 5 / 160, 160, 0.0, 0.0002).outcome == "fail"
    # One error is not sure of anything; none is within; no events says nothing.
    assert decide_scoped_sequential("api", api, 20, 1 / 160, 160, 0.0, 0.0002).outcome == "pass"
    assert decide_scoped_sequential("api", api, 20, 0.0, 160, None, 0.0002).outcome == "pass"
    assert decide_scoped_sequential("api", api, 20, None, 0, None, 0.0002).outcome is None
    # increase() extrapolates good and total apart: a ratio a little below 0 is no bad event (the gameday
    # crashed on -301 of 32,725 before).
    assert decide_scoped_sequential("api", api, 20, -301 / 32725, 32725, 0.0, 0.0002).outcome == "pass"
    # Stable burning alike is not the canary's doing.
    assert decide_scoped_sequential("api", api, 20, 5 / 160, 160, 0.03, 0.0002).outcome == "pass"
