"""The calibration's pure parts: the search over levels, judging a level, the key it is kept under."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbell.load.calibrate import (
    Calibration,
    Level,
    capacity,
    fingerprint,
    judge_level,
    load_cached,
    next_scale,
    save,
)
from openbell.slo.model import SLO, LatencySLI, RatioSLI, ThresholdSLI

PUSH = SLO(service="gateway", name="push", objective_ratio=0.99, group_by=("exchange",),
           sli=LatencySLI(histogram="h", threshold_s=0.05, buckets_s=(0.05,)))
LAG = SLO(service="enricher", name="lag", objective_ratio=0.999, sli=ThresholdSLI(gauge="g", bound=0.05))
ORDERS = SLO(service="ledger", name="orders", objective_ratio=0.999, sli=RatioSLI(total="t", bad="b"))


def search(holds_below: float, start: float = 0.00025) -> list[tuple[float, bool]]:
    """The levels a calibration runs on a machine whose every SLO holds below `holds_below`."""
    tried: list[tuple[float, bool]] = []
    while (scale := next_scale(tried, start)) is not None:
        tried.append((scale, scale < holds_below))
        assert len(tried) < 20
    return tried


def test_levels_double_while_they_hold_then_one_refines_between_the_last_two() -> None:
    tried = search(holds_below=0.0015)
    assert tried == [(0.00025, True), (0.0005, True), (0.001, True), (0.002, False), (0.00141, True)]
    assert capacity(tried) == 0.00141


def test_a_first_level_that_fails_halves_down_and_none_holding_has_no_capacity() -> None:
    tried = search(holds_below=0.0001)
    assert [s for s, _ in tried][:3] == [0.00025, 0.000125, 0.0000625]
    assert capacity(tried) is not None and capacity(tried) < 0.0001
    assert capacity(search(holds_below=0.0)) is None


def test_a_machine_that_holds_everything_stops_at_the_largest_scale() -> None:
    tried = search(holds_below=1.0)
    assert tried[-1] == (0.016, True) and all(ok for _, ok in tried)


def test_a_level_holds_when_every_slo_is_within_its_budget_and_the_client_kept_up() -> None:
    ok, reasons, figures = judge_level([PUSH, LAG, ORDERS], {
        "push": {"exchange=XNYS": 0.004, "exchange=XLON": 0.009}, "lag": {"": 0.0}, "orders": {"": float("nan")}},
        client_delay_p99_ms=21.0)
    assert ok and reasons == ("every SLO held and the load generator kept up",)
    assert figures["slos"]["push"]["group"] == "exchange=XLON" and figures["slos"]["push"]["burn_rate"] == 0.9
    assert figures["slos"]["orders"] is None  # no events at this level: not judged


def test_a_level_fails_naming_the_slo_past_its_budget_or_a_client_that_fell_behind() -> None:
    ok, reasons, _ = judge_level([PUSH, LAG], {"push": {"exchange=XLON": 0.03}, "lag": {"": 0.05}}, 80.0)
    assert not ok
    assert reasons[0] == "push{exchange=XLON}: 3.00% bad over the level, more than its 1.00% budget (3.0x)"
    assert reasons[1].startswith("lag: 5.00% bad over the level, more than its 0.10% budget")
    assert reasons[2] == "the load generator fell behind: its event loop ran 80 ms late (p99, limit 50 ms)"


def test_the_key_changes_with_the_machine_the_code_and_the_profile(tmp_path: Path) -> None:
    code, profile = tmp_path / "app.py", tmp_path / "nyse-open.js"
    code.write_text("x = 1\n")
    profile.write_text("export const profile = {};\n")
    machine = {"cpus": 2, "cpu_model": "x", "memory_gib": 24}
    key = fingerprint(machine, [code], [profile])
    assert key == fingerprint(machine, [code], [profile])
    assert key != fingerprint({**machine, "cpus": 4}, [code], [profile])
    code.write_text("x = 2\n")
    assert key != fingerprint(machine, [code], [profile])


def test_a_kept_calibration_reads_back_and_gives_the_plans_scale(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBELL_CALIBRATION_DIR", str(tmp_path))
    found = Calibration(profile="nyse-open", capacity_scale=0.00141, capped=False,
                        levels=(Level(0.00141, True, ("ok",), 1.0, 2.0, {"k6": {"vus_max": 106}}),),
                        measured_at=1.0, machine={"cpus": 2}, fingerprint="abc", time_scale=0.05, hold_s=30.0)
    path = save(found)
    assert path == tmp_path / "nyse-open-abc.json"
    again = load_cached("nyse-open", "abc")
    assert again == found
    assert again.scale_for(0.5) == 0.00071  # to the 2 significant figures of its levels
    assert load_cached("nyse-open", "other") is None
    path.write_text("{not json")
    assert load_cached("nyse-open", "abc") is None
