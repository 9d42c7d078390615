"""The rollout's timeline as OpenTelemetry spans: one root span per rollout, one child span per timeline
segment (an event until the next one: a step's span lasts its hold), so a trace viewer shows the rollout
the way the report does.

A rollout can outlive the process that started it (resume after a crash), so the trace and root span ids
live in the rollout's persisted state and the children of a resumed run join the same trace. With
OTEL_EXPORTER_OTLP_ENDPOINT set, spans are exported over OTLP/HTTP (the `otlp` extra); otherwise they go
to whatever tracer provider the process has (none: a no-op).
"""

from __future__ import annotations

import os
import random
from typing import Any

from openbell.canary.machine import Event, Rollout


def new_ids() -> tuple[str, str]:
    """A fresh (trace id, root span id), as lowercase hex (32 and 16 digits)."""
    return f"{random.getrandbits(128) or 1:032x}", f"{random.getrandbits(64) or 1:016x}"


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _attributes(rollout: Rollout, event: Event | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"openbell.service": rollout.service, "openbell.canary.version": rollout.version,
                           "openbell.target": rollout.target, "openbell.canary.phase": rollout.phase}
    if event is not None:
        out["openbell.event.kind"] = event.kind
        out["openbell.event.message"] = event.message
        if event.weight is not None:
            out["openbell.canary.weight"] = event.weight
        for key, value in event.figures.items():
            if isinstance(value, str | int | float | bool):
                out[f"openbell.figure.{key}"] = value
    return out


class Spans:
    """Emits the spans for the events a rollout has logged since the last call."""

    def __init__(self, tracer_provider: Any | None = None) -> None:
        from opentelemetry import trace

        self._owned = None
        if tracer_provider is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            tracer_provider = self._owned = _otlp_provider()
        self.tracer = trace.get_tracer("openbell.canary", tracer_provider=tracer_provider)

    def _parent(self, trace_id: str, span_id: str) -> Any:
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return trace.set_span_in_context(NonRecordingSpan(context))

    def emit(self, rollout: Rollout, trace_id: str, root_span_id: str, emitted: int) -> int:
        """Spans for every event from index `emitted` whose segment is closed (a next event exists, or the
        rollout is over); returns the new count of emitted events. When the rollout is over the root
        span is emitted too, under the saved ids."""
        parent = self._parent(trace_id, root_span_id)
        events = rollout.events
        last = len(events) if rollout.done else len(events) - 1
        for i in range(emitted, max(emitted, last)):
            event = events[i]
            end = events[i + 1].at if i + 1 < len(events) else event.at
            span = self.tracer.start_span(f"canary.{event.kind}", context=parent, start_time=_ns(event.at),
                                          attributes=_attributes(rollout, event))
            span.end(end_time=_ns(max(end, event.at)))
        emitted = max(emitted, last)
        if rollout.done:
            self._root(rollout, trace_id, root_span_id)
        return emitted

    def _root(self, rollout: Rollout, trace_id: str, root_span_id: str) -> None:
        # The root's own id was promised to the children before it existed: an ids generator that hands
        # out exactly that id for this one span keeps the trace whole across processes.
        from opentelemetry.trace import Status, StatusCode

        attributes = _attributes(rollout) | {"openbell.canary.outcome": rollout.phase,
                                             "openbell.canary.reason": rollout.reason}
        from opentelemetry.context import Context

        with _fixed_ids(self.tracer, trace_id, root_span_id):
            span = self.tracer.start_span(f"canary {rollout.service} {rollout.version}", context=Context(),
                                          start_time=_ns(rollout.started_at), attributes=attributes)
        if rollout.phase == "promoted":
            span.set_status(Status(StatusCode.OK))
        else:
            span.set_status(Status(StatusCode.ERROR, rollout.reason))
        span.end(end_time=_ns(rollout.finished_at or rollout.started_at))

    def flush(self) -> None:
        if self._owned is not None:
            self._owned.force_flush()
            self._owned.shutdown()


class _fixed_ids:
    """Temporarily make an SDK tracer's id generator return the saved ids (no-op for the API's tracer)."""

    def __init__(self, tracer: Any, trace_id: str, span_id: str) -> None:
        self.tracer = tracer
        self.ids = (int(trace_id, 16), int(span_id, 16))
        self.saved: Any = None

    def __enter__(self) -> None:
        generator = getattr(self.tracer, "id_generator", None)
        if generator is None:
            return
        self.saved = (generator.generate_trace_id, generator.generate_span_id)
        generator.generate_trace_id = lambda: self.ids[0]
        generator.generate_span_id = lambda: self.ids[1]

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            generator = self.tracer.id_generator
            generator.generate_trace_id, generator.generate_span_id = self.saved


def _otlp_provider() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        from openbell.errors import UnreachableError

        raise UnreachableError("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
                               "pip install 'openbell[otlp]'") from exc
    provider = TracerProvider(resource=Resource.create({"service.name": "openbell"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
