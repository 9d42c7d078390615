"""The SLO safeguard's decisions (chaos/controls.py)."""

from __future__ import annotations

from typing import Any

import pytest

from openbell.chaos.controls import Policy, refusal


def summary(outcome: str, budgets: dict[str, float | None] | None = None) -> dict[str, Any]:
    return {"outcome": outcome, "reasons": [f"reason {outcome}"], "budget_remaining": budgets or {}}


def test_the_safeguard_refuses_a_burn_a_blind_gate_and_a_budget_below_the_fraction() -> None:
    policy = Policy(("slo/",), min_budget_remaining=0.25)
    assert refusal(summary("pass", {"a": 0.9, "b": None}), policy) is None
    assert refusal(summary("fail"), policy) == "page-severity burn before the experiment: reason fail"
    assert refusal(summary("inconclusive"), policy) == "the SLO gate cannot see (inconclusive): reason inconclusive"
    assert refusal(summary("inconclusive"), Policy(("slo/",), on_inconclusive="proceed")) is None
    assert refusal(summary("pass", {"api/api-errors": 0.1, "x": 0.5}), policy) == \
        "error budget below 25%: api/api-errors 10.0%"
    assert refusal(summary("pass", {"api/api-errors": -3.0}), Policy(("slo/",), min_budget_remaining=None)) is None


def test_the_safeguard_arguments_are_validated() -> None:
    policy = Policy.from_arguments({"slo_paths": "slo/", "interval_s": 2, "min_budget_remaining": None})
    assert policy.slo_paths == ("slo/",) and policy.interval_s == 2.0 and policy.min_budget_remaining is None
    assert Policy.from_arguments({"slo_paths": ["slo/"]}).min_budget_remaining == 0.1
    for bad, field in (({}, "slo_paths"), ({"slo_paths": ["slo"], "severity": "sev1"}, "severity"),
                       ({"slo_paths": ["slo"], "interval_s": 0}, "interval_s"),
                       ({"slo_paths": ["slo"], "min_budget_remaining": 2}, "min_budget_remaining"),
                       ({"slo_paths": ["slo"], "poll": 1}, "poll")):
        with pytest.raises(ValueError, match=field):
            Policy.from_arguments(bad)
