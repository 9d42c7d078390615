"""The enricher's consumer lag (services/enricher/pipeline.py), on plain values: the gauge (`sample_lag`,
for dashboards and the chaos probes) and the time over the bound (`TimeOverBound`, the SLO's counter).

The SLO (kafka-consumer-lag: <= 50 ms 99.9% of the time) counts that time, so it must neither call the gap
between two ticks "lag" (a false page on an idle, healthy platform) nor miss a consumer that fell behind,
however briefly, or while it was stopped and could not be scraped.
"""

from __future__ import annotations

from services.enricher.pipeline import PartitionState, TimeOverBound, sample_lag

T0 = 1_700_000_000.0
S0 = 1_000.0  # the time-over-bound tests add small differences: a base where float steps are tiny


def caught_up(part: PartitionState, offset: int, now: float) -> None:
    part.next_offset = offset
    assert sample_lag(part, high=offset, position=offset, now=now) == 0.0


def test_a_tick_that_landed_but_is_not_yet_fetched_is_not_lag() -> None:
    # A sparse partition: the last tick is 60 ms old, a new one has just landed and is not fetched yet.
    part = PartitionState(assigned_at=T0, last_record_s=T0 + 0.94)
    caught_up(part, 100, T0 + 0.9)
    assert sample_lag(part, high=101, position=100, now=T0 + 1.0) == 0.0


def test_a_record_still_unconsumed_one_answer_later_counts_from_that_answer() -> None:
    part = PartitionState(assigned_at=T0)
    caught_up(part, 100, T0 + 0.9)
    assert sample_lag(part, high=103, position=100, now=T0 + 1.0) == 0.0
    # Offset 100 existed at the previous answer and is still not consumed: at least 100 ms behind.
    assert abs(sample_lag(part, high=105, position=100, now=T0 + 1.1) - 0.1) < 1e-6
    # Stalled: the bound keeps growing with time.
    assert abs(sample_lag(part, high=109, position=100, now=T0 + 1.6) - 0.6) < 1e-6


def test_records_consumed_late_report_their_age_even_when_caught_up_at_the_sample() -> None:
    part = PartitionState(assigned_at=T0)
    part.consumed_lag_s = 0.075  # a tick was 75 ms old when the pipeline got to it
    assert sample_lag(part, high=10, position=10, now=T0 + 1.0) == 0.075
    # Taken once: the next interval starts afresh.
    assert sample_lag(part, high=10, position=10, now=T0 + 1.1) == 0.0


def test_progress_to_a_record_that_landed_after_the_last_answer_is_not_lag() -> None:
    part = PartitionState(assigned_at=T0)
    caught_up(part, 100, T0 + 0.9)
    assert sample_lag(part, high=104, position=100, now=T0 + 1.0) == 0.0
    # 100..103 consumed; 104..106 landed since the last answer (which said 104): 104 did not exist then.
    assert sample_lag(part, high=107, position=104, now=T0 + 1.1) == 0.0


def test_no_answer_is_not_lag_at_once_but_an_outage_grows_after_the_grace() -> None:
    part = PartitionState(assigned_at=T0, last_record_s=T0 + 0.95)
    caught_up(part, 100, T0 + 1.0)
    assert sample_lag(part, high=None, position=100, now=T0 + 1.3, blind_after_s=1.0) == 0.0
    assert abs(sample_lag(part, high=None, position=100, now=T0 + 3.0, blind_after_s=1.0) - 2.0) < 1e-6


def test_lost_partitions_count_as_behind_at_once() -> None:
    part = PartitionState(assigned_at=T0, last_record_s=T0 + 0.5, lost=True)
    assert abs(sample_lag(part, high=120, position=100, now=T0 + 0.8) - 0.3) < 1e-6


def test_a_partition_never_consumed_from_counts_from_its_assignment_after_the_grace() -> None:
    part = PartitionState(assigned_at=T0)
    assert sample_lag(part, high=None, position=None, now=T0 + 0.5, blind_after_s=1.0) == 0.0
    assert abs(sample_lag(part, high=None, position=None, now=T0 + 2.5, blind_after_s=1.0) - 2.5) < 1e-6


def test_time_over_the_bound_is_only_what_each_late_record_spent_past_it() -> None:
    over = TimeOverBound(0.05)
    # On time (10 ms old, 49 ms old): nothing. The gap before a tick is not lag.
    assert over.consumed(S0, S0 + 0.01) == 0.0
    assert over.consumed(S0 + 1.0, S0 + 1.049) == 0.0
    # 80 ms old: the consumer was over 50 ms behind for the last 30 ms of it.
    assert abs(over.consumed(S0 + 2.0, S0 + 2.08) - 0.03) < 1e-9


def test_records_late_at_once_count_their_overlap_once_whichever_partition_they_come_from() -> None:
    over = TimeOverBound(0.05)
    # A backlog after a 10 s stop: 5 s of ticks (one every 10 ms, across partitions), all consumed within 10 ms
    # of resuming. The lag was over the bound from the oldest tick's 50 ms mark to the last consume.
    added = sum(over.consumed(S0 + i * 0.01, S0 + 10.0 + i * 0.00002) for i in range(500))
    assert abs(added - (10.0 + 499 * 0.00002 - 0.05)) < 1e-6
    # The newest ticks of a backlog, younger than the bound when consumed, add nothing.
    assert over.consumed(S0 + 9.99, S0 + 10.02) == 0.0
    # Caught up: the next record on time adds nothing, a late one only its own excess.
    assert over.consumed(S0 + 10.1, S0 + 10.11) == 0.0
    assert abs(over.consumed(S0 + 11.0, S0 + 11.2) - 0.15) < 1e-9


def test_a_record_consumed_inside_time_already_counted_adds_nothing() -> None:
    over = TimeOverBound(0.05)
    assert abs(over.consumed(S0, S0 + 1.0) - 0.95) < 1e-9
    # An older record of another partition consumed right after: its interval is inside the counted one.
    assert abs(over.consumed(S0 - 0.5, S0 + 1.0)) < 1e-9
    assert abs(over.consumed(S0 + 0.5, S0 + 1.001) - 0.001) < 1e-9


def test_a_backlog_older_than_the_consumer_counts_only_from_when_it_started() -> None:
    # A sandbox left down for hours: its first record is 5 h old, but this process started 2 s ago.
    over = TimeOverBound(0.05, covered_to=S0)
    assert abs(over.consumed(S0 - 5 * 3600, S0 + 2.0) - 2.0) < 1e-9
