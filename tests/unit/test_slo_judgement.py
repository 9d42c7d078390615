"""The one baseline-aware judgement (slo/judgement.py) on plain values: what burned before an action, or what
the action said it would burn, is reported and not counted; everything else counts."""

from __future__ import annotations

from openbell.slo.evaluate import GroupKey, Reading, SLOReadings, decide
from openbell.slo.judgement import judge
from openbell.slo.model import SLO, Alerting, RatioSLI

G: GroupKey = ()


def _slo(name: str) -> SLO:
    return SLO(service="svc", name=name, objective_ratio=0.999, sli=RatioSLI(total="t_total", bad="b_total"),
               alerting=Alerting(min_events=0))


def _result(name: str, ratio: float | None):
    """One group's result: burning at both page windows (ratio 0.5), healthy (0.0), or no data (None)."""
    value = {} if ratio is None else {G: ratio}
    ratios = {w: Reading(dict(value)) for w in (300.0, 3600.0, 1800.0, 21600.0)}
    [result] = decide(SLOReadings(_slo(name), ratios, {}, Reading({G: 0.0})), "page") or [None]
    return result


def test_a_burn_present_at_the_baseline_is_reported_not_counted() -> None:
    lag, api = _result("lag", 0.5), _result("api", 0.0)
    j = judge([lag, api], baseline={"svc/lag"}, before="the rollout")
    assert j.outcome == "pass" and j.outcomes == ["pass"] and not j.failing
    assert j.lines == ["svc/lag: already burning before the rollout (not counted)"]
    # The same burn without the baseline fails, with its pair's reason.
    j = judge([lag, api])
    assert j.outcome == "fail" and [c.result.slo.name for c in j.failing] == ["lag"]
    assert [line.split(" burn rate")[0] for line in j.lines] == ["svc/lag: page 1h/5m:", "svc/lag: page 6h/30m:"]


def test_an_expected_burn_is_excused_by_slo_name_and_a_new_burn_still_fails() -> None:
    lag, api = _result("lag", 0.5), _result("api", 0.5)
    j = judge([lag, api], expected={"lag"})
    assert j.outcome == "fail" and [c.result.slo.name for c in j.failing] == ["api"]
    assert [c.result.slo.name for c in j.excused] == ["lag"]
    assert j.lines[0] == "svc/lag: burning as its phase expected (held to the budget cap)"


def test_a_healthy_series_is_excused_by_nothing_and_no_series_at_all_is_inconclusive() -> None:
    healthy = _result("api", 0.0)
    j = judge([healthy], baseline={"svc/api"}, expected={"api"})
    assert j.outcome == "pass" and j.items[0].counted and j.lines == []
    assert judge([]).outcome == "inconclusive"


def test_every_series_excused_passes() -> None:
    j = judge([_result("lag", 0.5)], baseline={"svc/lag"})
    assert j.outcomes == [] and j.outcome == "pass"
