"""A rollout's spans (canary/telemetry.py)."""

from __future__ import annotations

from openbell.canary import machine
from openbell.canary.machine import Observation
from tests.unit.test_canary_machine import started


def test_spans_follow_the_timeline_and_share_one_trace() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from openbell.canary.telemetry import Spans, new_ids

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = Spans(provider)
    trace_id, root_id = new_ids()
    rollout = started()
    emitted = spans.emit(rollout, trace_id, root_id, 0)
    assert emitted == len(rollout.events) - 1  # the open step has no end yet
    rollout, _ = machine.advance(rollout, Observation(1003.0, "fail", "pass", ("burn",)))
    rollout = machine.completed(rollout, 1004.0)
    spans.emit(rollout, trace_id, root_id, emitted)
    finished = exporter.get_finished_spans()
    names = [s.name for s in finished]
    assert names[-1] == "canary gateway v2" and "canary.step" in names and "canary.rollback" in names
    assert {f"{s.context.trace_id:032x}" for s in finished} == {trace_id}
    root = finished[-1]
    assert f"{root.context.span_id:016x}" == root_id
    assert all(s.parent is not None and f"{s.parent.span_id:016x}" == root_id for s in finished[:-1])
    step = next(s for s in finished if s.name == "canary.step")
    assert step.attributes is not None and step.attributes["openbell.canary.weight"] == 10
    assert step.end_time is not None and step.start_time is not None and step.end_time >= step.start_time
