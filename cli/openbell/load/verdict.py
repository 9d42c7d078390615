"""A load run's Verdict, from what k6 measured and what the SLO gate said. Pure."""

from __future__ import annotations

from typing import Any

from openbell.load.runner import K6_THRESHOLDS_FAILED, RunResult
from openbell.slo.verdict import Outcome, Verdict, combine


def load_verdict(result: RunResult, after: Verdict | None) -> Verdict:
    """Fail when a k6 threshold (the SLOs seen by the traders) failed or the SLO gate failed, during or
    after the run; inconclusive when interrupted or when nothing was checked. A gate that cannot say (no
    data) is reported but does not overrule what the traders measured."""
    reasons: list[str] = []
    outcomes: list[Outcome] = []
    summary = result.summary
    figures: dict[str, Any] = dict(summary.figures) if summary else {}
    figures["elapsed_s"] = round(result.elapsed_s, 2)
    figures["k6_exit_code"] = result.returncode
    if summary is not None:
        figures["thresholds"] = [{"metric": t.metric, "threshold": t.expression, "passed": t.passed,
                                  "observed": t.observed} for t in summary.thresholds]
        for t in summary.failed:
            seen = f"{t.observed:g}" if t.observed is not None else "?"
            reasons.append(f"k6 threshold {t.metric} {t.expression} failed (observed {seen})")
        delay = summary.figures.get("client_delay_p99_ms")
        if delay is not None and any(t.metric.startswith("ws_push_latency_ms") for t in summary.failed):
            reasons.append(f"k6's own event loop ran up to {delay:g} ms late (client_delay_ms p99): that much of "
                           f"its push latency is the client's; the gateways' own histogram (the SLO gate) is the "
                           f"platform's figure")
        if summary.thresholds:
            outcomes.append("fail" if summary.failed else "pass")
    if result.returncode == K6_THRESHOLDS_FAILED and "fail" not in outcomes:
        outcomes.append("fail")  # k6's word on its thresholds stands, whatever the summary file says
        reasons.append("k6 reported failed thresholds")
    if result.stopped_by_gate is not None:
        outcomes.append("fail")
        during = "; ".join(result.stopped_by_gate.reasons)
        reasons.append(f"stopped early: the SLO gate failed during the run: {during}")
    if result.overran_s is not None:
        outcomes.append("fail")
        reasons.append(f"k6 was still running {result.overran_s:.0f} s after its start, past its scenarios' maximum "
                       f"and its setup and teardown timeouts: stopped (some VUs never finished; the summary is "
                       f"partial)")
    if after is not None:
        figures["slo_gate"] = after.to_dict()
        if after.outcome == "inconclusive":
            reasons.append("SLO gate after the run was inconclusive: " + "; ".join(after.reasons))
        else:
            outcomes.append(after.outcome)
            if after.outcome == "fail":
                reasons.extend(f"SLO gate after the run: {r}" for r in after.reasons)
    if result.interrupted:
        return Verdict("inconclusive", ("interrupted: k6 stopped early, the summary is partial", *reasons), figures)
    if result.returncode == 0 and not outcomes:
        reasons.append("no thresholds and no SLO gate: nothing was judged")
    return Verdict(combine(outcomes), tuple(reasons), figures)
