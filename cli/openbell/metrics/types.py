"""What a metrics source answers, and how it fails: plain values, no I/O library, so the SLO maths can take a
source (`Source`) without importing the HTTP client that implements it (metrics/prometheus.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from openbell.errors import OpenbellError


class QueryError(OpenbellError):
    """Prometheus refused the query (bad PromQL, wrong types)."""


class QueryTimeout(OpenbellError):
    """The query did not complete in time."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float  # NaN is kept: it means 0/0, e.g. no traffic in the window


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix seconds, value)


class Source(Protocol):
    """Instant PromQL queries: what the SLO evaluation reads (PrometheusClient is one)."""

    def query(self, promql: str, at: float | None = None) -> list[Sample]: ...
