"""The sequential judge's statistics (canary/sequential.py): values worked by hand, cross-checked with scipy,
and the confidence sequences' anytime validity seen by simulation."""

from __future__ import annotations

import math
import random

import pytest

from openbell.canary.sequential import (
    Counts,
    compare,
    confidence_sequence,
    exceedances,
    log_mixture,
    overall,
)


def test_the_mixture_is_the_beta_binomial_marginal_over_the_likelihood() -> None:
    # k = 0 of n = 10 at p = 0.1: B(1/2, 21/2) / B(1/2, 1/2) / 0.9^10. B(1/2, 21/2) = G(1/2) G(21/2) / G(11)
    # = sqrt(pi) * (19!! / 2^10) sqrt(pi) / 10! = pi * 654729075 / 1024 / 3628800 = pi * 0.176197.
    expected = math.log(0.17619705200195312) - 10 * math.log(0.9)
    assert log_mixture(0, 10, 0.1) == pytest.approx(expected, rel=1e-12)
    assert log_mixture(3, 10, 0.0) == math.inf and log_mixture(3, 10, 1.0) == math.inf
    with pytest.raises(ValueError):
        log_mixture(11, 10, 0.5)


def test_no_bad_event_has_a_closed_form_upper_bound() -> None:
    # k = 0: M_n(p) = c / (1 - p)^n < 1/alpha  <=>  p < 1 - (c alpha)^(1/n), c = B(1/2, n + 1/2) / pi.
    for n, alpha in ((10, 0.05), (200, 0.001), (5000, 1e-4)):
        c = math.exp(math.lgamma(0.5) + math.lgamma(n + 0.5) - math.lgamma(n + 1) - math.log(math.pi))
        low, high = confidence_sequence(0, n, alpha)
        assert low == 0.0
        assert high == pytest.approx(1 - (c * alpha) ** (1 / n), rel=1e-9)
    assert confidence_sequence(0, 0, 0.01) == (0.0, 1.0)
    low, high = confidence_sequence(10, 10, 0.05)  # mirror image
    assert high == 1.0 and 1 - low == pytest.approx(confidence_sequence(0, 10, 0.05)[1], rel=1e-9)


def test_the_bounds_match_scipy_root_finding() -> None:
    special = pytest.importorskip("scipy.special")
    optimize = pytest.importorskip("scipy.optimize")

    def log_m(k: int, n: int, p: float) -> float:
        return (special.betaln(0.5 + k, 0.5 + n - k) - special.betaln(0.5, 0.5)
                - special.xlogy(k, p) - special.xlog1py(n - k, -p))

    for k, n, alpha in ((3, 60, 0.01), (50, 1000, 0.001), (990, 1000, 0.0002), (1, 7, 0.2)):
        level = math.log(1 / alpha)
        centre = k / n
        def gap(p: float, k: int = k, n: int = n, level: float = level) -> float:
            return float(log_m(k, n, p) - level)

        low = optimize.brentq(gap, 1e-15, centre)
        high = optimize.brentq(gap, centre, 1 - 1e-15)
        ours = confidence_sequence(k, n, alpha)
        assert ours[0] == pytest.approx(low, rel=1e-8) and ours[1] == pytest.approx(high, rel=1e-8)


def test_the_sequence_holds_at_every_look_with_probability_one_minus_alpha() -> None:
    # Anytime validity, seen: 400 streams of 2,000 Bernoulli(0.05) events, looked at after every event. The
    # share of streams whose interval ever misses 0.05 stays below alpha (Ville), and a fixed-n interval of
    # the same nominal level looked at as often would miss far more often.
    rng = random.Random(7)
    alpha, p, streams, length = 0.1, 0.05, 400, 2000
    missed = 0
    for _ in range(streams):
        k = 0
        for n in range(1, length + 1):
            k += rng.random() < p
            if n % 10 == 0:
                low, high = confidence_sequence(k, n, alpha)
                if not low <= p <= high:
                    missed += 1
                    break
    assert missed / streams <= alpha


def test_a_comparison_decides_regressed_non_inferior_or_not_yet() -> None:
    alpha = 0.01 / 50  # the judge's alpha split over 50 sequences
    # 5% errors against none, 200 canary requests against 2,000 stable: surely worse (margin 0).
    bad = compare("errors", Counts(10, 200), Counts(0, 2000), alpha, 0.0, 0.02)
    assert bad.decision == "regressed" and bad.low > 0
    assert "canary 10/200 (5.00%) vs stable 0/2000 (0.00%)" in bad.line()
    # No errors in 1,000 canary requests: surely within 2 points of stable.
    good = compare("errors", Counts(0, 1000), Counts(1, 6000), alpha, 0.0, 0.02)
    assert good.decision == "non-inferior" and good.high <= 0.02
    # Too few to say either.
    early = compare("errors", Counts(0, 40), Counts(0, 400), alpha, 0.0, 0.02)
    assert early.decision == "not yet" and early.low <= 0 < 0.02 < early.high
    # Latency (margin 5pp, tolerance 10pp): canary pushes slower than 10 ms 30% of the time vs stable's 24% is
    # +6pp, in the indifference zone: on 1,000 pushes neither is sure; on many it is shown within tolerance.
    close = compare("push_latency > 10 ms", Counts(300, 1000), Counts(2400, 10000), alpha, 0.05, 0.1)
    assert close.decision == "not yet"
    within = compare("push_latency > 10 ms", Counts(3000, 10000), Counts(24000, 100000), alpha, 0.05, 0.1)
    assert within.decision == "non-inferior"
    # 40% vs 24%: surely beyond the margin.
    far = compare("push_latency > 10 ms", Counts(4000, 10000), Counts(24000, 100000), alpha, 0.05, 0.1)
    assert far.decision == "regressed" and far.low > 0.05
    with pytest.raises(ValueError):
        compare("x", Counts(0, 1), Counts(0, 1), alpha, 0.2, 0.1)


def test_histogram_buckets_become_exceedance_counts() -> None:
    buckets = [(0.01, 70.0), (0.005, 20.0), (math.inf, 100.0), (0.025, 100.0)]
    assert exceedances(buckets) == [(0.005, 80, 100), (0.01, 30, 100), (0.025, 0, 100)]
    assert exceedances([(0.01, 5.0)]) == []  # no +Inf bucket: no total


def test_the_overall_decision_needs_every_question_for_a_pass_and_one_for_a_fail() -> None:
    alpha = 0.001
    yes = compare("a", Counts(0, 5000), Counts(0, 5000), alpha, 0.0, 0.02)
    no = compare("b", Counts(50, 100), Counts(0, 5000), alpha, 0.0, 0.02)
    wait = compare("c", Counts(0, 10), Counts(0, 10), alpha, 0.0, 0.02)
    assert overall([yes, yes]) == "non-inferior"
    assert overall([yes, wait]) == "not yet"
    assert overall([yes, wait, no]) == "regressed"
    assert overall([]) == "not yet"
