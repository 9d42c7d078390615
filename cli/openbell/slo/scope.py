"""Scope an SLO to a subset of its series (the canary's, say) by adding a label matcher to every selector.

The same SLO model then answers "is the canary, on its own, burning the budget fast enough to page?"
with the PromQL the alert rules use, plus one matcher. Pure string work, like promql.py.

The injector understands the selectors SLO specs are written with: `metric{...}` and a bare `metric`
directly inside a range (`metric[5m]`, or a `{{.window}}` template). An expression in which it finds no
selector to scope cannot be scoped (None), so the caller never mistakes fleet-wide figures for the canary's.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from openbell.slo.model import SLO, LatencySLI, RatioSLI, ThresholdSLI
from openbell.slo.promql import WINDOW_PLACEHOLDER

# A metric name followed by its matcher block, or by a range (bare selector inside rate(...[w])).
_BRACED = re.compile(r"(?<![\w:.\"])([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}")
_RANGED = re.compile(r"(?<![\w:.\"}])([A-Za-z_:][A-Za-z0-9_:]*)\s*\[")
_TEMPLATE_TOKEN = "__OPENBELL_WINDOW__"
# Selectors this injector would scope wrongly or not at all: refuse rather than mix fleet-wide and
# scoped series (`{__name__=...}`, a brace inside a label value, a matcher block without a metric name).
_UNSAFE = re.compile(r'__name__|"[^"]*[{}][^"]*"|(?:^|[\s(,])\{')
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def inject(expr: str, matcher: str) -> str | None:
    """`expr` with `matcher` (e.g. role="canary") added to every selector; None when there is none."""
    text = WINDOW_PLACEHOLDER.sub(_TEMPLATE_TOKEN, expr)
    if _UNSAFE.search(text):
        return None
    count = 0

    def braced(m: re.Match[str]) -> str:
        nonlocal count
        if m.group(1) in _KEYWORDS:
            return m.group(0)
        count += 1
        inner = m.group(2).strip().rstrip(",")
        return f"{m.group(1)}{{{inner + ', ' if inner else ''}{matcher}}}"

    def ranged(m: re.Match[str]) -> str:
        nonlocal count
        if m.group(1) in _KEYWORDS or m.group(1) == _TEMPLATE_TOKEN:
            return m.group(0)
        count += 1
        return f"{m.group(1)}{{{matcher}}}["

    text = _BRACED.sub(braced, text)
    text = _RANGED.sub(ranged, text)
    if count == 0:
        return None
    return text.replace(_TEMPLATE_TOKEN, "{{.window}}")


def scope(slo: SLO, matcher: str) -> SLO | None:
    """The SLO restricted to the series `matcher` selects (same objective, windows and grouping)."""
    sli = slo.sli
    if isinstance(sli, LatencySLI):
        selector = ", ".join(p for p in (sli.selector.strip(), matcher) if p)
        return dataclasses.replace(slo, sli=dataclasses.replace(sli, selector=selector))
    if isinstance(sli, RatioSLI):
        changes: dict[str, Any] = {}
        for name in ("bad", "good", "total", "error_ratio"):
            expr = getattr(sli, name)
            if expr is None:
                continue
            scoped = inject(expr, matcher)
            if scoped is None:
                return None
            changes[name] = scoped
        return dataclasses.replace(slo, sli=dataclasses.replace(sli, **changes))
    assert isinstance(sli, ThresholdSLI)
    gauge = inject(sli.gauge, matcher)
    return None if gauge is None else dataclasses.replace(slo, sli=dataclasses.replace(sli, gauge=gauge))


_JOB = re.compile(r"""\bjob\s*(=~|=)\s*"([^"]*)\"""")


def selects_job(slo: SLO, job: str) -> bool:
    """Whether the SLO's SLI reads series of `job` (job="x" or a job=~"regex" that matches it)."""
    sli = slo.sli
    if isinstance(sli, LatencySLI):
        texts = [sli.selector]
    elif isinstance(sli, RatioSLI):
        texts = [t for t in (sli.bad, sli.good, sli.total, sli.error_ratio) if t]
    else:
        texts = [sli.gauge]
    for text in texts:
        for op, value in _JOB.findall(text):
            if (op == "=" and value == job) or (op == "=~" and re.fullmatch(value, job)):
                return True
    return False
