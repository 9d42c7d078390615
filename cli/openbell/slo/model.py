"""The SLO model: plain, frozen types every loader produces and every consumer reads.

No I/O here. Ratios are fractions in [0, 1] (`objective_ratio`), durations are seconds (`*_s`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["page", "ticket"]
ComparisonOp = Literal["<=", "<", ">=", ">"]

DEFAULT_PERIOD_S = 30 * 86400.0


@dataclass(frozen=True)
class RatioSLI:
    """Share of good events: PromQL over counters.

    Exactly one of `bad`, `good` or `error_ratio` is set. `bad`, `good` and `total` are PromQL
    expressions yielding per-second event rates, with ``{{.window}}`` where the range goes (a bare
    counter selector is wrapped in ``rate(...[window])``). `error_ratio` is a whole expression that
    already divides (Sloth's ``raw``).
    """

    total: str | None
    bad: str | None = None
    good: str | None = None
    error_ratio: str | None = None
    kind: Literal["ratio"] = "ratio"


@dataclass(frozen=True)
class LatencySLI:
    """Share of events at or under `threshold_s`, from a Prometheus histogram.

    `histogram` is the base metric name (``_bucket``/``_count`` are appended); `buckets_s` are its
    bucket bounds as exported; `selector` is label matchers without braces (may be empty).
    """

    histogram: str
    threshold_s: float
    buckets_s: tuple[float, ...]
    selector: str = ""
    kind: Literal["latency"] = "latency"


@dataclass(frozen=True)
class ThresholdSLI:
    """Share of time a gauge stays within a bound: good while ``aggregation(gauge) op bound``.

    `gauge` is a PromQL instant expression; `aggregation` folds its series (per group) into one value,
    e.g. the worst partition's consumer lag with ``max``.
    """

    gauge: str
    bound: float
    op: ComparisonOp = "<="
    aggregation: Literal["max", "min", "avg", "sum"] = "max"
    kind: Literal["threshold"] = "threshold"


SLI = RatioSLI | LatencySLI | ThresholdSLI


@dataclass(frozen=True)
class Alerting:
    """What alerts an SLO produces and how they are labelled.

    `min_events` guards against false pages at very low traffic: a burn alert fires only when its long
    window saw at least this many events. None means the default: the count at which one bad event
    alone can no longer cross the pair's threshold (see slo/README.md).
    """

    page: bool = True
    ticket: bool = True
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    page_labels: dict[str, str] = field(default_factory=dict)
    ticket_labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    page_annotations: dict[str, str] = field(default_factory=dict)
    ticket_annotations: dict[str, str] = field(default_factory=dict)
    min_events: int | None = None
    absent: bool = True
    absent_for_s: float = 600.0


@dataclass(frozen=True)
class SLO:
    """One service level objective, evaluated once per value of `group_by` labels (if any)."""

    service: str
    name: str
    objective_ratio: float
    sli: SLI
    period_s: float = DEFAULT_PERIOD_S
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    runbook: str | None = None
    alerting: Alerting = field(default_factory=Alerting)
    group_by: tuple[str, ...] = ()
    source: str = ""

    @property
    def error_budget(self) -> float:
        """Fraction of events (or time) allowed to be bad over the period."""
        return round(1.0 - self.objective_ratio, 12)

    @property
    def objective_percent(self) -> float:
        return round(self.objective_ratio * 100, 10)

    @property
    def alert_name(self) -> str:
        """Base name of this SLO's alerts: ``<CamelName>ErrorBudgetBurn`` unless overridden."""
        return self.alerting.name or f"{camel(self.name)}ErrorBudgetBurn"

    @property
    def absent_alert_name(self) -> str:
        base = self.alerting.name or camel(self.name)
        return f"{base.removesuffix('ErrorBudgetBurn')}SLIAbsent"

    def alert_names(self) -> list[str]:
        names = [self.alert_name] if (self.alerting.page or self.alerting.ticket) else []
        if self.alerting.absent:
            names.append(self.absent_alert_name)
        return names


def camel(name: str) -> str:
    """``gateway-push-latency`` -> ``GatewayPushLatency``."""
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)
