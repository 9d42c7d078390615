"""Checks on a loaded SLO that every format shares: the maths must be able to work on it.

Format loaders pass the field paths their format uses, so errors still name the user's field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from openbell.durations import human_duration
from openbell.errors import SpecError
from openbell.slo.model import SLO, LatencySLI, RatioSLI
from openbell.slo.promql import has_window, is_bare_selector
from openbell.slo.windows import min_period_s

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = {"slo", "service", "severity", "le", "__name__"}
_AGGREGATION = re.compile(
    r"\b(sum|avg|max|min|count|topk|bottomk|quantile|group|stddev|stdvar)\s*(by|without)?\s*(\([^()]*\))?\s*\(",
    re.IGNORECASE)


@dataclass(frozen=True)
class FieldPaths:
    """Where each checked value lives in the user's document."""

    name: str = "metadata.name"
    service: str = "spec.service"
    objective: str = "spec.objective"
    period: str = "spec.period"
    runbook: str = "spec.runbook"
    group_by: str = "spec.groupBy"
    labels: str = "metadata.labels"
    threshold: str = "spec.sli.latency.threshold"
    queries: str = "spec.sli.ratio"


def check_slo(slo: SLO, paths: FieldPaths = FieldPaths()) -> None:
    src = slo.source
    for field, value in ((paths.name, slo.name), (paths.service, slo.service)):
        if not _NAME.fullmatch(value):
            raise SpecError(src, field, f"expected letters, digits, '.', '_' or '-', got {value!r}")
    if not 0 < slo.objective_ratio < 1:
        raise SpecError(src, paths.objective, "expected an objective in (0, 100) percent")
    if slo.period_s < min_period_s():
        raise SpecError(src, paths.period, f"expected a compliance period of at least {human_duration(min_period_s())}"
                        f" (shorter periods scale the 5m alert window under 1s), got {human_duration(slo.period_s)}")
    for label in (*slo.labels, *slo.group_by):
        if not _LABEL.match(label):
            raise SpecError(src, paths.labels, f"expected Prometheus label names, got {label!r}")
    for label in slo.group_by:
        if label in _RESERVED_LABELS:
            raise SpecError(src, paths.group_by, f"{label!r} is reserved for openbell's own labels")
    clash = _RESERVED_LABELS & set(slo.labels)
    if clash:
        raise SpecError(src, paths.labels, f"{sorted(clash)[0]!r} is reserved for openbell's own labels")
    if slo.runbook is not None:
        runbook = resolve_runbook(slo)
        if runbook is None or not runbook.is_file():
            raise SpecError(src, paths.runbook, f"runbook file {slo.runbook!r} does not exist"
                            f" (paths are relative to the spec's folder)")
    sli = slo.sli
    if isinstance(sli, LatencySLI) and not any(abs(b - sli.threshold_s) < 1e-12 for b in sli.buckets_s):
        bounds = ", ".join(f"{b:g}" for b in sli.buckets_s)
        raise SpecError(src, paths.threshold, f"expected one of the histogram's bucket bounds (le) in"
                        f" seconds [{bounds}], got {sli.threshold_s:g}")
    if isinstance(sli, RatioSLI):
        for key in ("total", "bad", "good", "error_ratio"):
            expr = getattr(sli, key)
            if expr is None:
                continue
            field = f"{paths.queries}.{key}"
            if not has_window(expr) and not is_bare_selector(expr):
                raise SpecError(src, field, "expected a bare counter selector or a PromQL expression with"
                                " {{.window}} where the range goes, e.g. rate(x_total[{{.window}}])")
            if slo.group_by and key != "error_ratio":
                _check_grouping(slo, expr, field)


def _check_grouping(slo: SLO, expr: str, field: str) -> None:
    """An aggregation that drops a group_by label would silently merge every group into one."""
    for match in _AGGREGATION.finditer(expr):
        mode, labels = match.group(2), match.group(3) or "()"
        if mode is None:
            # PromQL also allows the clause after the arguments: sum(rate(x[5m])) by (region).
            trailing = _TRAILING.match(expr, _closing_paren(expr, match.end() - 1) + 1)
            if trailing:
                mode, labels = trailing.group(1), trailing.group(2)
        kept = {x.strip() for x in labels.strip("()").split(",") if x.strip()}
        for label in slo.group_by:
            dropped = (mode is None) or (mode.lower() == "by" and label not in kept) or (
                mode.lower() == "without" and label in kept)
            if dropped:
                raise SpecError(slo.source, field, f"the aggregation {match.group(0).strip()!r} drops the"
                                f" groupBy label {label!r}; keep it (by ({label}, ...)) or leave the"
                                " expression unaggregated")


_TRAILING = re.compile(r"\s*(by|without)\s*(\([^()]*\))", re.IGNORECASE)


def _closing_paren(expr: str, open_at: int) -> int:
    """Index of the parenthesis closing the one at `open_at` (or the end of the text)."""
    depth = 0
    for i in range(open_at, len(expr)):
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(expr)


def resolve_runbook(slo: SLO) -> Path | None:
    if slo.runbook is None:
        return None
    path = Path(slo.runbook)
    if not path.is_absolute() and slo.source:
        path = Path(os.path.normpath(Path(slo.source).parent / path))
    return path


def check_unique(slos: list[SLO]) -> None:
    seen: dict[tuple[str, str], SLO] = {}
    for slo in slos:
        key = (slo.service, slo.name)
        if key in seen:
            raise SpecError(slo.source, "name", f"duplicate SLO {slo.name!r} of service {slo.service!r}"
                            f" (also defined in {seen[key].source})")
        seen[key] = slo
