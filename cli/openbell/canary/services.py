"""What a canary of each service is judged on: its Prometheus job and the metrics compared per version.

Each query returns one series per replica (`instance`), so canary and stable each give one sample per
replica per interval. `{role}` is replaced by the role matcher and `{window}` by the rate window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from openbell.canary.judge import JudgeMetric
from openbell.errors import UsageError
from openbell.slo.model import SLO
from openbell.slo.scope import selects_job

Family = Literal["latency", "errors"]


@dataclass(frozen=True)
class Question:
    """One question of the sequential judge (canary/sequential.py): a share of bad events per version.

    A `histogram` question is asked at every finite boundary of `series` (a `_bucket` selector): the share
    of events slower than it. A `ratio` question is `bad` over `total` (counter selectors). `{role}` is
    replaced by the role matcher. `family` picks the tolerance that applies (latency or errors)."""

    name: str
    family: Family
    series: str = ""
    bad: tuple[str, ...] = ()
    total: tuple[str, ...] = ()
    unit_ms: bool = True  # histogram boundaries are seconds, shown in milliseconds

    @property
    def kind(self) -> Literal["histogram", "ratio"]:
        return "histogram" if self.series else "ratio"


@dataclass(frozen=True)
class CanaryService:
    name: str
    job: str
    metrics: tuple[JudgeMetric, ...]
    # What each version serves per second (`{role}` matcher, `{window}`): its real share of the work.
    served: str = ""
    questions: tuple[Question, ...] = ()


_J = 'job="gateway", {role}'
_HANDSHAKES = f"sum by (instance) (rate(gateway_ws_handshakes_total{{{_J}, result=~\"ok|error\"}}[{{window}}]))"
_HANDSHAKE_ERRORS = f"sum by (instance) (rate(gateway_ws_handshakes_total{{{_J}, result=\"error\"}}[{{window}}]))"
_QUOTES = f"sum by (instance) (rate(http_requests_total{{{_J}, route=\"/v1/quotes\"}}[{{window}}]))"
_QUOTE_ERRORS = (f"sum by (instance) (rate(http_requests_total{{{_J}, route=\"/v1/quotes\", "
                 f"code=~\"5..\"}}[{{window}}]))")
# A counter series is born with its first event (the 5xx one may never exist): absent counts as zero.
_ZERO = f"0 * {_HANDSHAKES}"

GATEWAY = CanaryService(
    name="gateway",
    job="gateway",
    metrics=(
        JudgeMetric(
            name="push_latency_mean",
            query=(f"1000 * sum by (instance) (rate(gateway_push_latency_seconds_sum{{{_J}}}[{{window}}]))\n"
                   f"/ sum by (instance) (rate(gateway_push_latency_seconds_count{{{_J}}}[{{window}}]))"),
            unit="ms", relative_tolerance=0.25, absolute_tolerance=5.0),
        JudgeMetric(
            name="push_latency_p99",
            query=("1000 * histogram_quantile(0.99, sum by (instance, le) "
                   f"(rate(gateway_push_latency_seconds_bucket{{{_J}}}[{{window}}])))"),
            unit="ms", relative_tolerance=0.5, absolute_tolerance=10.0),
        JudgeMetric(
            name="error_ratio",
            query=(f"({_HANDSHAKE_ERRORS} + ({_QUOTE_ERRORS} or {_ZERO}))\n"
                   f"/ ({_HANDSHAKES} + ({_QUOTES} or {_ZERO}))"),
            unit="ratio", relative_tolerance=0.0, absolute_tolerance=0.001),
    ),
    served=f"sum(rate(gateway_messages_sent_total{{{_J}}}[{{window}}]))",
    questions=(
        Question("push_latency", "latency", series=f"gateway_push_latency_seconds_bucket{{{_J}}}"),
        Question("rest_latency", "latency",
                 series=f"http_request_duration_seconds_bucket{{{_J}, route=\"/v1/quotes\"}}"),
        # Failed REST requests and refused handshakes together: a canary at 10% of a small load sees a few
        # handshakes only (at its churn), far too few to show anything on their own.
        Question("errors", "errors",
                 bad=(f"http_requests_total{{{_J}, route=\"/v1/quotes\", code=~\"5..\"}}",
                      f"gateway_ws_handshakes_total{{{_J}, result=\"error\"}}"),
                 total=(f"http_requests_total{{{_J}, route=\"/v1/quotes\"}}",
                        f"gateway_ws_handshakes_total{{{_J}, result=~\"ok|error\"}}")),
    ),
)

SERVICES: dict[str, CanaryService] = {GATEWAY.name: GATEWAY}


def service(name: str) -> CanaryService:
    """The canary definition of `name`; an unknown service is bad input naming the known ones."""
    try:
        return SERVICES[name]
    except KeyError:
        raise UsageError(f"canary: unknown service {name!r}: expected one of {', '.join(sorted(SERVICES))}") from None


def applicable(slos: list[SLO], service: CanaryService) -> list[SLO]:
    """The SLOs a canary of `service` can move: the service's own, and any that read its job's series."""
    return [s for s in slos if s.service == service.name or selects_job(s, service.job)]
